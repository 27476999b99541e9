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
//! unfinished (a cut body, a cancelled step) syncs nothing: its file is about to go.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// the step was cancelled — tells its writer to stop before its queue closes, so it
    /// does not sync a file that is about to be deleted.
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
        let abandon = Abandon(Some(Arc::new(AtomicBool::new(false))));
        let abandoned = abandon.flag();
        FileSink {
            abandon,
            writes: Some(writes),
            hashes: Some(hashes),
            writer: tokio::task::spawn_blocking(move || {
                write_all(file, to_write, &abandoned).map(|_| ())
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
    pub async fn finish(mut self) -> std::io::Result<String> {
        self.abandon.0 = None;
        self.hand_over().await;
        self.writes = None;
        self.hashes = None;
        self.writer.await.map_err(std::io::Error::other)??;
        self.hasher.await.map_err(std::io::Error::other)
    }
}

/// Sets its flag when dropped, unless taken out first (`finish`).
struct Abandon(Option<Arc<AtomicBool>>);

impl Abandon {
    fn flag(&self) -> Arc<AtomicBool> {
        self.0.clone().unwrap_or_default()
    }
}

impl Drop for Abandon {
    fn drop(&mut self) {
        if let Some(flag) = &self.0 {
            flag.store(true, Ordering::Release);
        }
    }
}

/// How the writer ended.
#[derive(Debug, PartialEq, Eq)]
enum Written {
    /// Every batch written and the file synced.
    Synced,
    /// The sink was dropped unfinished: the rest skipped, nothing synced.
    Abandoned,
}

fn write_all(
    mut file: std::fs::File,
    mut batches: mpsc::Receiver<Batch>,
    abandoned: &AtomicBool,
) -> std::io::Result<Written> {
    let (mut written, mut handed) = (0u64, 0u64);
    while let Some(batch) = batches.blocking_recv() {
        if abandoned.load(Ordering::Acquire) {
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
    if abandoned.load(Ordering::Acquire) {
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_sink_stops_its_writer_without_syncing() {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::File::create(dir.path().join("f")).unwrap();
        let (writes, to_write) = mpsc::channel::<Batch>(AHEAD);
        let abandon = Abandon(Some(Arc::new(AtomicBool::new(false))));
        let flag = abandon.flag();
        let writer = tokio::task::spawn_blocking(move || write_all(file, to_write, &flag));
        writes
            .send(Arc::new(vec![Bytes::from_static(b"abc")]))
            .await
            .unwrap();
        // As a sink dropped unfinished drops them: the flag first, then the queue.
        drop(abandon);
        drop(writes);
        assert_eq!(writer.await.unwrap().unwrap(), Written::Abandoned);
        // Finished, the same writer syncs.
        let file = std::fs::File::create(dir.path().join("g")).unwrap();
        let (writes, to_write) = mpsc::channel::<Batch>(AHEAD);
        writes
            .send(Arc::new(vec![Bytes::from_static(b"abc")]))
            .await
            .unwrap();
        drop(writes);
        let kept =
            tokio::task::spawn_blocking(move || write_all(file, to_write, &AtomicBool::new(false)));
        assert_eq!(kept.await.unwrap().unwrap(), Written::Synced);
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
