//! `run --html FILE`: the run report as one self-contained page (no network, no external
//! script, style or font: it works as a CI artifact opened from disk). The page is a
//! fixed shell of HTML, CSS and a small script, and the run's data ([`Timeline::to_json`],
//! masked) as one JSON block the script draws from: a Gantt timeline of the steps in
//! concurrency lanes, each expanding into a waterfall of its HTTP attempts and waits
//! (coloured by cause: backoff, `Retry-After`, the rate-limit pacer, poll interval),
//! `for_each` iterations grouped, transfers with bytes, throughput and sha256, the
//! dependency graph coloured by status, and the failures with their server messages.
//!
//! A script error shows on the page (`#script-error`), so a browser test can see it.
//!
//! Takes: the pipeline, the [`RunResult`], the [`Timeline`], the redactor. Gives: the page.
//! Must not: reference anything outside the file; show a secret (the data is masked,
//! then the whole page once more).

use serde_json::Value;

use super::timeline::Timeline;
use super::Redactor;
use crate::execute::RunResult;
use crate::pipeline::model::Pipeline;

/// The page.
pub fn to_html(
    p: &Pipeline,
    started_at: &str,
    result: &RunResult,
    timeline: &Timeline,
    redactor: &Redactor,
) -> String {
    let data = timeline.to_json(p, started_at, result, redactor);
    page(&data, redactor)
}

/// The page for already-masked run data.
pub fn page(data: &Value, redactor: &Redactor) -> String {
    let title = escape(&format!(
        "avala-pipe: {} {}",
        data["pipeline"].as_str().unwrap_or(""),
        data["status"].as_str().unwrap_or("")
    ));
    let html = SHELL
        .replace("{{TITLE}}", &title)
        .replace("{{STYLE}}", STYLE)
        .replace("{{SCRIPT}}", SCRIPT)
        .replace("{{DATA}}", &script_json(data));
    redactor.text(&html)
}

/// JSON that is safe inside a `<script>` element: no `<` (so no `</script>` or `<!--`),
/// and no line separators some parsers mistake for line ends.
fn script_json(v: &Value) -> String {
    serde_json::to_string(v)
        .unwrap_or_else(|_| "{}".into())
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const SHELL: &str = r##"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<title>{{TITLE}}</title>
<style>{{STYLE}}</style>
</head>
<body>
<noscript><p>This report draws itself with a script; allow scripts for this file.</p></noscript>
<main id="report"></main>
<script type="application/json" id="run-data">{{DATA}}</script>
<script>{{SCRIPT}}</script>
</body>
</html>
"##;

const STYLE: &str = r##"
:root { --ok:#2da44e; --fail:#cf222e; --skip:#8c959f; --backoff:#bf8700; --retry_after:#d1242f;
  --rate_limit:#8250df; --poll:#0969da; --attempt:#57606a; --bg:#fff; --fg:#1f2328; --muted:#656d76; --line:#d0d7de; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
main { max-width: 1200px; margin: 0 auto; padding: 16px 24px 48px; }
h1 { font-size: 20px; margin: 8px 0 4px; } h2 { font-size: 16px; margin: 28px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
.muted { color: var(--muted); } code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12.5px; }
.badge { display: inline-block; padding: 0 8px; border-radius: 10px; color: #fff; font-size: 12px; font-weight: 600; }
.succeeded { background: var(--ok); } .failed, .interrupted { background: var(--fail); } .skipped { background: var(--skip); }
.legend span { display: inline-flex; align-items: center; gap: 4px; margin-right: 14px; font-size: 12px; }
.legend i { display: inline-block; width: 18px; height: 10px; border-radius: 2px; }
.timeline { border: 1px solid var(--line); border-radius: 6px; }
.axis { display: grid; grid-template-columns: 260px 1fr; font-size: 11px; color: var(--muted); border-bottom: 1px solid var(--line); }
.axis { padding-right: 8px; } .axis .ticks { position: relative; height: 18px; } .axis .ticks span { position: absolute; transform: translateX(-50%); white-space: nowrap; } .axis .ticks span:first-child { transform: none; } .axis .ticks span:last-child { transform: translateX(-100%); }
details.row { border-bottom: 1px solid #eaeef2; } details.row:last-child { border-bottom: 0; }
details.row > summary { display: grid; grid-template-columns: 260px 1fr; cursor: pointer; list-style: none; align-items: center; min-height: 26px; }
details.row > summary::-webkit-details-marker { display: none; }
details.row > summary:hover { background: #f6f8fa; }
.label { padding: 2px 8px; overflow: hidden; white-space: nowrap; text-overflow: ellipsis; }
.label .lane { color: var(--muted); font-size: 11px; margin-right: 6px; }
.track { position: relative; height: 22px; margin-right: 8px; }
.bar { position: absolute; top: 3px; height: 11px; border-radius: 3px; min-width: 2px; opacity: .85; }
.tick { position: absolute; top: 3px; height: 11px; min-width: 2px; background: var(--attempt); opacity: .9; }
.tick.err { background: var(--fail); }
.bar.succeeded { background: var(--ok); } .bar.failed { background: var(--fail); } .bar.skipped { background: var(--skip); }
.wait { position: absolute; top: 15px; height: 6px; border-radius: 2px; min-width: 2px; }
.wait.backoff, i.backoff { background: repeating-linear-gradient(45deg, var(--backoff), var(--backoff) 3px, #fff0 3px, #fff0 6px); border: 1px solid var(--backoff); }
.wait.retry_after, i.retry_after { background: repeating-linear-gradient(-45deg, var(--retry_after), var(--retry_after) 3px, #fff0 3px, #fff0 6px); border: 1px solid var(--retry_after); }
.wait.rate_limit, i.rate_limit { background: var(--rate_limit); }
.wait.poll, i.poll { background: repeating-linear-gradient(90deg, var(--poll), var(--poll) 2px, #fff0 2px, #fff0 5px); border: 1px solid var(--poll); }
i.attempt { background: var(--attempt); }
.detail { padding: 6px 12px 12px 24px; background: #f6f8fa; }
.waterfall { width: 100%; border-collapse: collapse; font-size: 12px; table-layout: fixed; }
.waterfall th:nth-child(1) { width: 32%; } .waterfall th:nth-child(2) { width: 9%; } .waterfall th:nth-child(3), .waterfall th:nth-child(4), .waterfall th:nth-child(5) { width: 8%; }
.waterfall td { overflow: hidden; text-overflow: ellipsis; }
.waterfall td, .waterfall th { padding: 2px 6px; text-align: left; white-space: nowrap; }
.waterfall th { color: var(--muted); font-weight: 500; }
.waterfall td.w { width: 45%; position: relative; }
.waterfall .seg { position: absolute; top: 4px; height: 10px; border-radius: 2px; min-width: 2px; }
.waterfall .seg.attempt { background: var(--attempt); } .waterfall .seg.err { background: var(--fail); }
.iter { margin: 6px 0 2px; font-weight: 600; font-size: 12px; }
table.plain { border-collapse: collapse; width: 100%; font-size: 13px; }
table.plain td, table.plain th { border-bottom: 1px solid #eaeef2; padding: 4px 8px; text-align: left; vertical-align: top; }
.failure { border-left: 4px solid var(--fail); background: #ffebe9; padding: 8px 12px; margin: 8px 0; border-radius: 0 6px 6px 0; }
.failure pre { white-space: pre-wrap; margin: 4px 0 0; }
svg .node rect { stroke: #fff; stroke-width: 1; rx: 6; } svg .node text { fill: #fff; font-size: 12px; font-family: system-ui, sans-serif; }
svg .edge { stroke: #8c959f; fill: none; stroke-width: 1.2; }
#script-error { background: var(--fail); color: #fff; padding: 8px 12px; }
"##;

const SCRIPT: &str = r##"
"use strict";
window.onerror = function (message, source, line) {
  var e = document.getElementById("script-error") || document.createElement("div");
  e.id = "script-error";
  e.textContent = "script error: " + message + " (line " + line + ")";
  document.body.insertBefore(e, document.body.firstChild);
};
(function () {
  var data = JSON.parse(document.getElementById("run-data").textContent);
  var root = document.getElementById("report");
  var CAUSES = { backoff: "retry back-off", retry_after: "Retry-After", rate_limit: "rate-limit pacer", poll: "poll interval" };
  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    if (attrs) for (var k in attrs) {
      if (k === "text") e.textContent = attrs[k]; else if (k === "style") e.setAttribute("style", attrs[k]); else e.setAttribute(k, attrs[k]);
    }
    (children || []).forEach(function (c) { if (c) e.appendChild(c); });
    return e;
  }
  function secs(ms) { return ms == null ? "" : ms < 1000 ? ms + " ms" : (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s"; }
  function bytes(n) {
    if (n == null) return "";
    var u = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + " " + u[i];
  }
  var total = Math.max(data.duration_ms, 1);
  data.steps.forEach(function (s) {
    if (s.start_ms != null) total = Math.max(total, s.start_ms + s.duration_ms);
    s.waits.forEach(function (w) { total = Math.max(total, w.start_ms + w.duration_ms); });
  });
  function pct(ms) { return (100 * ms / total).toFixed(3) + "%"; }
  function at(start, dur) { return "left:" + pct(start) + ";width:" + pct(Math.max(dur, 0)); }

  // Header.
  var c = data.counts;
  root.appendChild(el("h1", null, [document.createTextNode("Pipeline " + data.pipeline + " "),
    el("span", { "class": "badge " + data.status, text: data.status, id: "run-status" })]));
  root.appendChild(el("div", { "class": "muted", text: data.file + " · started " + data.started_at + " · " + secs(data.duration_ms) +
    " · " + c.succeeded + " succeeded, " + c.failed + " failed, " + c.skipped + " skipped · " + data.lanes + " lane" + (data.lanes === 1 ? "" : "s") }));

  // Timeline.
  root.appendChild(el("h2", { text: "Timeline" }));
  var legend = el("div", { "class": "legend" }, [el("span", null, [el("i", { "class": "attempt" }), document.createTextNode("HTTP attempt")])]);
  Object.keys(CAUSES).forEach(function (k) { legend.appendChild(el("span", null, [el("i", { "class": k }), document.createTextNode(CAUSES[k])])); });
  root.appendChild(legend);
  var tl = el("div", { "class": "timeline", id: "timeline" });
  var ticks = el("div", { "class": "ticks" });
  for (var t = 0; t <= 4; t++) ticks.appendChild(el("span", { style: "left:" + (t * 25) + "%", text: secs(Math.round(total * t / 4)) }));
  tl.appendChild(el("div", { "class": "axis" }, [el("div", { "class": "label", text: "step" }), ticks]));
  // `#open=a,b` (or `#open=all`) opens those steps' waterfalls.
  var hash = /^#open=(.*)$/.exec(location.hash), open = hash ? (hash[1] === "all" ? "all" : decodeURIComponent(hash[1]).split(",")) : [];
  var rows = data.steps.slice().sort(function (a, b) {
    var la = a.lane == null ? 1e9 : a.lane, lb = b.lane == null ? 1e9 : b.lane;
    return la - lb || (a.start_ms || 0) - (b.start_ms || 0);
  });
  rows.forEach(function (s) {
    var track = el("div", { "class": "track" });
    if (s.start_ms != null) track.appendChild(el("div", { "class": "bar " + s.status, style: at(s.start_ms, s.duration_ms), title: s.id + ": " + secs(s.duration_ms) }));
    s.attempts.forEach(function (a) {
      track.appendChild(el("div", { "class": "tick" + (a.error || a.status >= 400 ? " err" : ""), style: at(a.start_ms, a.duration_ms), title: a.method + " " + a.path + " → " + (a.status != null ? a.status : a.error) }));
    });
    s.waits.forEach(function (w) {
      track.appendChild(el("div", { "class": "wait " + w.cause, "data-cause": w.cause, style: at(w.start_ms, w.duration_ms), title: CAUSES[w.cause] + ": " + secs(w.duration_ms) }));
    });
    var label = el("div", { "class": "label" }, [
      el("span", { "class": "lane", text: s.lane == null ? "—" : "L" + (s.lane + 1) }),
      el("span", { "class": "badge " + s.status, text: s.status[0].toUpperCase() }), document.createTextNode(" " + s.id + " "),
      el("span", { "class": "muted", text: s.action + (s.start_ms != null ? " · " + secs(s.duration_ms) : "") })]);
    var row = el("details", { "class": "row", "data-step": s.id, "data-status": s.status }, [el("summary", null, [label, track]), detail(s)]);
    if (open === "all" || open.indexOf(s.id) >= 0) row.setAttribute("open", "");
    tl.appendChild(row);
  });
  root.appendChild(tl);

  // One step's waterfall: its attempts and waits, grouped by iteration.
  function detail(s) {
    var d = el("div", { "class": "detail" });
    if (s.reason) d.appendChild(el("div", { "class": "muted", text: "skipped: " + s.reason }));
    if (s.error) d.appendChild(el("div", { "class": "failure" }, [el("pre", { "class": "mono", text: s.error })]));
    var items = s.attempts.map(function (a) { return { kind: "attempt", at: a.start_ms, v: a }; })
      .concat(s.waits.map(function (w) { return { kind: "wait", at: w.start_ms, v: w }; }))
      .sort(function (a, b) { return a.at - b.at; });
    if (!items.length) { d.appendChild(el("div", { "class": "muted", text: "no HTTP requests" })); return d; }
    var t0 = s.start_ms == null ? items[0].at : s.start_ms;
    var span = Math.max(s.duration_ms, 1);
    items.forEach(function (i) { span = Math.max(span, i.at - t0 + (i.v.duration_ms || 0)); });
    var groups = {}, order = [];
    items.forEach(function (i) {
      var k = i.v.iteration == null ? "" : String(i.v.iteration);
      if (!(k in groups)) { groups[k] = []; order.push(k); }
      groups[k].push(i);
    });
    order.sort(function (a, b) { return (a === "" ? -1 : +a) - (b === "" ? -1 : +b); });
    order.forEach(function (k) {
      if (k !== "") {
        var it = (s.iterations || []).filter(function (x) { return String(x.index) === k; })[0];
        d.appendChild(el("div", { "class": "iter", text: "iteration " + k + (it ? " · " + it.status + " · " + secs(it.duration_ms) : "") }));
      }
      var table = el("table", { "class": "waterfall" }, [el("tr", null, ["request", "status", "duration", "sent", "received", ""].map(function (h) { return el("th", { text: h }); }))]);
      groups[k].forEach(function (i) {
        var v = i.v, left = 100 * (i.at - t0) / span, width = 100 * (v.duration_ms || 0) / span;
        var seg = el("div", { "class": i.kind === "wait" ? "seg wait " + v.cause : "seg attempt" + (v.error || (v.status >= 400) ? " err" : ""), style: "left:" + left.toFixed(2) + "%;width:" + width.toFixed(2) + "%" });
        var row = i.kind === "wait"
          ? el("tr", { "class": "wait-row", "data-cause": v.cause }, [el("td", { "class": "muted", text: "wait: " + CAUSES[v.cause] }), el("td"), el("td", { text: secs(v.duration_ms) }), el("td"), el("td"), el("td", { "class": "w" }, [seg])])
          : el("tr", { "class": "attempt-row" }, [el("td", { "class": "mono", text: v.method + " " + v.path + (v.attempt > 1 ? " (attempt " + v.attempt + ")" : "") }),
              el("td", { text: v.status != null ? String(v.status) : (v.error || "failed") }), el("td", { text: secs(v.duration_ms) }),
              el("td", { text: bytes(v.bytes_sent) }), el("td", { text: bytes(v.bytes_received) }), el("td", { "class": "w" }, [seg])]);
        table.appendChild(row);
      });
      d.appendChild(table);
    });
    return d;
  }

  // Waits by cause.
  var sums = {};
  data.steps.forEach(function (s) { s.waits.forEach(function (w) { sums[w.cause] = (sums[w.cause] || { n: 0, ms: 0 }); sums[w.cause].n++; sums[w.cause].ms += w.duration_ms; }); });
  root.appendChild(el("h2", { text: "Waits" }));
  if (!Object.keys(sums).length) root.appendChild(el("div", { "class": "muted", text: "no waits" }));
  else {
    var wt = el("table", { "class": "plain", id: "waits" }, [el("tr", null, [el("th", { text: "cause" }), el("th", { text: "waits" }), el("th", { text: "total" })])]);
    Object.keys(sums).forEach(function (k) { wt.appendChild(el("tr", { "data-cause": k }, [el("td", null, [el("span", { "class": "legend" }, [el("span", null, [el("i", { "class": k }), document.createTextNode(CAUSES[k])])])]), el("td", { text: String(sums[k].n) }), el("td", { text: secs(sums[k].ms) })])); });
    root.appendChild(wt);
  }

  // Transfers.
  var files = [];
  data.steps.forEach(function (s) { (s.transfers || []).forEach(function (f) { files.push([s, f]); }); });
  root.appendChild(el("h2", { text: "Transfers" }));
  if (!files.length) root.appendChild(el("div", { "class": "muted", text: "no files moved" }));
  else {
    var ft = el("table", { "class": "plain", id: "transfers" }, [el("tr", null, ["step", "file", "bytes", "throughput", "sha256"].map(function (h) { return el("th", { text: h }); }))]);
    files.forEach(function (p) {
      var f = p[1];
      ft.appendChild(el("tr", null, [el("td", { text: p[0].id + " (" + p[0].action + ")" }), el("td", { "class": "mono", text: f.path }), el("td", { text: bytes(f.bytes) }),
        el("td", { text: f.bytes_per_second == null ? "" : bytes(f.bytes_per_second) + "/s" }), el("td", { "class": "mono", text: f.sha256 || "" })]));
    });
    root.appendChild(ft);
  }

  // Failures.
  var failed = data.steps.filter(function (s) { return s.status === "failed"; });
  root.appendChild(el("h2", { text: "Failures" }));
  if (!failed.length && !data.output_errors.length) root.appendChild(el("div", { "class": "muted", text: "none" }));
  failed.forEach(function (s) {
    var last = s.attempts.filter(function (a) { return a.status == null || a.status >= 400; }).pop();
    root.appendChild(el("div", { "class": "failure", "data-step": s.id }, [
      el("strong", { text: s.id + " (" + s.action + ", " + data.file + ":" + s.line + ")" }),
      last ? el("div", { "class": "mono", text: "last failed request: " + last.method + " " + last.path + " → " + (last.status != null ? last.status : last.error) }) : null,
      el("pre", { "class": "mono", text: s.error || "failed" })]));
  });
  data.output_errors.forEach(function (e) { root.appendChild(el("div", { "class": "failure" }, [el("pre", { "class": "mono", text: e })])); });

  // Dependency graph: layers by longest path, coloured by status.
  root.appendChild(el("h2", { text: "Dependency graph" }));
  var byId = {}, depth = {};
  data.steps.forEach(function (s) { byId[s.id] = s; });
  function layer(id, seen) {
    if (depth[id] != null) return depth[id];
    if (seen[id]) return 0;
    seen[id] = true;
    var d = 0;
    (byId[id].needs || []).forEach(function (n) { if (byId[n]) d = Math.max(d, layer(n, seen) + 1); });
    return (depth[id] = d);
  }
  var layers = [];
  data.steps.forEach(function (s) { var d = layer(s.id, {}); (layers[d] = layers[d] || []).push(s); });
  // A wide layer wraps onto several rows, PER nodes each.
  var W = 170, H = 34, GX = 24, GY = 36, PER = 6, widest = 0, rowsUsed = 0;
  layers.forEach(function (l) { widest = Math.max(widest, Math.min(l.length, PER)); });
  var NS = "http://www.w3.org/2000/svg";
  var svg = document.createElementNS(NS, "svg");
  svg.setAttribute("id", "graph");
  svg.setAttribute("width", String(widest * (W + GX) + GX));
  var pos = {};
  layers.forEach(function (l) {
    l.forEach(function (s, i) { pos[s.id] = { x: GX + (i % PER) * (W + GX), y: GY / 2 + (rowsUsed + Math.floor(i / PER)) * (H + GY) }; });
    rowsUsed += Math.ceil(l.length / PER);
  });
  svg.setAttribute("height", String(rowsUsed * (H + GY) + GY));
  var colors = { succeeded: "#2da44e", failed: "#cf222e", skipped: "#8c959f" };
  data.steps.forEach(function (s) {
    (s.needs || []).forEach(function (n) {
      if (!pos[n]) return;
      var a = pos[n], b = pos[s.id], p = document.createElementNS(NS, "path");
      var x1 = a.x + W / 2, y1 = a.y + H, x2 = b.x + W / 2, y2 = b.y;
      p.setAttribute("d", "M" + x1 + "," + y1 + " C" + x1 + "," + (y1 + GY / 2) + " " + x2 + "," + (y2 - GY / 2) + " " + x2 + "," + y2);
      p.setAttribute("class", "edge");
      svg.appendChild(p);
    });
  });
  data.steps.forEach(function (s) {
    var g = document.createElementNS(NS, "g"), r = document.createElementNS(NS, "rect"), tx = document.createElementNS(NS, "text"), ti = document.createElementNS(NS, "title");
    g.setAttribute("class", "node"); g.setAttribute("data-step", s.id); g.setAttribute("data-status", s.status);
    r.setAttribute("x", pos[s.id].x); r.setAttribute("y", pos[s.id].y); r.setAttribute("width", W); r.setAttribute("height", H); r.setAttribute("fill", colors[s.status] || "#57606a");
    tx.setAttribute("x", pos[s.id].x + 8); tx.setAttribute("y", pos[s.id].y + 21);
    tx.textContent = (s.id.length > 22 ? s.id.slice(0, 21) + "…" : s.id);
    ti.textContent = s.id + " (" + s.action + "): " + s.status;
    g.appendChild(ti); g.appendChild(r); g.appendChild(tx); svg.appendChild(g);
  });
  root.appendChild(el("div", { style: "overflow:auto" }, [svg]));
  document.body.setAttribute("data-rendered", String(rows.length));
})();
"##;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_cannot_close_the_script_element() {
        let v = serde_json::json!({"error": "</script><script>alert(1)</script> & <!--"});
        let text = script_json(&v);
        assert!(!text.contains('<') && !text.contains('>'), "{text}");
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn the_page_is_masked_and_self_contained() {
        let r = Redactor::new(["avk_secret_123456".to_string()]);
        let mut data = serde_json::json!({"pipeline": "p", "status": "failed", "steps": [], "error": "key avk_secret_123456"});
        r.json(&mut data);
        let html = page(&data, &r);
        assert!(!html.contains("avk_secret_123456"));
        for external in ["src=\"http", "href=\"http", "@import", "url(http"] {
            assert!(!html.contains(external), "{external}");
        }
    }
}
