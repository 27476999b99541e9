//! The sha256 of a file being uploaded, taken from the chunks its upload reads to send, so
//! that the file is read once (to send it), not twice (to hash it, and to send it).
//!
//! A multipart upload sends its parts side by side, but the digest needs the bytes in file
//! order: a chunk that comes before its turn waits for the chunks before it (a reader
//! thread blocks, holding one chunk), so the parts are read in file order while each is
//! sent on its own connection. When the turn does not come for [`STALL`] (a part waits for
//! a place or for a retry; a slow link), the hash stops waiting for good and reads the rest
//! of the file itself, beside the upload, as it did before.
//!
//! Takes: each chunk with its offset in the file, on the thread that read it, before it is
//! sent; the end of the upload. Gives: the file's sha256, over its bytes in order.
//! Must not: hold chunks (memory stays bounded by the readers' own chunks), hash a chunk
//! twice (a retried part reads its chunks again), or make a reader wait for a turn that
//! does not come.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::ActionError;
use crate::api::request::{ChunkSink, Seen};

/// How long a chunk waits for its turn (the hashed prefix to reach it) before the hash
/// gives up on the chunks and reads the rest of the file itself.
const STALL: Duration = Duration::from_millis(200);

/// An upload's running sha256 (see the module's comment).
pub(crate) struct SentHash {
    state: Mutex<State>,
    /// The prefix moved, the hasher came back, or the mode changed.
    moved: Condvar,
}

struct State {
    /// `None` while a reader hashes its chunk outside the lock.
    hasher: Option<Sha256>,
    /// Bytes `..next` are hashed, or being hashed.
    next: u64,
    mode: Mode,
    /// Offsets of the chunks waiting for their turn (woken only when it may have come: a
    /// wake-up of every waiter for every chunk cost more than the read it saves).
    waiting: Vec<u64>,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    /// Chunks are hashed as they are read.
    Tapping,
    /// No more chunks: the rest is read from the file (a turn did not come, the body is not
    /// read in chunks, or the upload is over).
    Reading,
    /// The upload failed: stop.
    Abandoned,
}

impl SentHash {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(SentHash {
            state: Mutex::new(State {
                hasher: Some(Sha256::new()),
                next: 0,
                mode: Mode::Tapping,
                waiting: Vec::new(),
            }),
            moved: Condvar::new(),
        })
    }

    /// What a file body is given to show this hash its chunks.
    pub(crate) fn seen(self: &Arc<Self>) -> Seen {
        let me = self.clone();
        let sink: ChunkSink = Arc::new(move |offset, chunk| me.offer(offset, chunk));
        Seen(Some(sink))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// No more chunks will be offered (`failed`: nor is the digest wanted).
    pub(crate) fn stop_tapping(&self, failed: bool) {
        let mut st = self.lock();
        if st.mode != Mode::Abandoned {
            st.mode = if failed {
                Mode::Abandoned
            } else {
                Mode::Reading
            };
        }
        self.moved.notify_all();
    }

    /// A chunk read at `offset`: hashed when its turn comes (now, or after the chunks before
    /// it); not needed when hashed already; left to the file when the turn does not come.
    fn offer(&self, offset: u64, chunk: &Bytes) {
        let end = offset + chunk.len() as u64;
        let mut st = self.lock();
        loop {
            if st.mode != Mode::Tapping || end <= st.next {
                return;
            }
            if offset <= st.next && st.hasher.is_some() {
                break;
            }
            let before = st.next;
            st.waiting.push(offset);
            let (guard, waited) = self
                .moved
                .wait_timeout(st, STALL)
                .unwrap_or_else(|e| e.into_inner());
            st = guard;
            if let Some(at) = st.waiting.iter().position(|&w| w == offset) {
                st.waiting.swap_remove(at);
            }
            if waited.timed_out() && st.next == before && st.mode == Mode::Tapping {
                st.mode = Mode::Reading;
                self.moved.notify_all();
                return;
            }
        }
        let (Some(mut hasher), skip) = (st.hasher.take(), (st.next - offset) as usize) else {
            return;
        };
        st.next = end;
        drop(st);
        hasher.update(&chunk[skip..]);
        let mut st = self.lock();
        st.hasher = Some(hasher);
        if st.mode != Mode::Tapping || st.waiting.iter().any(|&w| w <= st.next) {
            self.moved.notify_all();
        }
    }

    /// The file's sha256 (blocking): waits until no chunk will come, then reads from the file
    /// what the chunks did not show. The file must still be `size` bytes long.
    pub(crate) fn digest_blocking(
        &self,
        path: &Path,
        size: u64,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> Result<String, ActionError> {
        let mut st = self.lock();
        while st.mode == Mode::Tapping || st.hasher.is_none() {
            st = self.moved.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        let (mut hasher, from) = (st.hasher.take().unwrap_or_default(), st.next);
        drop(st);
        let changed = |now: u64| {
            ActionError::Other(format!(
                "{} changed while it was uploaded ({size} bytes, then {now})",
                path.display()
            ))
        };
        let stop = || cancel.is_cancelled() || self.lock().mode == Mode::Abandoned;
        let read = hash_range(&mut hasher, path, from, size, stop)?;
        if read < size {
            return Err(changed(read));
        }
        let now = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if now != size {
            return Err(changed(now));
        }
        Ok(hex::encode(hasher.finalize()))
    }

    /// [`SentHash::digest_blocking`] on a blocking thread.
    pub(crate) async fn digest(
        self: &Arc<Self>,
        path: &Path,
        size: u64,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> Result<String, ActionError> {
        let (me, owned, cancel) = (self.clone(), path.to_path_buf(), cancel.clone());
        tokio::task::spawn_blocking(move || me.digest_blocking(&owned, size, &cancel))
            .await
            .unwrap_or_else(|e| {
                Err(ActionError::Other(format!(
                    "hashing {} failed: {e}",
                    path.display()
                )))
            })
    }
}

/// Hashes bytes `from..until` of a file, 1 MiB at a time; gives where it stopped (before
/// `until`: the file ended). `stop` is asked before each read.
fn hash_range(
    hasher: &mut Sha256,
    path: &Path,
    from: u64,
    until: u64,
    stop: impl Fn() -> bool,
) -> Result<u64, ActionError> {
    use std::io::{Read as _, Seek as _};
    if from >= until {
        return Ok(from);
    }
    let fail =
        |e: std::io::Error| ActionError::Other(format!("cannot read {}: {e}", path.display()));
    let mut file = std::fs::File::open(path).map_err(fail)?;
    file.seek(std::io::SeekFrom::Start(from)).map_err(fail)?;
    let mut buf = vec![0; 1024 * 1024];
    let mut at = from;
    while at < until {
        if stop() {
            return Err(ActionError::Interrupted(format!(
                "while reading {}",
                path.display()
            )));
        }
        let want = (until - at).min(buf.len() as u64) as usize;
        let n = match file.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(fail(e)),
        };
        hasher.update(&buf[..n]);
        at += n as u64;
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_of(bytes: &[u8]) -> tempfile::NamedTempFile {
        use std::io::Write as _;
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    fn digest(hash: &SentHash, path: &Path, size: u64) -> Result<String, ActionError> {
        hash.stop_tapping(false);
        hash.digest_blocking(path, size, &tokio_util::sync::CancellationToken::new())
    }

    fn bytes(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    /// Three "parts" read side by side on threads, each chunk of the middle one twice (a
    /// retried part), in chunks of another size than the parts: each waits for its turn,
    /// and the digest is the file's, with nothing left to read.
    #[test]
    fn parts_read_side_by_side_and_again_hash_in_file_order() {
        let data = Arc::new(bytes(300_000));
        let file = file_of(&data);
        let hash = SentHash::new();
        let seen = hash.seen().0.unwrap();
        let threads: Vec<_> = [
            (200_000, 300_000, 1),
            (100_000, 200_000, 2),
            (0, 100_000, 1),
        ]
        .into_iter()
        .map(|(from, to, times)| {
            let (seen, data) = (seen.clone(), data.clone());
            std::thread::spawn(move || {
                for _ in 0..times {
                    for at in (from..to).step_by(30_000) {
                        let end = (at + 30_000).min(to);
                        seen(at as u64, &Bytes::copy_from_slice(&data[at..end]));
                    }
                }
            })
        })
        .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(hash.lock().next, 300_000);
        assert_eq!(hash.lock().mode, Mode::Tapping);
        let want = hex::encode(Sha256::digest(&*data));
        assert_eq!(digest(&hash, file.path(), 300_000).unwrap(), want);
    }

    /// A chunk whose turn does not come (the part before it is not being read) stops the
    /// tapping after a while; the file gives the rest, and the digest is still the file's.
    #[test]
    fn a_turn_that_does_not_come_leaves_the_rest_to_the_file() {
        let data = bytes(100_000);
        let file = file_of(&data);
        let hash = SentHash::new();
        let seen = hash.seen().0.unwrap();
        seen(0, &Bytes::copy_from_slice(&data[..10_000]));
        let started = std::time::Instant::now();
        seen(50_000, &Bytes::copy_from_slice(&data[50_000..60_000]));
        assert!(started.elapsed() >= STALL);
        assert_eq!(hash.lock().mode, Mode::Reading);
        // Later chunks do not wait.
        let started = std::time::Instant::now();
        seen(10_000, &Bytes::copy_from_slice(&data[10_000..20_000]));
        assert!(started.elapsed() < STALL);
        let want = hex::encode(Sha256::digest(&data));
        assert_eq!(digest(&hash, file.path(), 100_000).unwrap(), want);
        // Nothing seen at all: the file, read whole.
        assert_eq!(
            digest(&SentHash::new(), file.path(), 100_000).unwrap(),
            want
        );
    }

    #[test]
    fn a_file_that_changed_size_is_refused() {
        let file = file_of(b"0123456789");
        for size in [8, 12] {
            let err = digest(&SentHash::new(), file.path(), size)
                .unwrap_err()
                .to_string();
            assert!(err.contains("changed while it was uploaded"), "{err}");
        }
    }
}
