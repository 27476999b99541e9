//! Issue 16, group B: hostile servers, files and names in the HTTP and actions layers
//! (items 1, 6-9, 11-13, 16-18). Where the emulator cannot play the attacker (raw
//! redirects, header floods, bytes that are not JSON, endless cursors), a tiny loopback
//! server written here does: [`Hostile`] answers every request with what its handler
//! returns, byte for byte, and keeps each request it read.
//!
//! Every run still goes through the suite's [`command`]: the canary key must not appear,
//! and no partial file may be left behind.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

// ---------------------------------------------------------------------------------------
// A hostile loopback server
// ---------------------------------------------------------------------------------------

/// One request as the hostile server read it.
#[derive(Clone, Debug)]
struct Req {
    method: String,
    /// The request target as sent (path and query).
    target: String,
    body: Vec<u8>,
}

impl Req {
    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or(&self.target)
    }
}

type Handler = dyn Fn(&Req, u16) -> Vec<u8> + Send + Sync;

/// A loopback HTTP/1.1 server that answers each request with the handler's raw bytes and
/// closes the connection.
struct Hostile {
    port: u16,
    seen: Arc<Mutex<Vec<Req>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Hostile {
    async fn start(handler: impl Fn(&Req, u16) -> Vec<u8> + Send + Sync + 'static) -> Hostile {
        Hostile::start_slow(Duration::ZERO, handler).await
    }

    /// Waits `delay` before answering (so that concurrent requests overlap).
    async fn start_slow(
        delay: Duration,
        handler: impl Fn(&Req, u16) -> Vec<u8> + Send + Sync + 'static,
    ) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let journal = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let handler = handler.clone();
                let journal = journal.clone();
                tokio::spawn(async move {
                    let Some(req) = read_request(&mut sock).await else {
                        return;
                    };
                    journal.lock().unwrap().push(req.clone());
                    tokio::time::sleep(delay).await;
                    let answer = handler(&req, port);
                    let _ = sock.write_all(&answer).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Hostile { port, seen, task }
    }

    fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/api/v1", self.port)
    }

    fn requests(&self) -> Vec<Req> {
        self.seen.lock().unwrap().clone()
    }

    fn paths(&self) -> Vec<String> {
        self.requests()
            .iter()
            .map(|r| r.path().to_string())
            .collect()
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<Req> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let lower = head.to_ascii_lowercase();
    let length = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let chunked = lower.contains("transfer-encoding: chunked");
    loop {
        let body = &buf[head_end..];
        let done = match length {
            Some(len) => body.len() >= len,
            None if chunked => body.ends_with(b"0\r\n\r\n"),
            None => true,
        };
        if done {
            break;
        }
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let mut words = head.split_whitespace();
    Some(Req {
        method: words.next()?.to_string(),
        target: words.next()?.to_string(),
        body: buf[head_end..].to_vec(),
    })
}

/// A whole response with a body of the given type.
fn answer(status: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

fn json_answer(body: &Value) -> Vec<u8> {
    answer("200 OK", "application/json", body.to_string().as_bytes())
}

fn not_found() -> Vec<u8> {
    answer(
        "404 Not Found",
        "application/json",
        br#"{"detail": "Not found."}"#,
    )
}

/// Runs `file` against the hostile server with the suite's flags, in `cwd`, scanning `dir`.
async fn run_at(server: &Hostile, file: &Path, cwd: &Path, dir: &Path) -> Output {
    command(file, cwd, Some(&server.base_url()))
        .scan_dir(dir)
        .run_async()
        .await
}

// ---------------------------------------------------------------------------------------
// Leaks and forgery: 1, 6
// ---------------------------------------------------------------------------------------

/// 1. A redirect's `Location` with `user:password@` is followed, and the log line that
/// says so (and every other output) shows the URL without its userinfo.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_b01_userinfo_in_a_redirect_is_never_shown() {
    let server = Hostile::start(|req, port| match req.path() {
        "/api/v1/datasets/ds_1" => format!(
            "HTTP/1.1 302 Found\r\nLocation: http://hostile-user:Pa55w0rdInUrl@127.0.0.1:{port}/moved/ds_1?sig=s3cretSig\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .into_bytes(),
        "/moved/ds_1" => json_answer(&json!({"id": "ds_1"})),
        _ => not_found(),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "p.yaml",
        "version: 1\nsteps:\n  - id: get\n    action: request\n    with: { path: /datasets/ds_1 }\n",
    );
    let out = run_at(&server, &file, dir.path(), dir.path()).await;
    out.code(0);
    assert!(
        out.stderr
            .contains("following redirect to http://127.0.0.1:"),
        "{}",
        out.stderr
    );
    for secret in ["Pa55w0rdInUrl", "hostile-user", "s3cretSig"] {
        assert!(!out.stderr.contains(secret), "{secret} in\n{}", out.stderr);
        assert!(!out.stdout.contains(secret), "{secret} in\n{}", out.stdout);
        let report = std::fs::read_to_string(dir.path().join("report.json")).unwrap();
        assert!(!report.contains(secret), "{secret} in the report");
    }
    assert_eq!(server.paths(), ["/api/v1/datasets/ds_1", "/moved/ds_1"]);
}

/// 6. A file whose name holds CR LF (and a quote) is uploaded with those characters
/// percent-encoded in the part's `filename`: no line of the part's head starts with
/// the injected header.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_b06_crlf_in_a_multipart_file_name_cannot_inject_a_header() {
    let server = Hostile::start(|req, _| match (req.method.as_str(), req.path()) {
        ("POST", "/api/v1/datasets/ds_1/items") => {
            answer("201 Created", "application/json", br#"{"id": "it_1"}"#)
        }
        _ => not_found(),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("up")).unwrap();
    std::fs::write(
        dir.path().join("up").join("crlf\r\nX-Injected: 1\".txt"),
        "x",
    )
    .unwrap();
    std::fs::write(dir.path().join("up").join("lf\nX-Injected: 2.txt"), "y").unwrap();
    let file = write(
        dir.path(),
        "p.yaml",
        "version: 1\nsteps:\n  - id: up\n    action: items.upload\n    with: { dataset: ds_1, files: \"up/*.txt\", concurrency: 1 }\n",
    );
    let out = run_at(&server, &file, dir.path(), dir.path()).await;
    out.code(0);
    let posts = server.requests();
    assert_eq!(posts.len(), 2, "{posts:?}");
    let bodies: Vec<String> = posts
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    for body in &bodies {
        // A parser that ends header lines at LF (or CRLF) must not see a header of ours.
        assert!(
            !body.contains("\nX-Injected"),
            "a header was injected:\n{body}"
        );
    }
    let all = bodies.join("\n");
    assert!(
        all.contains(r#"filename="crlf%0D%0AX-Injected: 1%22.txt""#),
        "{all}"
    );
    assert!(
        all.contains(r#"filename="lf%0AX-Injected: 2.txt""#),
        "{all}"
    );
}

// ---------------------------------------------------------------------------------------
// File placement: 7, 8, 9, 18
// ---------------------------------------------------------------------------------------

/// A server whose list holds hostile keys, and which serves any `/files/...` path.
async fn key_server(keys: Vec<String>) -> Hostile {
    Hostile::start(move |req, _| {
        let path = req.path();
        let path = path.strip_prefix("/api/v1").unwrap_or(path);
        if path == "/datasets" {
            let items: Vec<Value> = keys.iter().map(|k| json!({"id": k, "key": k})).collect();
            json_answer(&json!({"items": items, "has_more": false}))
        } else if let Some(name) = path.strip_prefix("/files/") {
            answer(
                "200 OK",
                "application/octet-stream",
                format!("data of {name}").as_bytes(),
            )
        } else {
            not_found()
        }
    })
    .await
}

/// 7. `to: out/{{ item.key }}` with a server key `../../escaped.txt` is refused instead
/// of written outside `out/`; so is an absolute path that is all server data, and a
/// `save_to` that climbs out. A path built from `vars` is the user's own and may go
/// anywhere, and a plain key lands under `out/`.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_b07_server_data_cannot_place_a_file_outside_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let absolute = dir.path().join("absolute.txt");
    let server = key_server(vec![
        "fine.txt".into(),
        "../../escaped.txt".into(),
        absolute.display().to_string(),
    ])
    .await;
    let file = write(
        &work,
        "p.yaml",
        "version: 1\nvars: { shared: ../shared }\nsteps:\n  - id: list\n    action: datasets.list\n  - id: plain\n    action: download\n    with: { url: /files/b, to: \"out/{{ steps.list.outputs.items[0].key }}\" }\n  - id: climb\n    action: download\n    continue_on_error: true\n    with: { url: /files/a, to: \"out/{{ steps.list.outputs.items[1].key }}\" }\n  - id: each\n    action: download\n    continue_on_error: true\n    for_each: \"{{ steps.list.outputs.items }}\"\n    with: { url: /files/e, to: \"each/{{ item.key }}\" }\n  - id: absolute\n    action: download\n    continue_on_error: true\n    with: { url: /files/c, to: \"{{ steps.list.outputs.items[2].key }}\" }\n  - id: saved\n    action: datasets.list\n    continue_on_error: true\n    needs: [list]\n    with: { save_to: \"lists/{{ steps.list.outputs.items[1].key }}\" }\n  - id: mine\n    action: download\n    with: { url: /files/d, to: \"{{ vars.shared }}/mine.txt\" }\n",
    );
    let out = run_at(&server, &file, &work, dir.path()).await;
    out.code(0);
    let climb = out.error("climb");
    assert!(climb.contains("climbs out of `out/` with `..`"), "{climb}");
    assert!(
        out.error("absolute")
            .contains("the templated path is absolute"),
        "{}",
        out.error("absolute")
    );
    assert!(
        out.error("saved").contains("climbs out of `lists/`"),
        "{}",
        out.error("saved")
    );
    assert_eq!(
        out.step("each")["status"],
        "failed",
        "{:#}",
        out.step("each")
    );
    for escaped in [
        dir.path().join("escaped.txt"),
        work.join("escaped.txt"),
        absolute.clone(),
        dir.path().join("escaped.txt").with_extension("jsonl"),
    ] {
        assert!(!escaped.exists(), "{} was written", escaped.display());
    }
    assert!(!dir.path().join("lists").exists() && !work.join("lists").exists());
    assert_eq!(
        std::fs::read_to_string(work.join("out/fine.txt")).unwrap(),
        "data of b"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("shared/mine.txt")).unwrap(),
        "data of d"
    );
    // The refused downloads were never requested.
    let paths = server.paths();
    assert!(paths.contains(&"/api/v1/files/b".to_string()), "{paths:?}");
    assert!(!paths.contains(&"/api/v1/files/a".to_string()), "{paths:?}");
    assert!(!paths.contains(&"/api/v1/files/c".to_string()), "{paths:?}");
}

/// 7, the class: the same policy keeps a server from naming a local file to upload:
/// `files` (a whole list from a step's output, or one element) and `request`'s
/// `multipart.files` built from server data may not climb out or be absolute, so
/// nothing outside the working folder is read and sent; a plain name under a literal
/// folder is uploaded.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_b07_server_data_cannot_name_a_local_file_to_upload() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(work.join("up")).unwrap();
    std::fs::write(work.join("up/ok.txt"), "fine").unwrap();
    let secret = dir.path().join("private.key");
    std::fs::write(&secret, "PRIVATE-KEY-MATERIAL").unwrap();
    let secret_text = secret.display().to_string();
    let server = Hostile::start(move |req, _| match (req.method.as_str(), req.path()) {
        ("GET", "/api/v1/meta") => json_answer(&json!({
            "climb": ["../private.key"],
            "absolute": [secret_text.clone()],
            "one": secret_text.clone(),
            "name": "ok.txt",
        })),
        ("POST", _) => answer("201 Created", "application/json", br#"{"id": "it_1"}"#),
        _ => not_found(),
    })
    .await;
    let file = write(
        &work,
        "p.yaml",
        "version: 1\nsteps:\n  - id: meta\n    action: request\n    with: { path: /meta }\n  - id: climb\n    action: items.upload\n    continue_on_error: true\n    with: { dataset: ds_1, files: \"{{ steps.meta.outputs.body.climb }}\" }\n  - id: absolute\n    action: items.upload\n    continue_on_error: true\n    with: { dataset: ds_1, files: [\"{{ steps.meta.outputs.body.absolute[0] }}\"] }\n  - id: multipart\n    action: request\n    continue_on_error: true\n    with: { method: POST, path: /datasets/ds_1/items, multipart: { files: { file: \"{{ steps.meta.outputs.body.one }}\" } } }\n  - id: named\n    action: items.upload\n    with: { dataset: ds_1, files: [\"up/{{ steps.meta.outputs.body.name }}\"] }\n",
    );
    let out = run_at(&server, &file, &work, dir.path()).await;
    out.code(0);
    assert!(
        out.error("climb")
            .contains("climbs out of the working directory with `..`"),
        "{}",
        out.error("climb")
    );
    assert!(
        out.error("absolute")
            .contains("the templated path is absolute"),
        "{}",
        out.error("absolute")
    );
    assert!(
        out.error("multipart")
            .contains("input `multipart.files` renders to"),
        "{}",
        out.error("multipart")
    );
    let posts: Vec<Req> = server
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    assert_eq!(posts.len(), 1, "only up/ok.txt was sent");
    for post in &posts {
        let body = String::from_utf8_lossy(&post.body);
        assert!(!body.contains("PRIVATE-KEY-MATERIAL"), "{body}");
        assert!(body.contains("fine"), "{body}");
    }
}

/// 8. A destination that is a FIFO or a directory is refused and left as it was; one that
/// is a symlink is written through: the link stays a link and its target gets the file.
/// (A device node such as `/dev/null` takes the same path as the FIFO; it is not tried
/// here, since the suite may run as root and a regression would replace the machine's.)
#[tokio::test(flavor = "multi_thread")]
async fn hostile_b08_special_files_are_never_replaced() {
    let server = key_server(vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    std::fs::create_dir_all(out_dir.join("a_dir")).unwrap();
    std::fs::create_dir_all(dir.path().join("real")).unwrap();
    std::fs::write(dir.path().join("real/target.bin"), "old").unwrap();
    std::os::unix::fs::symlink("../real/target.bin", out_dir.join("link.bin")).unwrap();
    std::os::unix::fs::symlink("../real/missing.bin", out_dir.join("dangling.bin")).unwrap();
    let fifo = out_dir.join("pipe");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let file = write(
        dir.path(),
        "p.yaml",
        "version: 1\nsteps:\n  - id: fifo\n    action: download\n    continue_on_error: true\n    with: { url: /files/f, to: out/pipe }\n  - id: folder\n    action: download\n    continue_on_error: true\n    with: { url: /files/d, to: out/a_dir }\n  - id: dangling\n    action: download\n    continue_on_error: true\n    with: { url: /files/x, to: out/dangling.bin }\n  - id: link\n    action: download\n    with: { url: /files/l, to: out/link.bin }\n  - id: list_link\n    action: datasets.list\n    needs: [link]\n    with: { save_to: out/link.bin }\n",
    );
    let out = run_at(&server, &file, dir.path(), dir.path()).await;
    out.code(0);
    let fifo_error = out.error("fifo");
    assert!(
        fifo_error.contains("is a FIFO (named pipe), not a regular file: refusing to replace it"),
        "{fifo_error}"
    );
    assert!(out.error("folder").contains("is a directory"));
    assert!(
        out.error("dangling").contains("which does not exist"),
        "{}",
        out.error("dangling")
    );
    use std::os::unix::fs::FileTypeExt as _;
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());
    assert!(out_dir.join("a_dir").is_dir());
    assert!(!dir.path().join("real/missing.bin").exists());
    let link = std::fs::symlink_metadata(out_dir.join("link.bin")).unwrap();
    assert!(link.file_type().is_symlink(), "the link was replaced");
    // The list (empty) went through the link last.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("real/target.bin")).unwrap(),
        ""
    );
    assert_eq!(out.step("link")["outputs"]["path"], "out/link.bin");
    assert_eq!(
        server
            .paths()
            .iter()
            .filter(|p| p.starts_with("/api/v1/files/"))
            .count(),
        1,
        "only the link's download was sent: {:?}",
        server.paths()
    );
}

/// 9. Four concurrent steps download to one file with `overwrite: false`: all four pass
/// the early check (the server answers slowly), and exactly one puts its file in place;
/// the other three fail saying the file appeared meanwhile. (Iterations of one step take
/// the same path; the report keeps only a step's first failure, so steps show it.)
#[tokio::test(flavor = "multi_thread")]
async fn hostile_b09_no_clobber_downloads_race_to_exactly_one_winner() {
    let server = Hostile::start_slow(Duration::from_millis(400), |req, _| {
        match req.path().strip_prefix("/api/v1/files/") {
            Some(name) => answer("200 OK", "application/octet-stream", name.as_bytes()),
            None => not_found(),
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut yaml = String::from("version: 1\nconcurrency: 4\nsteps:\n");
    for w in ["w1", "w2", "w3", "w4"] {
        yaml.push_str(&format!("  - id: {w}\n    action: download\n    continue_on_error: true\n    with: {{ url: /files/{w}, to: out/one.bin, overwrite: false }}\n"));
    }
    let file = write(dir.path(), "p.yaml", &yaml);
    let out = run_at(&server, &file, dir.path(), dir.path()).await;
    out.code(0);
    assert_eq!(server.paths().len(), 4, "all four passed the early check");
    let steps = out.json()["steps"].clone();
    let steps = steps.as_array().unwrap();
    let won = steps.iter().filter(|s| s["status"] == "succeeded").count();
    let lost = steps
        .iter()
        .filter(|s| {
            s["error"]
                .as_str()
                .is_some_and(|e| e.contains("it appeared during the download"))
        })
        .count();
    assert_eq!((won, lost), (1, 3), "{steps:#?}");
    let winner = std::fs::read_to_string(dir.path().join("out/one.bin")).unwrap();
    assert!(
        ["w1", "w2", "w3", "w4"].contains(&winner.as_str()),
        "{winner}"
    );
    println!("FIGURES hostile_b09 winners={won} losers={lost}");
}

/// 18. A glob over a folder whose only file has a name that is not UTF-8 uploads it (the
/// bytes that are not UTF-8 percent-encoded in the part's file name), instead of saying
/// "matched no file".
#[tokio::test(flavor = "multi_thread")]
async fn hostile_b18_a_file_name_that_is_not_utf8_is_uploaded() {
    use std::os::unix::ffi::OsStrExt as _;
    let server = Hostile::start(|req, _| match (req.method.as_str(), req.path()) {
        ("POST", "/api/v1/datasets/ds_1/items") => {
            answer("201 Created", "application/json", br#"{"id": "it_1"}"#)
        }
        _ => not_found(),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let up = dir.path().join("up");
    std::fs::create_dir(&up).unwrap();
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9.bin");
    std::fs::write(up.join(name), "latin-1 name").unwrap();
    let file = write(
        dir.path(),
        "p.yaml",
        "version: 1\nsteps:\n  - id: up\n    action: items.upload\n    with: { dataset: ds_1, files: \"up/*.bin\" }\n",
    );
    let out = run_at(&server, &file, dir.path(), dir.path()).await;
    out.code(0);
    assert_eq!(out.step("up")["outputs"]["count"], 1, "{}", out.stdout);
    let posts = server.requests();
    assert_eq!(posts.len(), 1);
    let body = String::from_utf8_lossy(&posts[0].body);
    assert!(body.contains(r#"filename="caf%E9.bin""#), "{body}");
    assert!(body.contains("latin-1 name"));
}

// ---------------------------------------------------------------------------------------
// Exhaustion: 11
// ---------------------------------------------------------------------------------------

/// 11. A server that sends a fresh 60 KiB cursor on every page, forever, is stopped on the
/// first such cursor; one that pages through nothing with fresh short cursors is stopped
/// after a bounded number of empty pages. Both say why.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_b11_endless_fresh_cursors_are_stopped_in_bounded_memory() {
    let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let n = counter.clone();
    let server = Hostile::start(move |req, _| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let cursor = match req.path() {
            "/api/v1/datasets/huge/items" => format!("{i:08}{}", "c".repeat(60 * 1024)),
            "/api/v1/datasets/empty/items" => format!("c{i}"),
            _ => return not_found(),
        };
        json_answer(&json!({"items": [], "has_more": true, "cursor": cursor}))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "p.yaml",
        "version: 1\nsteps:\n  - id: huge\n    action: items.list\n    continue_on_error: true\n    with: { dataset: huge }\n  - id: empty\n    action: items.list\n    continue_on_error: true\n    with: { dataset: empty }\n",
    );
    let out = run_at(&server, &file, dir.path(), dir.path()).await;
    out.code(0);
    let huge = out.error("huge");
    assert!(
        huge.contains(
            "a next cursor of 61448 bytes on page 1, more than the 8192 this client follows"
        ),
        "{huge}"
    );
    let empty = out.error("empty");
    assert!(
        empty.contains("1000 pages in a row without an item"),
        "{empty}"
    );
    let pages = |p: &str| server.paths().iter().filter(|x| x.contains(p)).count();
    assert_eq!(pages("/huge/"), 1);
    assert_eq!(pages("/empty/"), 1000);
    println!(
        "FIGURES hostile_b11 pages_huge={} pages_empty={} elapsed_ms={}",
        pages("/huge/"),
        pages("/empty/"),
        out.elapsed.as_millis()
    );
}

// ---------------------------------------------------------------------------------------
// Messages: 12, 13, 16, 17
// ---------------------------------------------------------------------------------------

/// 12. A 1 MiB response header, or 20,000 headers: the error says the server sent
/// oversized headers, not only hyper's "message head is too large".
#[tokio::test(flavor = "multi_thread")]
async fn hostile_b12_oversized_response_headers_are_named() {
    let server = Hostile::start(|req, _| {
        let mut head = String::from("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n");
        match req.path() {
            "/api/v1/projects/long" => {
                head.push_str(&format!("X-Long: {}\r\n", "a".repeat(1 << 20)));
            }
            "/api/v1/projects/many" => {
                for i in 0..20_000 {
                    head.push_str(&format!("X-H{i}: v\r\n"));
                }
            }
            _ => return not_found(),
        }
        head.push_str("Content-Length: 2\r\nConnection: close\r\n\r\n{}");
        head.into_bytes()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "p.yaml",
        &format!("version: 1\n{FAST_RETRY}steps:\n  - id: long\n    action: projects.get\n    continue_on_error: true\n    with: {{ project: long }}\n  - id: many\n    action: projects.get\n    continue_on_error: true\n    with: {{ project: many }}\n"),
    );
    let out = run_at(&server, &file, dir.path(), dir.path()).await;
    out.code(0);
    for id in ["long", "many"] {
        let error = out.error(id);
        assert!(
            error.contains("the server sent oversized response headers"),
            "{id}: {error}"
        );
    }
}

/// 13. A page that is not valid UTF-8, not JSON, or nested 100,000 levels deep fails
/// saying what was wrong and where, instead of "expected a JSON object, got a string".
#[tokio::test(flavor = "multi_thread")]
async fn hostile_b13_a_page_that_is_not_json_says_what_and_where() {
    let server = Hostile::start(|req, _| match req.path() {
        "/api/v1/datasets/utf8/items" => answer(
            "200 OK",
            "application/json",
            b"{\"items\": [\"caf\xe9\"], \"has_more\": false}",
        ),
        // Its cursor is read (and the next page asked for) before its items fail to parse.
        "/api/v1/datasets/utf8more/items" => answer(
            "200 OK",
            "application/json",
            b"{\"items\": [\"caf\xe9\"], \"has_more\": true, \"cursor\": \"c2\"}",
        ),
        "/api/v1/datasets/html/items" => answer("200 OK", "text/html", b"<html>maintenance</html>"),
        "/api/v1/datasets/deep/items" => {
            let mut body = "[".repeat(100_000);
            body.push_str(&"]".repeat(100_000));
            answer("200 OK", "application/json", body.as_bytes())
        }
        "/api/v1/datasets/syntax/items" => {
            answer("200 OK", "application/json", b"{\"items\": [1,\n 2,,3]}")
        }
        _ => not_found(),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut yaml = String::from("version: 1\nsteps:\n");
    for id in ["utf8", "utf8more", "html", "deep", "syntax"] {
        yaml.push_str(&format!(
            "  - id: {id}\n    action: items.list\n    continue_on_error: true\n    with: {{ dataset: {id} }}\n"
        ));
    }
    let file = write(dir.path(), "p.yaml", &yaml);
    let out = run_at(&server, &file, dir.path(), dir.path()).await;
    out.code(0);
    let expect = [
        (
            "utf8",
            "not valid UTF-8 (the first invalid byte is at offset 15 of",
        ),
        (
            "utf8more",
            "not valid UTF-8 (the first invalid byte is at offset 15 of",
        ),
        (
            "html",
            "expected value at byte 0 of 24 (starting `<html>maintenance</html>`)",
        ),
        ("deep", "more than 128 levels deep (at byte 127 of 200000)"),
        ("syntax", "expected value at byte 17 of 21"),
    ];
    for (id, want) in expect {
        let error = out.error(id);
        assert!(error.contains("the response is not JSON"), "{id}: {error}");
        assert!(error.contains(want), "{id}: {error}");
        assert!(!error.contains("got a string"), "{id}: {error}");
    }
    // The page asked for ahead is dropped unread: at most one request more than needed.
    let more = server
        .paths()
        .iter()
        .filter(|p| p.contains("/utf8more/"))
        .count();
    assert!((1..=2).contains(&more), "{more} requests for utf8more");
}

/// 13b. A list's items are kept as the server wrote them until read (issue 14): what only
/// a full parse refuses still fails the step; `uid`s still gain an `id` (in the report,
/// in `save_to`, in templates); an item that writes the key with escapes or spreads over
/// lines is written anew, so the journal masks it and stays a line per record.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_b13b_items_kept_as_text_are_checked_normalised_and_masked() {
    let first = CANARY.chars().next().unwrap();
    let escaped = format!("\\u{:04x}{}", first as u32, &CANARY[first.len_utf8()..]);
    let server = Hostile::start(move |req, _| {
        let body = match req.path() {
            "/api/v1/datasets/mixed/items" => format!(
                "{{\"items\": [{{\"uid\": \"u1\", \"nested\": {{\"uid\": \"u2\"}}}},\n {{\"id\":\n \"d2\", \"n\": [1, 2.5]}}, {{\"id\": \"d3\", \"note\": \"{escaped}\"}}], \"has_more\": false}}"
            ),
            "/api/v1/datasets/uids/items" => {
                r#"{"results": [{"uid": "a"}, {"uid": "b", "id": "keep"}], "next": null}"#.into()
            }
            "/api/v1/datasets/huge/items" => r#"{"items": [{"n": 1e400}], "has_more": false}"#.into(),
            "/api/v1/datasets/lone/items" => {
                r#"{"items": [{"s": "\ud800"}], "has_more": false}"#.into()
            }
            p if p.starts_with("/api/v1/echo/") => r#"{"ok": true}"#.into(),
            _ => return not_found(),
        };
        answer("200 OK", "application/json", body.as_bytes())
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "p.yaml",
        "version: 1\nsteps:\n\
         \x20 - id: mixed\n    action: items.list\n    with: { dataset: mixed }\n\
         \x20 - id: uids\n    action: items.list\n    with: { dataset: uids, save_to: uids.jsonl }\n\
         \x20 - id: huge\n    action: items.list\n    continue_on_error: true\n    with: { dataset: huge }\n\
         \x20 - id: lone\n    action: items.list\n    continue_on_error: true\n    with: { dataset: lone }\n\
         \x20 - id: use\n    action: request\n    with:\n      path: \"/echo/{{ steps.mixed.outputs.items[0].id }}-{{ steps.mixed.outputs.items[0].nested.id }}-{{ steps.mixed.outputs.items[1].n[1] }}-{{ steps.mixed.outputs.items | length }}\"\n",
    );
    let out = run_at(&server, &file, dir.path(), dir.path()).await;
    out.code(0);
    assert!(
        out.error("huge").contains("number out of range"),
        "{}",
        out.error("huge")
    );
    assert!(
        out.error("lone").contains("hex escape"),
        "{}",
        out.error("lone")
    );
    // Templates read the items parsed, ids added.
    assert!(
        server
            .paths()
            .contains(&"/api/v1/echo/u1-u2-2.5-3".to_string()),
        "{:?}",
        server.paths()
    );
    // The report: every item parsed, ids added, the key masked.
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap())
            .unwrap();
    let items = &crate::support::step(&report, "mixed")["outputs"]["items"];
    assert_eq!(
        items[0],
        json!({"uid": "u1", "nested": {"uid": "u2", "id": "u2"}, "id": "u1"})
    );
    assert_eq!(items[1], json!({"id": "d2", "n": [1, 2.5]}));
    assert!(
        !items[2]["note"].as_str().unwrap().contains(CANARY),
        "{items}"
    );
    // save_to: a line per item, ids added.
    let saved: Vec<Value> = std::fs::read_to_string(dir.path().join("uids.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        saved,
        vec![
            json!({"uid": "a", "id": "a"}),
            json!({"uid": "b", "id": "keep"})
        ]
    );
    // The journal: a record per line, every line JSON, the key nowhere even once decoded.
    let journal = std::fs::read_to_string(dir.path().join(".avala-pipe/p.journal.jsonl")).unwrap();
    let mut outputs_seen = 0;
    for line in journal.lines() {
        let record: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(!record.to_string().contains(CANARY), "{line}");
        let finished = &record["finished"];
        if finished["step"] == "mixed" && finished["outputs"].is_object() {
            outputs_seen += 1;
            assert_eq!(finished["outputs"]["items"][0]["id"], "u1", "{line}");
        }
    }
    assert_eq!(outputs_seen, 1, "{journal}");
}

/// 13c. The next page is asked for from a page's last bytes before the page is read: a
/// page whose end points elsewhere than the whole page does (fields before its list) is
/// followed where the whole page says, and a plain list asks for each page once.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_b13c_the_next_page_guessed_from_the_tail_is_checked() {
    let server = Hostile::start(|req, _| {
        let cursor = req.target.split("cursor=").nth(1).unwrap_or("");
        let body = match (req.path(), cursor) {
            ("/api/v1/datasets/odd/items", "") => {
                r#"{"has_more": true, "cursor": "A", "items": [1], "next": "http://127.0.0.1:9/x?cursor=B"}"#
            }
            ("/api/v1/datasets/odd/items", "A") => r#"{"items": [2], "has_more": false}"#,
            ("/api/v1/datasets/odd/items", "B") => r#"{"items": [99], "has_more": false}"#,
            ("/api/v1/datasets/plain/items", "") => r#"{"items": [1], "has_more": true, "cursor": "p2"}"#,
            ("/api/v1/datasets/plain/items", "p2") => r#"{"items": [2], "has_more": true, "cursor": "p3"}"#,
            ("/api/v1/datasets/plain/items", "p3") => r#"{"items": [3], "has_more": false}"#,
            _ => return not_found(),
        };
        answer("200 OK", "application/json", body.as_bytes())
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "p.yaml",
        "version: 1\nsteps:\n  - id: odd\n    action: items.list\n    with: { dataset: odd }\n  - id: plain\n    action: items.list\n    with: { dataset: plain }\n",
    );
    let out = run_at(&server, &file, dir.path(), dir.path()).await;
    out.code(0);
    assert_eq!(out.step("odd")["outputs"]["items"], json!([1, 2]));
    assert_eq!(out.step("plain")["outputs"]["items"], json!([1, 2, 3]));
    let targets: Vec<String> = server.requests().iter().map(|r| r.target.clone()).collect();
    let count = |needle: &str| targets.iter().filter(|t| t.contains(needle)).count();
    assert_eq!(count("odd/items?limit=100&cursor=A"), 1, "{targets:?}");
    assert!(count("odd/items?limit=100&cursor=B") <= 1, "{targets:?}");
    assert_eq!(count("/plain/items"), 3, "{targets:?}");
    assert_eq!(count("cursor=p2"), 1, "{targets:?}");
    assert_eq!(count("cursor=p3"), 1, "{targets:?}");
}

/// 16. An export that flips between `completed` without a download URL and `processing`
/// times out saying so; one that stays completed without a URL says it has none yet.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_b16_completed_without_a_download_url_is_said_so() {
    let polls = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let n = polls.clone();
    let server = Hostile::start(move |req, _| match req.path() {
        "/api/v1/exports/flip" => {
            let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let status = if i % 2 == 0 {
                "completed"
            } else {
                "processing"
            };
            json_answer(&json!({"id": "flip", "status": status, "download_url": null}))
        }
        "/api/v1/exports/nourl" => {
            json_answer(&json!({"id": "nourl", "status": "completed", "download_url": ""}))
        }
        _ => not_found(),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "p.yaml",
        "version: 1\nsteps:\n  - id: flip\n    action: exports.wait\n    continue_on_error: true\n    with: { export: flip, interval: 20ms, max_interval: 20ms, timeout: 300ms }\n  - id: nourl\n    action: exports.wait\n    continue_on_error: true\n    with: { export: nourl, interval: 20ms, max_interval: 20ms, timeout: 300ms }\n",
    );
    let out = run_at(&server, &file, dir.path(), dir.path()).await;
    out.code(0);
    let flip = out.error("flip");
    assert!(
        flip.contains("polls said it was completed, without a download URL"),
        "{flip}"
    );
    let nourl = out.error("nourl");
    assert!(
        nourl.contains("export nourl is `completed` but has no download URL yet"),
        "{nourl}"
    );
    assert!(!nourl.contains("still"), "{nourl}");
}

/// 17. A `download_url` with an upper-case scheme, or scheme-relative (`//host/x`), is a
/// URL, not a path under the base URL.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_b17_upper_case_and_scheme_relative_urls_are_urls() {
    let server = Hostile::start(|req, port| match req.path() {
        "/api/v1/meta" => json_answer(&json!({
            "upper": format!("HTTP://127.0.0.1:{port}/files/upper.bin"),
            "relative": format!("//127.0.0.1:{port}/files/relative.bin"),
        })),
        p if p.starts_with("/files/") => answer("200 OK", "application/octet-stream", b"ok"),
        _ => not_found(),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "p.yaml",
        "version: 1\nsteps:\n  - id: meta\n    action: request\n    with: { path: /meta }\n  - id: upper\n    action: download\n    with: { url: \"{{ steps.meta.outputs.body.upper }}\", to: out/upper.bin }\n  - id: relative\n    action: download\n    with: { url: \"{{ steps.meta.outputs.body.relative }}\", to: out/relative.bin }\n",
    );
    let out = run_at(&server, &file, dir.path(), dir.path()).await;
    out.code(0);
    let mut paths = server.paths();
    paths.sort();
    assert_eq!(
        paths,
        ["/api/v1/meta", "/files/relative.bin", "/files/upper.bin"]
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out/relative.bin")).unwrap(),
        "ok"
    );
}

/// A base URL with `user:password@` is refused before anything is sent, without showing
/// the credentials (a plan or a log would otherwise print them with every URL).
#[test]
fn a_base_url_with_credentials_is_refused_unseen() {
    let dir = tempfile::tempdir().unwrap();
    let file = crate::support::write(
        dir.path(),
        "p.yaml",
        "version: 1\nsteps:\n  - id: list\n    action: datasets.list\n",
    );
    for extra in [&["--dry-run"][..], &[][..]] {
        let out = crate::support::avala_pipe()
            .args([
                "run",
                "--base-url",
                "https://alice:s3cr3tPASS@api.example.test/api/v1",
            ])
            .arg(&file)
            .args(extra.iter().copied())
            .env("AVALA_API_KEY", "avk_test_credentials_0123")
            .run();
        out.code(2).stderr_has("carries credentials");
        assert!(
            !out.stdout.contains("s3cr3tPASS") && !out.stderr.contains("s3cr3tPASS"),
            "the password was shown"
        );
    }
}
