//! A download's bytes on their way to disk: written and hashed on two threads of their
//! own while the body is still arriving, the chunks handed to both (in batches of 1 MiB)
//! without a copy.
//!
//! Takes: the body's chunks, in order. Gives: the sha256 of every byte, once every byte
//! is in the file and on disk (`fdatasync`). Must not: copy a chunk in user space (the
//! page cache copy is the only one), or report a digest before the data is durable.
//!
//! Why this shape (issue 14, profiled with `perf record` on a 1 GiB download): with a
//! `BufWriter` over `tokio::fs::File`, every byte was copied twice in user space before
//! the kernel's copy, and each write crossed to the blocking pool through tokio's own
//! buffer; the kernel's copy into the page cache, from buffers that had gone cold, was
//! ~half of the process's CPU. Chunks now go straight to `write(2)` on a thread that does
//! nothing else, and to the hasher on another, a batch at a time (a hand-off per chunk
//! was two thread wake-ups per ~300 KiB) (sha256 is the costliest part of a
//! download on a fast link, ~1.4–2 GB/s with SHA-NI). Durability is needed at the rename,
//! not on every write: the writer asks the kernel to start writing back each finished
//! stretch (`sync_file_range(SYNC_FILE_RANGE_WRITE)`, which does not wait), so the one
//! `fdatasync` before the rename waits for the last stretch only. A sink dropped
//! unfinished (a cut body, a cancelled step), or whose `finish` is dropped before the
//! writer has begun the final sync (Ctrl-C while the disk catches up), syncs nothing: its
//! file is about to go.

use std::io::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Batches queued for each thread (at most a few MiB in flight: peak RSS ≤ 32 MiB).
const AHEAD: usize = 3;

/// Bytes written between two writeback starts.
const WRITEBACK_EVERY: u64 = 32 << 20;

/// Chunks are handed over in batches of at least this many bytes: one wake-up of each
/// thread per batch, not per chunk (per-chunk hand-offs were ~10,000 context switches a GiB).
const BATCH: usize = 1 << 20;

type Batch = Arc<Vec<Bytes>>;

/// The two threads and their queues.
pub struct FileSink {
    /// Dropped first (fields drop in order): a sink dropped unfinished — the body failed,
    /// the step was cancelled, `finish` was dropped — tells its writer to stop before its
    /// queue closes, so it does not sync a file that is about to be deleted.
    abandon: Abandon,
    writes: Option<mpsc::Sender<Batch>>,
    hashes: Option<mpsc::Sender<Batch>>,
    writer: JoinHandle<std::io::Result<()>>,
    hasher: JoinHandle<String>,
    /// Chunks not handed over yet, and their size.
    batch: Vec<Bytes>,
    batched: usize,
}

impl FileSink {
    /// Starts writing into `file` (from its start) and hashing.
    pub fn start(file: std::fs::File) -> Self {
        let (writes, to_write) = mpsc::channel::<Batch>(AHEAD);
        let (hashes, to_hash) = mpsc::channel::<Batch>(AHEAD);
        let abandon = Abandon(Some(Arc::new(AtomicU8::new(RUNNING))));
        let end = abandon.state();
        FileSink {
            abandon,
            writes: Some(writes),
            hashes: Some(hashes),
            writer: tokio::task::spawn_blocking(move || {
                write_all(file, to_write, &end).map(|_| ())
            }),
            hasher: tokio::task::spawn_blocking(move || hash_all(to_hash)),
            batch: Vec::new(),
            batched: 0,
        }
    }

    /// Takes a chunk; hands the chunks taken to both threads (a reference-counted handle
    /// each) once they make a batch, waiting while either is behind. `false`: the writer
    /// stopped (`finish` says why).
    pub async fn push(&mut self, chunk: Bytes) -> bool {
        self.batched += chunk.len();
        self.batch.push(chunk);
        if self.batched < BATCH {
            return true;
        }
        self.hand_over().await
    }

    async fn hand_over(&mut self) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        let batch: Batch = Arc::new(std::mem::take(&mut self.batch));
        self.batched = 0;
        if let Some(hashes) = &self.hashes {
            // Fails only if the hasher is gone, which `finish` reports.
            let _ = hashes.send(batch.clone()).await;
        }
        match &self.writes {
            Some(writes) => writes.send(batch).await.is_ok(),
            None => false,
        }
    }

    /// Waits until every chunk is in the file and on disk, then gives the hex sha256.
    /// Dropped before the writer has begun its final sync, the sink is abandoned.
    pub async fn finish(mut self) -> std::io::Result<String> {
        self.hand_over().await;
        self.abandon.finishing();
        self.writes = None;
        self.hashes = None;
        (&mut self.writer).await.map_err(std::io::Error::other)??;
        self.abandon.0 = None;
        (&mut self.hasher).await.map_err(std::io::Error::other)
    }
}

/// How the sink's owner left it, as its writer reads it: chunks still coming, every chunk
/// handed over (sync, then done), or abandoned (stop, sync nothing).
const RUNNING: u8 = 0;
const FINISHING: u8 = 1;
const ABANDONED: u8 = 2;

/// Marks the sink abandoned when dropped, unless taken out first (`finish`, once the writer
/// is done).
struct Abandon(Option<Arc<AtomicU8>>);

impl Abandon {
    fn state(&self) -> Arc<AtomicU8> {
        self.0
            .clone()
            .unwrap_or_else(|| Arc::new(AtomicU8::new(RUNNING)))
    }

    /// Every chunk handed over: the writer syncs once its queue is empty.
    fn finishing(&self) {
        if let Some(state) = &self.0 {
            state.store(FINISHING, Ordering::Release);
        }
    }
}

impl Drop for Abandon {
    fn drop(&mut self) {
        if let Some(state) = &self.0 {
            state.store(ABANDONED, Ordering::Release);
        }
    }
}

/// How the writer ended.
#[derive(Debug, PartialEq, Eq)]
enum Written {
    /// Every batch written and the file synced.
    Synced,
    /// The sink (or its `finish`) was dropped: the rest skipped, nothing synced.
    Abandoned,
}

fn write_all(
    mut file: std::fs::File,
    mut batches: mpsc::Receiver<Batch>,
    end: &AtomicU8,
) -> std::io::Result<Written> {
    let (mut written, mut handed) = (0u64, 0u64);
    while let Some(batch) = batches.blocking_recv() {
        if end.load(Ordering::Acquire) == ABANDONED {
            return Ok(Written::Abandoned);
        }
        for chunk in batch.iter() {
            file.write_all(chunk)?;
            written += chunk.len() as u64;
        }
        if written - handed >= WRITEBACK_EVERY {
            start_writeback(&file, handed, written - handed);
            handed = written;
        }
    }
    // The queue closed: synced only if `finish` closed it and is still waiting.
    if end.load(Ordering::Acquire) != FINISHING {
        return Ok(Written::Abandoned);
    }
    file.sync_data().map(|_| Written::Synced)
}

fn hash_all(mut batches: mpsc::Receiver<Batch>) -> String {
    let mut hasher = Sha256::new();
    while let Some(batch) = batches.blocking_recv() {
        for chunk in batch.iter() {
            hasher.update(chunk);
        }
    }
    hex::encode(hasher.finalize())
}

/// Asks the kernel to start writing `len` bytes at `offset` back to the disk, without
/// waiting for it (a hint: the final `fdatasync` is what makes the file durable).
#[cfg(target_os = "linux")]
fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd as _;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: a system call on a file descriptor this function borrows open; no memory is
    // passed. Its result is a hint's: ignored (the final fdatasync reports real errors).
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &std::fs::File, _offset: u64, _len: u64) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_chunk_is_written_in_order_and_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut sink = FileSink::start(std::fs::File::create(&path).unwrap());
        let mut all = Vec::new();
        for i in 0..300u32 {
            // Sizes that cross the writeback stretch several times.
            let chunk: Vec<u8> = (0..(i * 997 % 400_000)).map(|b| (b ^ i) as u8).collect();
            all.extend_from_slice(&chunk);
            assert!(sink.push(Bytes::from(chunk)).await);
        }
        let digest = sink.finish().await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), all);
        assert_eq!(digest, hex::encode(Sha256::digest(&all)));
    }

    /// The writer's decision at the end of its queue, for each way the owner can leave it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_a_finish_still_waiting_makes_the_writer_sync() {
        let dir = tempfile::tempdir().unwrap();
        // (what the owner did, what the writer must do)
        let cases = [
            ("dropped the sink unfinished", ABANDONED, Written::Abandoned),
            (
                "closed the queue without finishing",
                RUNNING,
                Written::Abandoned,
            ),
            ("finished, and is waiting", FINISHING, Written::Synced),
        ];
        for (what, state, want) in cases {
            let file = std::fs::File::create(dir.path().join(what)).unwrap();
            let (writes, to_write) = mpsc::channel::<Batch>(AHEAD);
            writes
                .send(Arc::new(vec![Bytes::from_static(b"abc")]))
                .await
                .unwrap();
            drop(writes);
            let end = Arc::new(AtomicU8::new(state));
            let writer = tokio::task::spawn_blocking(move || write_all(file, to_write, &end));
            assert_eq!(writer.await.unwrap().unwrap(), want, "the owner {what}");
        }
    }

    /// A `finish` dropped while the writer is still writing (Ctrl-C while a slow disk
    /// catches up) leaves the sink abandoned: the writer stops without syncing. The file is
    /// a FIFO nobody reads yet, so the writer is held in its write until the test drains it.
    #[cfg(target_os = "linux")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_finish_abandons_the_sink() {
        use futures_util::FutureExt as _;
        use std::io::Read as _;
        use std::os::unix::ffi::OsStrExt as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fifo");
        let name = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: a system call given a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        // The read end first, without waiting for a writer (and read without waiting);
        // then the write end: writing waits once the pipe is full.
        let mut reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let mut sink = FileSink::start(file);
        let end = sink.abandon.state();
        assert!(sink.push(Bytes::from(vec![1u8; BATCH])).await);
        let mut finish = Box::pin(sink.finish());
        assert!(
            (&mut finish).now_or_never().is_none(),
            "finished while its writer is held"
        );
        assert_eq!(end.load(Ordering::Acquire), FINISHING);
        drop(finish);
        assert_eq!(end.load(Ordering::Acquire), ABANDONED);
        // Let the writer go: it finds the sink abandoned (before or after writing its
        // batch, as the threads ran) and closes the file.
        let drained = tokio::task::spawn_blocking(move || {
            let (mut all, mut buf) = (0, vec![0u8; 1 << 16]);
            let started = std::time::Instant::now();
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => return all, // the writer closed its end
                    Ok(n) => all += n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        assert!(started.elapsed().as_secs() < 30, "the writer never closed");
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        })
        .await
        .unwrap();
        assert!(drained == 0 || drained == BATCH, "{drained} bytes");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_error_stops_the_sink_and_is_reported() {
        // A read-only handle: the first write fails.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"").unwrap();
        let mut sink = FileSink::start(std::fs::File::open(&path).unwrap());
        let mut refused = false;
        let chunk = Bytes::from(vec![7u8; BATCH / 2]);
        for _ in 0..(AHEAD * 8) {
            if !sink.push(chunk.clone()).await {
                refused = true;
                break;
            }
        }
        assert!(
            refused,
            "the sink kept taking chunks after its writer failed"
        );
        assert!(sink.finish().await.is_err());
    }
}
