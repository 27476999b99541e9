#!/usr/bin/env bash
# The avala-pipe benchmarks (issue 7; results and goals in BENCHMARKS.md).
#
# Builds the release binary, starts the emulator as a separate process (seeded per
# scenario), and runs each contestant BENCH_REPS times (default 5), alternating them
# (the order flips every repetition), after one unmeasured warm-up run each. Wall time
# is taken around each process, peak RSS from /usr/bin/time -v; bench/stats.py prints
# the medians, ratios and goals as one Markdown table.
#
#   bench/run.sh                      # everything (a few minutes)
#   BENCH_REPS=3 bench/run.sh         # fewer repetitions
#   BENCH_ONLY="list upload" bench/run.sh
#                                     # some of: list download upload check memory sdkupload
#                                     # multipart limits foreach startup (default: all), and
#                                     # ratelimit (issue 7's 200-file run, superseded by limits)
#                                     # sdkupload multipart limits (today's API, issue 14)
#                                     # foreach startup (issue 14, goals 5 and 6)
#   BENCH_KEEP=1 bench/run.sh         # keep the work directory (logs, reports, raw results)
#
# The emulator and every pipeline speak the documented flavour of the API (items.upload,
# /datasets without a trailing slash): the pipelines say `api: {flavor: documented}` and the
# emulator is started with `--flavor documented`. Runs keep their journal (the default, in
# the work directory); list and upload are measured a second time with --no-journal.
#
# Uses CARGO_TARGET_DIR when set. Binds to 127.0.0.1 only; every loop is bounded.
set -euo pipefail

REPS=${BENCH_REPS:-5}
ONLY=${BENCH_ONLY:-list download upload check memory sdkupload multipart limits foreach startup}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PROFILE=${BENCH_PROFILE:-release} # BENCH_PROFILE=profiling: quicker builds, not for the tables
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE/avala-pipe
KEY=avk_emulator_demo
CMD_TIMEOUT=300 # seconds any one measured command may take

# Sizes (the issue's numbers).
LIST_DATASETS=20000
EXPORT_BYTES=$((1024 * 1024 * 1024))
UPLOAD_FILES=500
UPLOAD_BYTES=65536
UPLOAD_CONCURRENCY=8
RL_LIMIT=20
RL_FILES=200
CHECK_SIZES="1000 2000 5000 10000 25000 50000"
SDK_FILES=500                         # sdkupload: files of UPLOAD_BYTES; the SDK's default 8 workers
MP_BYTES=$((2 * 1024 * 1024 * 1024)) # multipart: one file through a v2 MULTIPART session
LIM_FILES=2000                        # limits: files of UPLOAD_BYTES under the published limits,
LIM_RATE=100                          # 100 requests/min scaled to the emulator's 1-s windows
LIM_REPS=${BENCH_LIMIT_REPS:-3}       # (each run takes ~40 s)
MEM_DATASETS=100000
FOREACH_SIZES="10000 100000"
STARTUP_RUNS=50
# The long scenarios (validate 50k steps, 100k iterations) take fewer repetitions.
LONG_REPS=$((REPS < 3 ? REPS : 3))

want() { [[ " $ONLY " == *" $1 "* ]]; }
say() { printf '%s\n' "$*" >&2; }

# --- what the benchmark needs ----------------------------------------------------------
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
if ! python3 -c 'import requests' 2>/dev/null; then
    say "installing requests (pip)"
    python3 -m pip install --quiet requests
fi
if [ ! -x /usr/bin/time ] || ! command -v curl >/dev/null || ! command -v openssl >/dev/null; then
    say "installing time, curl and openssl (apt-get)"
    as_root apt-get update -qq
    as_root apt-get install -y -qq time curl openssl >/dev/null
fi
if want startup && ! command -v hyperfine >/dev/null; then
    say "installing hyperfine (apt-get)"
    as_root apt-get update -qq
    as_root apt-get install -y -qq hyperfine >/dev/null
fi

say "building the $PROFILE binary"
# What the binary is built from, taken now: edits made while the bench runs are not in it.
BUILT_FROM="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (uncommitted changes)')"
(cd "$ROOT" && cargo build --profile "$PROFILE" --quiet)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/avala-bench.XXXXXX")
RESULTS=$WORK/results.tsv
: >"$RESULTS"
EMU_PID=
cleanup() {
    stop_emulator
    if [ -n "${BENCH_KEEP:-}" ]; then say "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# Real runs write their journal to .avala-pipe/ in the working directory: keep it in WORK.
cd "$WORK"

# --- the emulator, one per scenario -----------------------------------------------------
start_emulator() { # NAME EMULATOR-OPTIONS...
    local name=$1 log=$WORK/$1.emulator.log
    shift
    "$BIN" -q emulator --port 0 --storage-port 0 --flavor "${EMU_FLAVOR:-documented}" "$@" >"$log" 2>&1 &
    EMU_PID=$!
    for _ in $(seq 1 100); do # at most 10 s
        grep -q 'storage origin' "$log" 2>/dev/null && break
        kill -0 "$EMU_PID" 2>/dev/null || { cat "$log" >&2; exit 1; }
        sleep 0.1
    done
    BASE=$(awk '/base URL:/ {print $3}' "$log")
    STORAGE=$(awk '/storage origin:/ {print $3}' "$log")
    [ -n "$BASE" ] || { say "the emulator did not start: $(cat "$log")"; exit 1; }
    say "  emulator ($name): $BASE, storage $STORAGE"
}
stop_emulator() {
    if [ -n "$EMU_PID" ]; then
        kill "$EMU_PID" 2>/dev/null || true
        wait "$EMU_PID" 2>/dev/null || true
        EMU_PID=
    fi
}

# --- one measured run -------------------------------------------------------------------
# measure SCENARIO CONTESTANT REP EXTRA -- COMMAND...: appends
# "scenario contestant rep microseconds peak_rss_kb extra cpu_microseconds" to the results.
# REP 0 is the warm-up: run and checked, not recorded. A failing command stops the bench.
measure() {
    local scenario=$1 who=$2 rep=$3 extra=$4 t0 t1 rss cpu
    # bash's `time` gives the CPU time (user, sys) of what it waited for to the ms
    # (/usr/bin/time -v only to 10 ms); timeout's and time's own share, ~5 ms, is the same
    # in every run, so it cancels out of the added-step costs.
    local TIMEFORMAT='%3U %3S'
    shift 5
    t0=$(date +%s%N)
    if ! { time timeout -k 5 "$CMD_TIMEOUT" /usr/bin/time -v -o "$WORK/time.txt" "$@" \
        >"$WORK/out.txt" 2>"$WORK/err.txt"; } 2>"$WORK/cpu.txt"; then
        say "FAILED: $scenario / $who (rep $rep): $*"
        tail -20 "$WORK/err.txt" >&2
        exit 1
    fi
    t1=$(date +%s%N)
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/time.txt")
    # CPU time (user + sys, µs) of the command: the work it did, whatever else runs.
    cpu=$(awk '{printf "%d", ($1 + $2) * 1e6}' "$WORK/cpu.txt")
    if [ "$rep" -gt 0 ]; then
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scenario" "$who" "$rep" \
            $(((t1 - t0) / 1000)) "$rss" "$extra" "$cpu" >>"$RESULTS"
    fi
}

# alternate REP CMD...: runs the shell functions, each repetition starting one further on
# (with two: A first on odd repetitions, B first on even ones).
alternate() {
    local rep=$1 n i
    shift
    n=$#
    local cmds=("$@")
    for i in $(seq 0 $((n - 1))); do "${cmds[$(((rep - 1 + i) % n))]}" "$rep"; done
}

json_field() { # FILE PYTHON-EXPRESSION-ON-d
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"
}

# --- 1. list 20,000 datasets in pages of 100 --------------------------------------------
bench_list() {
    say "1. list: $LIST_DATASETS datasets, pages of 100"
    start_emulator list --datasets "$LIST_DATASETS"
    cat >"$WORK/list.yaml" <<'EOF'
version: 1
name: bench-list
api: {flavor: documented}
steps:
  - id: list
    action: datasets.list
    with:
      limit: 100
EOF
    list_ap() {
        measure list avala-pipe "$1" "" -- env AVALA_API_KEY=$KEY \
            "$BIN" -q run "$WORK/list.yaml" --base-url "$BASE" "${@:2}"
    }
    list_ap_nj() {
        measure list "avala-pipe --no-journal" "$1" "" -- env AVALA_API_KEY=$KEY \
            "$BIN" -q run "$WORK/list.yaml" --base-url "$BASE" --no-journal "${@:2}"
    }
    list_py() {
        measure list python-requests "$1" "" -- python3 "$ROOT/bench/list_requests.py" "$BASE" "$KEY"
        [ "$(cat "$WORK/out.txt")" = "$LIST_DATASETS" ] || { say "python listed $(cat "$WORK/out.txt")"; exit 1; }
    }
    # The floor: curl fetching the same page URLs, in order, over one kept-alive connection
    # (the URLs are collected first; curl reuses its connection across the URLs of a config).
    python3 "$ROOT/bench/list_requests.py" "$BASE" "$KEY" 100 --curl-config >"$WORK/list.curl"
    [ "$(grep -c '^url' "$WORK/list.curl")" = "$((LIST_DATASETS / 100))" ] \
        || { say "the floor's page list is not $((LIST_DATASETS / 100)) pages"; exit 1; }
    list_curl() {
        measure list "curl floor" "$1" "" -- curl -sSf -K "$WORK/list.curl"
    }
    list_ap 0 --report "$WORK/list.report.json"
    [ "$(json_field "$WORK/list.report.json" 'd["steps"][0]["outputs"]["count"]')" = "$LIST_DATASETS" ] \
        || { say "avala-pipe listed the wrong number of datasets"; exit 1; }
    [ -s "$WORK/.avala-pipe/list.journal.jsonl" ] || { say "the list run wrote no journal"; exit 1; }
    list_ap_nj 0 --report "$WORK/list.report.json"
    [ "$(json_field "$WORK/list.report.json" 'd["steps"][0]["outputs"]["count"]')" = "$LIST_DATASETS" ] \
        || { say "avala-pipe --no-journal listed the wrong number of datasets"; exit 1; }
    list_py 0
    list_curl 0
    for rep in $(seq 1 "$REPS"); do alternate "$rep" list_ap list_py list_ap_nj list_curl; done
    stop_emulator
}

# --- 2. download a 1 GiB export from the storage origin ---------------------------------
bench_download() {
    say "2. download: a $EXPORT_BYTES-byte export from the second origin"
    start_emulator download --export-bytes "$EXPORT_BYTES" --export-polls 1
    local created id status url=""
    created=$(curl -sf -H "X-Avala-Api-Key: $KEY" -H 'Content-Type: application/json' \
        -d '{"project_id": "prj_0001", "format": "json"}' "$BASE/exports")
    id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' <<<"$created")
    for _ in $(seq 1 30); do # bounded poll: at most ~30 s
        status=$(curl -sf -H "X-Avala-Api-Key: $KEY" "$BASE/exports/$id")
        url=$(python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("download_url") or "")' <<<"$status")
        [ -n "$url" ] && break
        sleep 1
    done
    [ -n "$url" ] || { say "the export never completed: $status"; exit 1; }
    mkdir -p "$WORK/dl"
    cat >"$WORK/download.yaml" <<'EOF'
version: 1
name: bench-download
api: {flavor: documented}
vars:
  url: ""
  to: ""
steps:
  - id: fetch
    action: download
    with:
      url: "{{ vars.url }}"
      to: "{{ vars.to }}"
EOF
    dl_ap() {
        measure download avala-pipe "$1" "$EXPORT_BYTES" -- env AVALA_API_KEY=$KEY \
            "$BIN" -q run "$WORK/download.yaml" --base-url "$BASE" \
            --var "url=$url" --var "to=$WORK/dl/ap.json" "${@:2}"
        [ "$(stat -c %s "$WORK/dl/ap.json")" = "$EXPORT_BYTES" ] || { say "avala-pipe: wrong size"; exit 1; }
        [ -n "${KEEP_FILE:-}" ] || rm -f "$WORK/dl/ap.json"
    }
    dl_curl() {
        measure download curl "$1" "$EXPORT_BYTES" -- curl -sSf -o "$WORK/dl/curl.json" "$url"
        [ "$(stat -c %s "$WORK/dl/curl.json")" = "$EXPORT_BYTES" ] || { say "curl: wrong size"; exit 1; }
        [ -n "${KEEP_FILE:-}" ] || rm -f "$WORK/dl/curl.json"
    }
    KEEP_FILE=1 dl_ap 0 --report "$WORK/download.report.json"
    KEEP_FILE=1 dl_curl 0
    local want
    want=$(sha256sum "$WORK/dl/curl.json" | cut -d' ' -f1)
    [ "$(json_field "$WORK/download.report.json" 'd["steps"][0]["outputs"]["sha256"]')" = "$want" ] \
        || { say "avala-pipe's sha256 differs from the file curl fetched"; exit 1; }
    cmp -s "$WORK/dl/ap.json" "$WORK/dl/curl.json" || { say "the two downloads differ"; exit 1; }
    rm -f "$WORK/dl/ap.json"
    mv "$WORK/dl/curl.json" "$WORK/dl/ref.json"
    # Not the goal's peer, a reference: what hashing every byte costs on this host, done the
    # shell's way (three processes side by side; no fsync, no rename). OpenSSL's sha256 uses
    # the CPU's SHA extensions, as avala-pipe's does (coreutils' sha256sum does not: ~6×
    # slower here, which would say nothing about the floor).
    dl_hash() {
        measure download "curl | tee | openssl" "$1" "$EXPORT_BYTES" -- bash -c \
            'set -euo pipefail; curl -sSf "$1" | tee "$2" | openssl dgst -sha256 >"$3"' _ \
            "$url" "$WORK/dl/hash.json" "$WORK/dl/hash.sum"
        [ "$(awk '{print $NF}' "$WORK/dl/hash.sum")" = "$want" ] || { say "curl | openssl: wrong digest"; exit 1; }
        rm -f "$WORK/dl/hash.json"
    }
    # The hash alone, no network: the file in the page cache, one thread at SHA-NI speed.
    # No client that reports the sha256 of every byte can finish sooner than this.
    dl_sha() {
        measure download "openssl dgst (hash only)" "$1" "$EXPORT_BYTES" -- openssl dgst -sha256 "$WORK/dl/ref.json"
        [ "$(awk '{print $NF}' "$WORK/out.txt")" = "$want" ] || { say "openssl dgst: wrong digest"; exit 1; }
    }
    dl_hash 0
    dl_sha 0
    for rep in $(seq 1 "$REPS"); do alternate "$rep" dl_ap dl_curl dl_hash dl_sha; done
    rm -f "$WORK/dl/ref.json"
    stop_emulator
}

make_files() { # DIR COUNT BYTES
    mkdir -p "$1"
    python3 - "$1" "$2" "$3" <<'EOF'
import os, sys
d, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    with open(os.path.join(d, f"file-{i:04d}.bin"), "wb") as f:
        f.write(os.urandom(size))
EOF
}

upload_pipeline() { # OUT CONCURRENCY
    cat >"$1" <<EOF
version: 1
name: bench-upload
api: {flavor: documented}
vars:
  files: ""
steps:
  - id: upload
    action: items.upload
    with:
      dataset: ds_0001
      files: "{{ vars.files }}"
      concurrency: $2
EOF
}

# --- 3. upload 500 files of 64 KiB, 8 at a time -----------------------------------------
bench_upload() {
    say "3. upload: $UPLOAD_FILES files of $UPLOAD_BYTES bytes, concurrency $UPLOAD_CONCURRENCY"
    start_emulator upload
    make_files "$WORK/up" "$UPLOAD_FILES" "$UPLOAD_BYTES"
    upload_pipeline "$WORK/upload.yaml" "$UPLOAD_CONCURRENCY"
    up_run() { # REP CONTESTANT EXTRA-OPTIONS...
        measure upload "$2" "$1" "" -- env AVALA_API_KEY=$KEY \
            "$BIN" -q run "$WORK/upload.yaml" --base-url "$BASE" \
            --var "files=$WORK/up/*.bin" --report "$WORK/upload.report.json" "${@:3}"
        [ "$(json_field "$WORK/upload.report.json" 'd["steps"][0]["outputs"]["count"]')" = "$UPLOAD_FILES" ] \
            || { say "$2 uploaded the wrong number of files"; exit 1; }
    }
    up_ap() { up_run "$1" avala-pipe; }
    up_ap_nj() { up_run "$1" "avala-pipe --no-journal" --no-journal; }
    up_xargs() {
        # shellcheck disable=SC2016 # the inner script gets its values as arguments
        measure upload "xargs -P$UPLOAD_CONCURRENCY curl" "$1" "" -- bash -c \
            'cd "$1" && printf "%s\n" *.bin | xargs -P"$2" -I{} curl -sSf -o /dev/null \
                -H "X-Avala-Api-Key: $3" -F "file=@{}" "$4/datasets/ds_0001/items"' \
            _ "$WORK/up" "$UPLOAD_CONCURRENCY" "$KEY" "$BASE"
    }
    up_ap 0
    [ -s "$WORK/.avala-pipe/upload.journal.jsonl" ] || { say "the upload run wrote no journal"; exit 1; }
    up_ap_nj 0
    up_xargs 0
    for rep in $(seq 1 "$REPS"); do alternate "$rep" up_ap up_xargs up_ap_nj; done
    stop_emulator
}

# --- 4. upload 200 files under --rate-limit 20 -------------------------------------------
bench_ratelimit() {
    say "4. rate limit: $RL_FILES files under --rate-limit $RL_LIMIT (ideal $((RL_FILES / RL_LIMIT)) s)"
    start_emulator ratelimit --rate-limit "$RL_LIMIT"
    make_files "$WORK/rl" "$RL_FILES" "$UPLOAD_BYTES"
    upload_pipeline "$WORK/ratelimit.yaml" "$UPLOAD_CONCURRENCY"
    rl_ap() {
        sleep 1.1 # a fresh rate-limit window, as for any new client
        measure ratelimit avala-pipe "$1" "" -- env AVALA_API_KEY=$KEY \
            "$BIN" run "$WORK/ratelimit.yaml" --base-url "$BASE" \
            --var "files=$WORK/rl/*.bin" --report "$WORK/ratelimit.report.json"
        local report=$WORK/ratelimit.report.json
        [ "$(json_field "$report" 'd["status"]')" = succeeded ] || { say "the run failed"; exit 1; }
        [ "$(json_field "$report" 'd["steps"][0]["outputs"]["count"]')" = "$RL_FILES" ] \
            || { say "not every file was uploaded"; exit 1; }
        # Every attempt past one per file was a retry after a 429 (nothing else fails here).
        local got429
        got429=$(json_field "$report" "d['steps'][0]['attempts'] - $RL_FILES")
        [ "$1" -eq 0 ] || printf 'ratelimit-429\tavala-pipe\t%s\t0\t0\t%s\n' "$1" "$got429" >>"$RESULTS"
    }
    rl_ap 0
    for rep in $(seq 1 "$REPS"); do rl_ap "$rep"; done
    stop_emulator
}

# --- 5. validate and dry-run 1k-50k steps -------------------------------------------------
bench_check() {
    say "5. validate and dry-run: $CHECK_SIZES steps ($LONG_REPS repetitions, $((3 * LONG_REPS)) up to 5k)"
    local n
    for n in $CHECK_SIZES; do
        python3 "$ROOT/bench/gen_pipeline.py" "$n" "$WORK/steps-$n.yaml"
    done
    check_validate() {
        measure "validate" "$N" "$1" "$N" -- "$BIN" validate "$WORK/steps-$N.yaml"
        grep -q "valid ($N steps)" "$WORK/err.txt" || { say "validate: $(cat "$WORK/err.txt")"; exit 1; }
    }
    check_dry() {
        measure "dry-run" "$N" "$1" "$N" -- "$BIN" run --dry-run "$WORK/steps-$N.yaml"
        grep -q "$N steps" "$WORK/out.txt" || { say "dry-run: $(head -1 "$WORK/out.txt")"; exit 1; }
    }
    # The small end of the linearity verdict (1k→5k) is runs of 0.05–0.4 s, where one
    # disturbed run weighs most: three times the repetitions there (~10 s more). The sizes
    # are measured in rounds, every size in a round, the larger ones in every third round
    # (1, 4, 7, ...): a minute of load from another tenant then weighs on both ends of the
    # verdict, not on the sizes that happened to run in it (one size after another, the
    # 50k runs came a minute after the 1k ones).
    for N in $CHECK_SIZES; do
        check_validate 0
        check_dry 0
    done
    local round
    for round in $(seq 1 $((3 * LONG_REPS))); do
        for N in $CHECK_SIZES; do
            [ "$N" -le 5000 ] || [ $(((round - 1) % 3)) -eq 0 ] || continue
            alternate "$round" check_validate check_dry
        done
    done
}

# --- 6. datasets.list with save_to over 100,000 datasets -----------------------------------
bench_memory() {
    say "6. memory: datasets.list with save_to, 10k and $MEM_DATASETS of $MEM_DATASETS datasets"
    start_emulator memory --datasets "$MEM_DATASETS"
    cat >"$WORK/save.yaml" <<'EOF'
version: 1
name: bench-save
api: {flavor: documented}
vars:
  max: 0
  to: ""
steps:
  - id: list
    action: datasets.list
    with:
      limit: 100
      max_items: "{{ vars.max }}"
      save_to: "{{ vars.to }}"
EOF
    mem_run() { # REP COUNT
        measure memory "$2" "$1" "$2" -- env AVALA_API_KEY=$KEY "$BIN" -q run "$WORK/save.yaml" \
            --base-url "$BASE" --var "max=$2" --var "to=$WORK/saved.jsonl"
        [ "$(wc -l <"$WORK/saved.jsonl")" = "$2" ] || { say "save_to holds $(wc -l <"$WORK/saved.jsonl") lines"; exit 1; }
        rm -f "$WORK/saved.jsonl"
    }
    mem_10k() { mem_run "$1" 10000; }
    mem_all() { mem_run "$1" "$MEM_DATASETS"; }
    mem_10k 0
    mem_all 0
    for rep in $(seq 1 "$REPS"); do alternate "$rep" mem_10k mem_all; done
    stop_emulator
}

# --- 10. a for_each of 10k and 100k requests ----------------------------------------------
bench_foreach() {
    say "10. for_each: a request per element of range(N), N = $FOREACH_SIZES ($LONG_REPS repetitions)"
    start_emulator foreach
    cat >"$WORK/foreach.yaml" <<'EOF'
version: 1
name: bench-foreach
api: {flavor: documented}
vars:
  n: 10
steps:
  - id: each
    action: request
    for_each: "{{ range(vars.n) }}"
    max_parallel: 8
    with:
      method: GET
      path: "/datasets/ds_0001"
EOF
    fe_run() { # REP COUNT SCENARIO EXTRA-OPTIONS...
        local report=()
        # The warm-up also writes a report, where every iteration is checked. A report
        # keeps every iteration's record and output, so the measured runs write none:
        # their exit status says the step, and so each of its iterations, succeeded.
        [ "$1" -gt 0 ] || report=(--report "$WORK/foreach.report.json")
        measure "$3" "$2" "$1" "$2" -- env AVALA_API_KEY=$KEY "$BIN" -q run "$WORK/foreach.yaml" \
            --base-url "$BASE" --var "n=$2" "${report[@]}" "${@:4}"
        [ "$1" -gt 0 ] || python3 - "$WORK/foreach.report.json" "$2" <<'EOF' || exit 1
import json, sys
d, n = json.load(open(sys.argv[1])), int(sys.argv[2])
s = d["steps"][0]
ok = (d["status"] == "succeeded" and s["outputs"]["count"] == n
      and len(s["iterations"]) == n and all(i["status"] == "succeeded" for i in s["iterations"])
      and all(r["status"] == 200 for r in s["outputs"]["results"]))
sys.exit(0 if ok else f"for_each over {n}: not every iteration succeeded")
EOF
    }
    local n fns=()
    for n in $FOREACH_SIZES; do
        eval "fe_nj_$n() { fe_run \"\$1\" $n foreach --no-journal; }"
        eval "fe_j_$n() { fe_run \"\$1\" $n foreach-journal; rm -rf \"$WORK/.avala-pipe\"; }"
        "fe_nj_$n" 0
        "fe_j_$n" 0
        fns+=("fe_nj_$n" "fe_j_$n")
    done
    for rep in $(seq 1 "$LONG_REPS"); do alternate "$rep" "${fns[@]}"; done
    stop_emulator
}

# --- 11. start-up: validate of the demo pipeline -----------------------------------------
bench_startup() {
    local demo=$ROOT/pipelines/journey.yaml who
    say "11. start-up: validate $demo, $STARTUP_RUNS runs each (hyperfine)"
    "$BIN" validate "$demo" 2>&1 | grep -q 'valid (4 steps)' || { say "the demo does not validate"; exit 1; }
    hyperfine -N --style none --warmup 5 --runs "$STARTUP_RUNS" \
        --export-json "$WORK/startup.json" \
        -n avala-pipe "$BIN validate $demo" -n "cat FILE" "cat $demo" -n true "true" >/dev/null
    # Peak RSS from one run each (hyperfine does not measure it).
    for who in avala-pipe "cat FILE" true; do
        case $who in
            avala-pipe) measure startup "$who" 0 "" -- "$BIN" validate "$demo" ;;
            "cat FILE") measure startup "$who" 0 "" -- cat "$demo" ;;
            true) measure startup "$who" 0 "" -- true ;;
        esac
        awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/time.txt" >"$WORK/startup-rss-${who// /_}"
    done
    python3 - "$WORK" >>"$RESULTS" <<'EOF'
import json, sys
work = sys.argv[1]
for r in json.load(open(f"{work}/startup.json"))["results"]:
    rss = open(f"{work}/startup-rss-{r['command'].replace(' ', '_')}").read().strip()
    for i, t in enumerate(r["times"], 1):
        print(f"startup\t{r['command']}\t{i}\t{round(t * 1e6)}\t{rss}\t")
EOF
}

# --- today's API (issue 14): the SDK's venv, emulator stats -------------------------------
# Avala's official SDK (PyPI avala 0.10.0, as tests/it/sdk.rs pins it): target/sdk-venv when
# the tests made it, else a venv in the work directory.
sdk_python() {
    local py=$ROOT/target/sdk-venv/bin/python
    local check="import avala, importlib.metadata as m; assert m.version('avala') == '0.10.0'"
    if "$py" -c "$check" 2>/dev/null; then echo "$py"; return; fi
    py=$WORK/sdk-venv/bin/python
    if ! "$py" -c "$check" 2>/dev/null; then
        say "installing avala==0.10.0 (pip) into $WORK/sdk-venv"
        python3 -m venv "$WORK/sdk-venv"
        "$py" -m pip install --quiet --disable-pip-version-check avala==0.10.0
    fi
    echo "$py"
}
emu_stats() { curl -sf "$STORAGE/_emulator/stats"; } # the emulator's LimitStats (JSON)
dataset_items() { # UID: item_count of the dataset, as the emulator serves it
    curl -sf -H "X-Avala-Api-Key: $KEY" "$BASE/datasets/$1/" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["item_count"])'
}
check_concurrency() { # SCENARIO: the emulator never saw more than 10 uploads or 5 exports at once
    local stats
    stats=$(emu_stats)
    python3 -c '
import json, sys
s = json.loads(sys.argv[1])
assert s["max_uploads_in_flight"] <= 10 and s["uploads_refused"] == 0, s
assert s["max_exports_running"] <= 5 and s["exports_refused"] == 0, s' "$stats" \
        || { say "$1: a published concurrency limit was exceeded: $stats"; exit 1; }
}
presigned_pipeline() { # OUT CONCURRENCY
    printf '%s\n' 'version: 1' 'name: bench-presigned' 'api: {flavor: current}' 'vars:' \
        '  files: ""' '  name: ""' 'steps:' '  - id: upload' '    action: datasets.upload' \
        '    with:' '      name: "{{ vars.name }}"' '      files: "{{ vars.files }}"' \
        "      concurrency: $2" >"$1"
}

# --- 7. today's upload: 500 x 64 KiB, avala-pipe vs Avala's SDK (8 workers) ----------------
bench_sdkupload() {
    say "7. sdkupload: $SDK_FILES files of $UPLOAD_BYTES bytes, datasets.upload vs the SDK's create_from_local"
    local py
    py=$(sdk_python)
    EMU_FLAVOR=current start_emulator sdkupload --dataset-polls 0
    make_files "$WORK/sdk" "$SDK_FILES" "$UPLOAD_BYTES"
    presigned_pipeline "$WORK/sdkupload.yaml" 8
    SDK_RUN=0
    sdk_ap() {
        SDK_RUN=$((SDK_RUN + 1))
        measure sdkupload avala-pipe "$1" "" -- env AVALA_API_KEY=$KEY \
            "$BIN" -q run "$WORK/sdkupload.yaml" --base-url "$BASE" --var "files=$WORK/sdk/*.bin" \
            --var "name=ap $SDK_RUN" --report "$WORK/sdkupload.report.json"
        local uid
        uid=$(json_field "$WORK/sdkupload.report.json" 'd["steps"][0]["outputs"]["id"]')
        [ "$(dataset_items "$uid")" = "$SDK_FILES" ] || { say "avala-pipe: $uid holds the wrong number of items"; exit 1; }
    }
    sdk_run() { # REP CONTESTANT HOME
        SDK_RUN=$((SDK_RUN + 1))
        rm -rf "$3" && mkdir -p "$3"
        measure sdkupload "$2" "$1" "" -- env HOME="$3" AVALA_BASE_URL="$BASE" \
            AVALA_API_KEY=$KEY STORAGE_ORIGIN="$STORAGE" "$py" "$ROOT/bench/sdk_upload.py" \
            "$WORK/sdk" "sdk $SDK_RUN"
        [ "$(dataset_items "$(cat "$WORK/out.txt")")" = "$SDK_FILES" ] \
            || { say "the SDK: $(cat "$WORK/out.txt") holds the wrong number of items"; exit 1; }
        rm -rf "$3"
    }
    # The SDK fsyncs its resume checkpoint (under ~/.avala) after every file: as users run
    # it, and again with HOME on tmpfs, where fsync costs nothing (the strongest SDK run).
    sdk_py() { sdk_run "$1" "avala SDK" "$WORK/sdk-home"; }
    sdk_py_shm() { sdk_run "$1" "avala SDK, HOME on tmpfs" "$SHM_HOME"; }
    SHM_HOME=$(mktemp -d /dev/shm/avala-bench-home.XXXXXX)
    sdk_ap 0
    sdk_py 0
    sdk_py_shm 0
    for rep in $(seq 1 "$REPS"); do alternate "$rep" sdk_ap sdk_py sdk_py_shm; done
    rm -rf "$SHM_HOME"
    check_concurrency sdkupload
    stop_emulator
}

# --- 8. one 2 GiB file: a v2 MULTIPART session vs curl -T to a presigned PUT ----------------
# Each run gets a fresh emulator (the storage origin keeps what it receives on disk).
bench_multipart() {
    say "8. multipart: one $MP_BYTES-byte file, datasets.upload (MULTIPART) vs curl -T (one PUT)"
    mkdir -p "$WORK/mp"
    python3 -c '
import os, sys
with open(sys.argv[1], "wb") as f:
    left = int(sys.argv[2])
    while left:
        n = min(left, 1 << 24)
        f.write(os.urandom(n))
        left -= n' "$WORK/mp/big.bin" "$MP_BYTES"
    MP_SHA=$(sha256sum "$WORK/mp/big.bin" | cut -d' ' -f1)
    presigned_pipeline "$WORK/multipart.yaml" 8
    mp_ap() {
        EMU_FLAVOR=current start_emulator multipart --dataset-polls 0
        measure multipart avala-pipe "$1" "$MP_BYTES" -- env AVALA_API_KEY=$KEY \
            "$BIN" -q run "$WORK/multipart.yaml" --base-url "$BASE" --var "files=$WORK/mp/big.bin" \
            --var "name=big" --report "$WORK/multipart.report.json"
        local report=$WORK/multipart.report.json stored
        [ "$(json_field "$report" 'd["steps"][0]["outputs"]["files"][0]["sha256"]')" = "$MP_SHA" ] \
            || { say "avala-pipe: wrong sha256"; exit 1; }
        # What the emulator stored: one item with the file's digest, received in parts.
        stored=$(curl -sf -H "X-Avala-Api-Key: $KEY" \
            "$BASE/datasets/$(json_field "$report" 'd["steps"][0]["outputs"]["dataset"]["owner_name"]')/big/items/" \
            | python3 -c 'import json,sys; r=json.load(sys.stdin)["results"]; print(len(r), r[0]["metadata"].get("sha256", ""))')
        [ "$stored" = "1 $MP_SHA" ] || { say "avala-pipe: the dataset holds $stored"; exit 1; }
        check_concurrency multipart
        stop_emulator
    }
    mp_curl() { # REP [hash]
        # A single presigned PUT (a threshold above the file's size) for the same bytes;
        # with "hash", `openssl dgst -sha256` reads the file beside it (a reference, not the
        # goal's peer: what hashing every byte costs here; see dl_hash).
        EMU_FLAVOR=current start_emulator multipart-curl --multipart-threshold $((MP_BYTES * 2))
        local url
        url=$(curl -sf -H "X-Avala-Api-Key: $KEY" -H 'Content-Type: application/json' \
            -d "{\"dataset_name\": \"big\", \"file_path_in_dataset\": \"big.bin\", \"content_length\": $MP_BYTES, \"upload_protocol_version\": 2, \"dataset_upload_uid\": \"00000000-0000-4000-8000-000000000001\"}" \
            "$BASE/datasets/manual-upload/file-upload-url/" \
            | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["method"] == "PUT", d; print(d["url"])')
        if [ "${2:-}" = hash ]; then
            measure multipart "curl -T + openssl" "$1" "$MP_BYTES" -- bash -c \
                'set -euo pipefail; openssl dgst -sha256 "$1" >"$3" & curl -sSf -o /dev/null -T "$1" \
                    -H "Content-Type: application/octet-stream" "$2"; wait $!' _ \
                "$WORK/mp/big.bin" "$url" "$WORK/mp/hash.sum"
            [ "$(awk '{print $NF}' "$WORK/mp/hash.sum")" = "$MP_SHA" ] || { say "openssl: wrong digest"; exit 1; }
        else
            measure multipart "curl -T" "$1" "$MP_BYTES" -- curl -sSf -o /dev/null -T "$WORK/mp/big.bin" \
                -H 'Content-Type: application/octet-stream' "$url"
        fi
        stop_emulator
    }
    mp_hash() { mp_curl "$1" hash; }
    mp_ap 0
    mp_curl 0
    mp_hash 0
    for rep in $(seq 1 "$REPS"); do alternate "$rep" mp_ap mp_curl mp_hash; done
}

# --- 9. 2,000 files under the published limits, scaled: 100 requests per 1-s window ----------
# The emulator's rate-limit windows are whole Unix seconds: --rate-limit 100 is the published
# 100 requests/min with time scaled down 60 times; the concurrency limits are not scaled.
bench_limits() {
    say "9. limits: $LIM_FILES files and 8 exports under --rate-limit $LIM_RATE, --max-uploads 10, --max-exports 5"
    make_files "$WORK/lim" "$LIM_FILES" "$UPLOAD_BYTES"
    presigned_pipeline "$WORK/limits.yaml" 10
    # Beside the upload, 8 exports asked for at once: the run keeps 5 running at most.
    printf '%s\n' '  - id: exports' '    action: exports.create' \
        '    for_each: "{{ range(8) | list }}"' '    max_parallel: 8' '    with: {project_id: prj_0001}' \
        '  - id: exported' '    action: exports.wait' '    for_each: "{{ steps.exports.outputs.results }}"' \
        '    with: {export: "{{ item.uid }}", interval: 100ms}' >>"$WORK/limits.yaml"
    lim_run() {
        EMU_FLAVOR=current start_emulator limits --rate-limit "$LIM_RATE" --max-uploads 10 \
            --max-exports 5 --dataset-polls 0
        # Start at a window's start (the "ideal" assumes it).
        python3 -c 'import time; time.sleep(1 - time.time() % 1 + 0.002)'
        measure limits avala-pipe "$1" "" -- env AVALA_API_KEY=$KEY \
            "$BIN" run "$WORK/limits.yaml" --base-url "$BASE" --var "files=$WORK/lim/*.bin" \
            --var "name=limits" --report "$WORK/limits.report.json"
        local report=$WORK/limits.report.json stats
        [ "$(json_field "$report" 'd["status"]')" = succeeded ] || { say "the run failed"; exit 1; }
        [ "$(json_field "$report" 'd["steps"][0]["outputs"]["count"]')" = "$LIM_FILES" ] \
            || { say "not every file was uploaded"; exit 1; }
        stats=$(emu_stats) # read before the item count below adds a request
        [ "$(dataset_items "$(json_field "$report" 'd["steps"][0]["outputs"]["id"]')")" = "$LIM_FILES" ] \
            || { say "the dataset does not hold every file"; exit 1; }
        check_concurrency limits
        [ "$1" -eq 0 ] || python3 -c '
import json, sys
s = json.loads(sys.argv[1])
keys = ("api_requests", "windows", "throttled", "max_throttled_per_window", "max_uploads_in_flight",
        "uploads_refused", "max_exports_running", "exports_refused")
print("limits-stats\tavala-pipe\t%s\t0\t0\t%s" % (sys.argv[2], ";".join("%s=%s" % (k, s[k]) for k in keys)))' \
            "$stats" "$1" >>"$RESULTS"
        stop_emulator
    }
    lim_run 0
    for rep in $(seq 1 "$LIM_REPS"); do lim_run "$rep"; done
}

# --- run ------------------------------------------------------------------------------------
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED=$(date +%s)
want list && bench_list
want download && bench_download
want upload && bench_upload
want ratelimit && bench_ratelimit
want check && bench_check
want memory && bench_memory
want sdkupload && bench_sdkupload
want multipart && bench_multipart
want limits && bench_limits
want foreach && bench_foreach
want startup && bench_startup
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# Every benchmark table names its CPU: the model as /proc/cpuinfo gives it.
cpu=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)
[ -n "$cpu" ] || cpu=$(awk -F': *' '/^(vendor_id|CPU implementer|Hardware)/ {print $2; exit}' /proc/cpuinfo)
cpu=${cpu:-unknown CPU model}
mem=$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
echo
echo "## avala-pipe benchmarks on $cpu"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); took $(($(date +%s) - STARTED)) s"
# A virtual machine that hands freed memory back to its host (virtio-balloon free page
# reporting, feature bit 5) pays a host fault for every new page-cache page: what writing
# through the page cache costs (curl -o, the emulator's storage) then varies with the host.
reporting=""
for dev in /sys/bus/virtio/devices/*; do
    [ "$(cat "$dev/device" 2>/dev/null)" = 0x0005 ] || continue
    case "$(cut -c6 "$dev/features" 2>/dev/null)" in
        1) reporting="; free page reporting to the host: on (page-cache writes vary with the host)" ;;
        0) reporting="; free page reporting to the host: off" ;;
    esac
done
echo "- CPU: $cpu; $(nproc) CPUs, $mem memory, Linux $(uname -r)$reporting"
echo "- load average (1/5/15 min): before $LOAD_BEFORE, after $LOAD_AFTER"
echo "- avala-pipe $BUILT_FROM, $(rustc -V 2>/dev/null || echo rustc ?); $(python3 -c 'import requests, platform; print("Python", platform.python_version(), "requests", requests.__version__)'); $(curl -V | head -1 | cut -d' ' -f1-2)"
echo "- repetitions: $REPS per contestant, alternating, after one warm-up run each; medians shown"
echo "- API flavour: documented (pipelines and emulator) for 1–6, current for 7–9; runs keep their journal unless marked --no-journal"
echo
python3 "$ROOT/bench/stats.py" "$RESULTS" \
    --ideal-ratelimit "$((RL_FILES / RL_LIMIT))" --reps "$REPS" --limits-rate "$LIM_RATE"
