//! Shared test helpers: a builder that runs the real `avala-pipe` binary with args, env
//! and a working directory, and captures stdout, stderr, the exit code and the time taken.
//!
//! Runs start from the crate root with `NO_COLOR=1` and without the `AVALA_*`, `CI` and
//! `RUST_LOG` variables of the outer environment, so results do not depend on the shell
//! the tests run in. A run that outlives its timeout is killed and fails the test.

#![allow(dead_code)]

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Cmd {
    args: Vec<OsString>,
    /// `None` removes the variable.
    env: Vec<(OsString, Option<OsString>)>,
    cwd: PathBuf,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
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

    /// Runs the binary to completion.
    pub fn run(self) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_avala-pipe"));
        command
            .args(&self.args)
            .current_dir(&self.cwd)
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for key in [
            "AVALA_API_KEY",
            "AVALA_BASE_URL",
            "CI",
            "RUST_LOG",
            "CLICOLOR_FORCE",
        ] {
            command.env_remove(key);
        }
        for (key, value) in &self.env {
            match value {
                Some(v) => command.env(key, v),
                None => command.env_remove(key),
            };
        }
        let line = self.command_line();
        let started = Instant::now();
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{line}`: {e}"));
        if let Some(data) = self.stdin {
            let mut pipe = child.stdin.take().expect("piped stdin");
            std::thread::spawn(move || {
                let _ = pipe.write_all(&data);
            });
        }
        let stdout = drain(child.stdout.take().expect("piped stdout"));
        let stderr = drain(child.stderr.take().expect("piped stderr"));
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for the child") {
                break status;
            }
            if started.elapsed() > self.timeout {
                let _ = child.kill();
                let _ = child.wait();
                panic!("`{line}` did not finish within {:?}", self.timeout);
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let elapsed = started.elapsed();
        Output {
            command: line,
            code: status.code(),
            stdout: String::from_utf8_lossy(&stdout.join().expect("stdout reader")).into(),
            stderr: String::from_utf8_lossy(&stderr.join().expect("stderr reader")).into(),
            elapsed,
        }
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

/// True when the test run should rewrite expected-output files (`BLESS=1`).
pub fn bless() -> bool {
    std::env::var_os("BLESS").is_some_and(|v| !v.is_empty() && v != "0")
}
