//! Shared test helpers, and the one harness that runs the real `avala-pipe` binary: a
//! builder ([`avala_pipe`]) with args, env, a working directory, stdin and a timeout, run
//! to completion ([`Cmd::run`], or [`Cmd::run_async`] from an async test) or in the
//! background ([`Cmd::spawn`], to be signalled); it captures stdout, stderr, the exit code
//! and the time taken.
//!
//! Every run starts from the crate root with `NO_COLOR=1` and without the outer
//! environment's variables that change what the binary does ([`CLEARED`] and
//! [`CLEARED_PREFIXES`]: every `AVALA_*` and `GITHUB_*`, `CI`, `RUST_LOG`, `TERM`, colour
//! forcing and proxies), so results do not depend on the shell the tests run in; a test
//! sets what it needs after that.
//! A run that outlives its timeout is killed and fails the test.
//!
//! Every API key given to a run (`AVALA_API_KEY`, or the emulator's with `run --emulator`)
//! must not come back: stdout and stderr are always scanned for it, as is and in base64; [`Cmd::scan_dir`] adds every file under a
//! directory, and that no temporary `.part` file is left there.

#![allow(dead_code)]

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Starts the in-process emulator on free loopback ports, accepting only `key` when given.
pub async fn start_emulator(
    key: Option<&str>,
    options: avala_pipe::emulator::EmulatorOptions,
) -> avala_pipe::emulator::Emulator {
    // reqwest is built without a default crypto provider; the emulator's clients need one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    avala_pipe::emulator::Emulator::start(avala_pipe::emulator::EmulatorOptions {
        key: key.map(str::to_string).or(options.key.clone()),
        ..options
    })
    .await
    .expect("the emulator starts")
}

/// Writes `text` to `dir/name` (creating folders) and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// The hex sha256 of a file.
pub fn sha256_file(path: &Path) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

/// The crate root (where `Cargo.toml`, `pipelines/` and `tests/` are).
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A path under the crate root.
pub fn path(relative: &str) -> PathBuf {
    root().join(relative)
}

/// Variables of the outer environment that change what the binary does (besides those
/// starting with [`CLEARED_PREFIXES`]); no run inherits them.
pub const CLEARED: &[&str] = &[
    "CI",
    "RUST_LOG",
    "TERM",
    "NO_COLOR",
    "CLICOLOR",
    "CLICOLOR_FORCE",
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// Every variable starting with one of these is cleared too: the binary's own settings
/// (`AVALA_API_KEY`, `AVALA_BASE_URL`, ...) and GitHub Actions' (`GITHUB_OUTPUT`, ...).
pub const CLEARED_PREFIXES: &[&str] = &["AVALA_", "GITHUB_"];

/// The variable whose values the output is scanned for.
const KEY_VAR: &str = "AVALA_API_KEY";

/// Starts a command line: `avala_pipe().args([...]).run()`.
pub fn avala_pipe() -> Cmd {
    Cmd {
        args: Vec::new(),
        env: vec![
            ("NO_COLOR".into(), Some("1".into())),
            // The emulator serves the documented flavour unless a test asks otherwise.
            ("AVALA_API_FLAVOR".into(), Some("documented".into())),
        ],
        cwd: root().to_path_buf(),
        stdin: None,
        timeout: Duration::from_secs(60),
        wrapper: None,
        scan_dir: None,
    }
}

/// How the binary is started, when not directly.
#[derive(Debug, Clone, Copy)]
enum Wrapper {
    /// Under `sh` with `ulimit -v` (KiB).
    MemoryLimit(u64),
    /// On a pseudo-terminal, through util-linux `script`; its output is the terminal's.
    Terminal,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Cmd {
    args: Vec<OsString>,
    /// Set after the cleared variables are removed; `None` removes the variable.
    env: Vec<(OsString, Option<OsString>)>,
    cwd: PathBuf,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
    wrapper: Option<Wrapper>,
    scan_dir: Option<PathBuf>,
}

impl Cmd {
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), Some(value.into())));
        self
    }

    pub fn env_remove(mut self, key: impl Into<OsString>) -> Self {
        self.env.push((key.into(), None));
        self
    }

    /// The working directory (default: the crate root).
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = dir.into();
        self
    }

    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(data.into());
        self
    }

    /// Kill the process and fail the test after this long (default 60 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs the binary with its address space capped (`ulimit -v`), so unbounded memory is
    /// a crash rather than a slow machine.
    pub fn memory_limit_kib(mut self, kib: u64) -> Self {
        self.wrapper = Some(Wrapper::MemoryLimit(kib));
        self
    }

    /// Runs the binary on a pseudo-terminal (util-linux `script`): stdout is everything
    /// the terminal showed, stderr included.
    pub fn on_terminal(mut self) -> Self {
        self.wrapper = Some(Wrapper::Terminal);
        self
    }

    /// After the run, fail unless no file under `dir` holds the key and no temporary
    /// (`.part`, `.avala-pipe-*`) file is left there.
    pub fn scan_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.scan_dir = Some(dir.into());
        self
    }

    /// Runs the binary to completion.
    pub fn run(self) -> Output {
        self.spawn().wait()
    }

    /// [`Self::run`] from an async test: the runtime (and an in-process emulator on it)
    /// keeps going while the binary runs.
    pub async fn run_async(self) -> Output {
        tokio::task::spawn_blocking(move || self.run())
            .await
            .expect("the run's thread")
    }

    /// Starts the binary in the background.
    pub fn spawn(self) -> Running {
        let mut command = self.command();
        let line = self.command_line();
        let started = Instant::now();
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{line}`: {e}"));
        if let Some(data) = self.stdin.clone() {
            let mut pipe = child.stdin.take().expect("piped stdin");
            std::thread::spawn(move || {
                let _ = pipe.write_all(&data);
            });
        }
        let stdout = drain(child.stdout.take().expect("piped stdout"));
        let stderr = drain(child.stderr.take().expect("piped stderr"));
        Running {
            keys: self.keys(),
            child: Some(child),
            stdout: Some(stdout),
            stderr: Some(stderr),
            started,
            line,
            timeout: self.timeout,
            scan_dir: self.scan_dir,
        }
    }

    /// The process to start, with the environment cleaned and then set.
    fn command(&self) -> Command {
        let bin = env!("CARGO_BIN_EXE_avala-pipe");
        let mut command = match self.wrapper {
            Some(Wrapper::MemoryLimit(kib)) => {
                let mut sh = Command::new("sh");
                sh.arg("-c")
                    .arg(format!("ulimit -v {kib} && exec \"$0\" \"$@\""))
                    .arg(bin)
                    .args(&self.args);
                sh
            }
            Some(Wrapper::Terminal) => {
                let mut line = shell_quote(OsStr::new(bin));
                for arg in &self.args {
                    line.push(' ');
                    line.push_str(&shell_quote(arg));
                }
                let mut script = Command::new("script");
                script.arg("-qec").arg(line).arg("/dev/null");
                script
            }
            None => {
                let mut direct = Command::new(bin);
                direct.args(&self.args);
                direct
            }
        };
        command
            .current_dir(&self.cwd)
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for key in cleared_variables() {
            command.env_remove(key);
        }
        for (key, value) in &self.env {
            match value {
                Some(v) => command.env(key, v),
                None => command.env_remove(key),
            };
        }
        command
    }

    /// Every API key given to the run, to be looked for in what it leaves: those set as
    /// `AVALA_API_KEY`, and the emulator's demo key for `run --emulator`.
    fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .env
            .iter()
            .filter(|(k, _)| k == KEY_VAR)
            .filter_map(|(_, v)| v.as_ref()?.to_str().map(str::to_string))
            .collect();
        if self.args.first().is_some_and(|a| a == "run")
            && self.args.iter().any(|a| a == "--emulator")
        {
            keys.push(avala_pipe::emulator::DEMO_KEY.to_string());
        }
        keys
    }

    fn command_line(&self) -> String {
        let mut line = String::from("avala-pipe");
        for arg in &self.args {
            line.push(' ');
            line.push_str(&arg.to_string_lossy());
        }
        line
    }
}

/// `text` in single quotes for `sh`.
fn shell_quote(text: &OsStr) -> String {
    format!("'{}'", text.to_string_lossy().replace('\'', r"'\''"))
}

/// The names to remove from the outer environment: [`CLEARED`] and every variable that
/// starts with one of [`CLEARED_PREFIXES`].
fn cleared_variables() -> Vec<OsString> {
    let mut names: Vec<OsString> = CLEARED.iter().map(OsString::from).collect();
    names.extend(std::env::vars_os().map(|(k, _)| k).filter(|k| {
        let k = k.to_string_lossy();
        CLEARED_PREFIXES.iter().any(|p| k.starts_with(p))
    }));
    names
}

/// A run in the background.
pub struct Running {
    child: Option<Child>,
    stdout: Option<std::thread::JoinHandle<Vec<u8>>>,
    stderr: Option<std::thread::JoinHandle<Vec<u8>>>,
    started: Instant,
    line: String,
    timeout: Duration,
    keys: Vec<String>,
    scan_dir: Option<PathBuf>,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// `kill -NAME pid`, with the shell's own `kill` (no libc, no procps needed).
    pub fn signal(&self, name: &str) {
        let pid = self.pid().to_string();
        let status = Command::new("sh")
            .args(["-c", "kill -\"$0\" \"$1\"", name, &pid])
            .status()
            .expect("sh runs");
        assert!(status.success(), "kill -{name} {pid}");
    }

    /// Waits for the exit (killing the process and failing past the timeout), then
    /// checks that it left no trace of the key.
    pub fn wait(mut self) -> Output {
        let mut child = self.child.take().expect("running");
        let line = std::mem::take(&mut self.line);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for the child") {
                break status;
            }
            if self.started.elapsed() > self.timeout {
                let _ = child.kill();
                let _ = child.wait();
                panic!("`{line}` did not finish within {:?}", self.timeout);
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let elapsed = self.started.elapsed();
        let text = |pipe: Option<std::thread::JoinHandle<Vec<u8>>>| -> String {
            let bytes = pipe.expect("piped").join().expect("pipe reader");
            String::from_utf8_lossy(&bytes).into()
        };
        let out = Output {
            command: line,
            code: status.code(),
            stdout: text(self.stdout.take()),
            stderr: text(self.stderr.take()),
            elapsed,
        };
        out.assert_no_key(&self.keys, self.scan_dir.as_deref());
        out
    }

    /// [`Self::wait`] from an async test.
    pub async fn wait_async(self) -> Output {
        tokio::task::spawn_blocking(move || self.wait())
            .await
            .expect("the wait's thread")
    }
}

impl Drop for Running {
    /// A test that fails half-way does not leave the binary running.
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// What a run gave.
#[derive(Debug, Clone)]
pub struct Output {
    pub command: String,
    /// `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Output {
    /// Fails the test, showing the command and its output, unless the exit code is `code`.
    #[track_caller]
    pub fn code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "`{}` exited with {:?}, expected {code}\n--- stdout\n{}\n--- stderr\n{}",
            self.command,
            self.code,
            self.stdout,
            self.stderr
        );
        self
    }

    #[track_caller]
    pub fn success(&self) -> &Self {
        self.code(0)
    }

    /// stdout parsed as one JSON document.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout of `{}` is not one JSON document: {e}\n--- stdout\n{}\n--- stderr\n{}",
                self.command, self.stdout, self.stderr
            )
        })
    }

    /// The step `id` of the JSON report on stdout.
    #[track_caller]
    pub fn step(&self, id: &str) -> serde_json::Value {
        step(&self.json(), id).clone()
    }

    /// The error of the step `id` in the JSON report on stdout.
    #[track_caller]
    pub fn error(&self, id: &str) -> String {
        self.step(id)["error"]
            .as_str()
            .unwrap_or_else(|| panic!("step {id} has no error: {:#}", self.json()))
            .to_string()
    }

    /// Fails if one of `keys` shows in stdout, stderr or (with `dir`) a file under `dir`,
    /// or if `dir` holds a temporary file.
    #[track_caller]
    fn assert_no_key(&self, keys: &[String], dir: Option<&Path>) {
        let needles: Vec<Vec<u8>> = keys.iter().flat_map(|k| key_forms(k)).collect();
        let mut hits = Vec::new();
        for (name, text) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            if contains_any(text.as_bytes(), &needles) {
                hits.push(name.to_string());
            }
        }
        let Some(dir) = dir else {
            assert!(
                hits.is_empty(),
                "the key of `{}` leaked into {hits:?}",
                self.command
            );
            return;
        };
        for file in files_under(dir) {
            // Large downloads are the emulator's generated data; their head and tail
            // suffice to catch a key written into them, and reading gigabytes is slow.
            if contains_any(&read_sample(&file, 8 << 20), &needles) {
                hits.push(file.display().to_string());
            }
        }
        assert!(
            hits.is_empty(),
            "the key of `{}` leaked into {hits:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.command,
            self.stdout,
            self.stderr
        );
        let partial = partial_files(dir);
        assert!(partial.is_empty(), "partial files left: {partial:?}");
        println!("FIGURES canary_hits=0 partial_files=0");
    }

    /// Fails unless stderr contains `needle`.
    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "stderr of `{}` lacks {needle:?}\n--- stderr\n{}",
            self.command,
            self.stderr
        );
        self
    }

    /// Fails unless stdout contains `needle`.
    #[track_caller]
    pub fn stdout_has(&self, needle: &str) -> &Self {
        assert!(
            self.stdout.contains(needle),
            "stdout of `{}` lacks {needle:?}\n--- stdout\n{}",
            self.command,
            self.stdout
        );
        self
    }
}

/// The step `id` of a run's JSON report.
#[track_caller]
pub fn step<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    report["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == id))
        .unwrap_or_else(|| panic!("no step {id} in {report:#}"))
}

/// The forms of a key to look for: as is, and base64 (standard and URL-safe) at each of
/// the three byte alignments it can have inside a longer encoded text. Keys shorter than
/// 8 bytes are not looked for: they would be found by chance.
fn key_forms(key: &str) -> Vec<Vec<u8>> {
    use base64::Engine as _;
    if key.len() < 8 {
        return vec![];
    }
    let mut needles = vec![key.as_bytes().to_vec()];
    for engine in [
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ] {
        for offset in 0..3 {
            let mut bytes = vec![b'x'; offset];
            bytes.extend_from_slice(key.as_bytes());
            let encoded = engine.encode(&bytes);
            // Skip the characters that mix in the prefix and the last, partial group.
            let start = if offset == 0 { 0 } else { 4 };
            let end = encoded.len() - 4;
            needles.push(encoded.as_bytes()[start..end].to_vec());
        }
    }
    needles
}

fn contains_any(hay: &[u8], needles: &[Vec<u8>]) -> bool {
    needles
        .iter()
        .any(|n| hay.windows(n.len()).any(|w| w == n.as_slice()))
}

/// At most `limit` bytes of a file: all of a small one, the head and tail of a big one.
fn read_sample(path: &Path, limit: u64) -> Vec<u8> {
    use std::io::{Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut data = Vec::new();
    if len <= limit {
        let _ = f.read_to_end(&mut data);
    } else {
        let _ = Read::by_ref(&mut f).take(limit / 2).read_to_end(&mut data);
        let _ = f.seek(SeekFrom::End(-((limit / 2) as i64)));
        let _ = f.read_to_end(&mut data);
    }
    data
}

/// Every file under `dir`, at any depth.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.is_file() {
                // Not FIFOs or devices a test made: opening a FIFO would wait for a writer.
                out.push(p);
            }
        }
    }
    out
}

/// Temporary download/list files (`.avala-pipe-*.part`) anywhere under `dir`.
pub fn partial_files(dir: &Path) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.ends_with(".part") || name.starts_with(".avala-pipe-")
        })
        .collect()
}

/// True when the test run should rewrite expected-output files (`BLESS=1`).
pub fn bless() -> bool {
    std::env::var_os("BLESS").is_some_and(|v| !v.is_empty() && v != "0")
}

/// The key scan can fail: a run that shows the key fails its test.
#[test]
#[should_panic(expected = "leaked into [\"stderr\"]")]
fn a_run_that_shows_the_key_fails() {
    const KEY: &str = "avk_test_HARNESS_shown_0001";
    // `validate` names the file it cannot read, here the key itself.
    avala_pipe()
        .args(["validate", KEY])
        .env("AVALA_API_KEY", KEY)
        .run();
}

/// The directory scan finds the key base64-encoded inside a longer text, at any alignment.
#[test]
fn a_file_holding_the_encoded_key_fails_the_run() {
    use base64::Engine as _;
    const KEY: &str = "avk_test_HARNESS_stored_0002";
    for prefix in ["", "u", "us", "user:"] {
        let dir = tempfile::tempdir().unwrap();
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{prefix}{KEY}"));
        write(dir.path(), "sub/note.txt", &format!("Basic {encoded}\n"));
        let cmd = avala_pipe()
            .arg("--version")
            .env("AVALA_API_KEY", KEY)
            .scan_dir(dir.path());
        let failed = std::panic::catch_unwind(|| cmd.run()).is_err();
        assert!(failed, "the key behind {prefix:?} was not found");
    }
}

/// The directory scan fails a run that leaves a temporary download file behind.
#[test]
#[should_panic(expected = "partial files left")]
fn a_partial_file_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "out/.avala-pipe-x.part", "half");
    avala_pipe().arg("--version").scan_dir(dir.path()).run();
}
