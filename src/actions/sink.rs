//! A download's bytes on their way to disk: written and hashed on two threads of their
//! own while the body is still arriving, the chunks handed to both (in batches of 256 KiB)
//! without a copy (a large body's writer copies them once, into its aligned block).
//!
//! Takes: the body's chunks, in order, and the body's announced size. Gives: the sha256
//! of every byte, once every byte is in the file and on disk (`fdatasync`). Must not: hold
//! more than a few MiB, or report a digest before the data is durable.
//!
//! Why this shape (issue 14, profiled with `perf record` on a 1 GiB download): with a
//! `BufWriter` over `tokio::fs::File`, every byte was copied twice in user space before
//! the kernel's copy, and each write crossed to the blocking pool through tokio's own
//! buffer; the kernel's copy into the page cache, from buffers that had gone cold, was
//! ~half of the process's CPU. Chunks now go to a writer thread that does nothing else,
//! and to the hasher on another, a batch at a time (a hand-off per chunk was two thread
//! wake-ups per ~300 KiB) (sha256 is the costliest part of a download on a fast link,
//! ~1.3–2 GB/s with SHA-NI, and needs a CPU of its own). Large downloads are written
//! around the page cache, small ones through it: see [`Out`] for why, with numbers.
//! Durability is needed at the rename, not on every write: one `fdatasync` before it. A
//! sink dropped unfinished (a cut body, a cancelled step), or whose `finish` is dropped
//! before the writer has begun the final sync (Ctrl-C while the disk catches up), syncs
//! nothing: its file is about to go.

use std::io::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Batches queued for each thread (about 1 MiB in flight: peak RSS ≤ 32 MiB).
const AHEAD: usize = 4;

/// Bytes written between two writeback starts.
const WRITEBACK_EVERY: u64 = 32 << 20;

/// Chunks are handed over in batches of at least this many bytes: one wake-up of each
/// thread per batch, not per chunk (per-chunk hand-offs were ~10,000 context switches a
/// GiB). Small enough that a batch is still in the CPU's cache when the hasher and the
/// writer read it: 1 MiB batches (queued 3 deep) gave the same times and 9 MiB more RSS.
const BATCH: usize = 256 << 10;

/// Downloads whose announced size is at least this go around the page cache (`O_DIRECT`)
/// where the file system allows it: see [`Out`].
const DIRECT_FROM: u64 = 64 << 20;

/// A direct write's size (and its buffer's): under 1 ms of a disk's time, so the writer
/// keeps up with a fast link with the few batches queued ahead of it (1 MiB direct writes
/// took 0.75 s a GiB here, 4 MiB ones 0.71 s).
const BLOCK: usize = 1 << 20;

/// Alignment of a direct write's buffer, length and offset (a page: a multiple of every
/// common logical block size; a file system that wants more refuses, and the writer falls
/// back to the page cache).
const ALIGN: usize = 4096;

type Batch = Arc<Vec<Bytes>>;

/// The two threads and their queues.
pub struct FileSink {
    /// Dropped first (fields drop in order): a sink dropped unfinished — the body failed,
    /// the step was cancelled, `finish` was dropped — tells its writer to stop before its
    /// queue closes, so it does not sync a file that is about to be deleted.
    abandon: Abandon,
    writes: Option<mpsc::Sender<Batch>>,
    hashes: Option<mpsc::Sender<Batch>>,
    writer: JoinHandle<std::io::Result<Written>>,
    hasher: JoinHandle<String>,
    /// Chunks not handed over yet, and their size.
    batch: Vec<Bytes>,
    batched: usize,
}

impl FileSink {
    /// Starts writing into `file` (from its start) and hashing. `size`: the body's announced
    /// length, when known (large ones are written around the page cache).
    pub fn start(file: std::fs::File, size: Option<u64>) -> Self {
        let direct = size.is_some_and(|n| n >= DIRECT_FROM);
        let (writes, to_write) = mpsc::channel::<Batch>(AHEAD);
        let (hashes, to_hash) = mpsc::channel::<Batch>(AHEAD);
        let abandon = Abandon(Some(Arc::new(AtomicU8::new(RUNNING))));
        let end = abandon.state();
        FileSink {
            abandon,
            writes: Some(writes),
            hashes: Some(hashes),
            writer: tokio::task::spawn_blocking(move || {
                write_all(Out::new(file, direct), to_write, &end)
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
    pub async fn finish(mut self) -> std::io::Result<Sunk> {
        self.hand_over().await;
        self.abandon.finishing();
        self.writes = None;
        self.hashes = None;
        let written = (&mut self.writer).await.map_err(std::io::Error::other)??;
        self.abandon.0 = None;
        let sha256 = (&mut self.hasher).await.map_err(std::io::Error::other)?;
        match written {
            Written::Synced { direct } => Ok(Sunk { sha256, direct }),
            // Only a sink dropped, or a finish dropped, is abandoned: not this one.
            Written::Abandoned => Err(std::io::Error::other("the writer stopped early")),
        }
    }
}

/// Every byte of a body in its file, on disk.
#[derive(Debug)]
pub struct Sunk {
    /// The hex sha256 of the bytes.
    pub sha256: String,
    /// How many of them were written with `O_DIRECT`.
    pub direct: u64,
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
    /// Every batch written and the file synced; of its bytes, `direct` were written with
    /// `O_DIRECT`.
    Synced { direct: u64 },
    /// The sink (or its `finish`) was dropped: the rest skipped, nothing synced.
    Abandoned,
}

fn write_all(
    mut out: Out,
    mut batches: mpsc::Receiver<Batch>,
    end: &AtomicU8,
) -> std::io::Result<Written> {
    while let Some(batch) = batches.blocking_recv() {
        if end.load(Ordering::Acquire) == ABANDONED {
            return Ok(Written::Abandoned);
        }
        for chunk in batch.iter() {
            out.write(chunk)?;
        }
    }
    // The queue closed: synced only if `finish` closed it and is still waiting.
    if end.load(Ordering::Acquire) != FINISHING {
        return Ok(Written::Abandoned);
    }
    out.finish().map(|direct| Written::Synced { direct })
}

/// The file as the writer writes it: through the page cache, or around it.
///
/// Around it (`O_DIRECT`, Linux, for large downloads): the disk reads each block straight
/// from the writer's buffer, so the kernel neither copies the bytes into the page cache nor
/// writes them back later, and the one `fdatasync` before the rename finds little left (the
/// tail, the file's size and extents, the disk's cache). Measured with `dd` on a 1 GiB file
/// (Intel Xeon, 2 CPUs, ext4 on virtio), written and synced: 0.11–0.16 CPU-s and 0.71–0.75
/// s in 1–4 MiB direct writes, against 0.9–1.25 CPU-s and 1.4–1.7 s through the page cache.
/// That CPU is what a download shares with its hasher. On a virtual machine that hands
/// freed memory back to its host (virtio-balloon page reporting, as on the benchmark
/// hosts), every new page-cache page is also a fault on the host: the same download took
/// 1.2–2.9 s through the page cache and 0.92–1.29 s around it (`curl -o`: 0.75–3.3 s, as
/// the host's memory happened to be). The price: a copy of each byte into an aligned
/// buffer (~0.1 s a GiB), and a file not left in the page cache (a later step that reads
/// it reads the disk). A file system that refuses direct writes (at the start, or on any
/// write) gets the rest through the page cache; some (tmpfs, btrfs on unaligned writes)
/// take the flag and use their page cache anyway.
///
/// Through it (small or unsized bodies, the tail): each chunk goes to `write(2)` as it is,
/// and each finished stretch is handed to the disk early (`sync_file_range`, which does not
/// wait), so the final `fdatasync` waits for the last stretch only.
struct Out {
    file: std::fs::File,
    /// Bytes written so far (the offset of the next write).
    written: u64,
    /// Bytes already handed to the disk (page-cache writes only).
    handed: u64,
    /// Bytes written with `O_DIRECT`.
    direct: u64,
    /// The block being filled: there is one exactly while `O_DIRECT` is on for the file.
    block: Option<Block>,
    /// A test's stand-in for a file system that refuses direct writes: from this offset.
    #[cfg(test)]
    refuse_direct_from: u64,
}

/// A `BLOCK`-sized buffer aligned to `ALIGN`, inside a slightly larger allocation.
struct Block {
    buf: Vec<u8>,
    start: usize,
    filled: usize,
}

impl Out {
    fn new(file: std::fs::File, direct: bool) -> Self {
        let block = match direct {
            true => Block::new().filter(|_| set_direct(&file, true).is_ok()),
            false => None,
        };
        Out {
            file,
            written: 0,
            handed: 0,
            direct: 0,
            block,
            #[cfg(test)]
            refuse_direct_from: u64::MAX,
        }
    }

    fn write(&mut self, mut chunk: &[u8]) -> std::io::Result<()> {
        while !chunk.is_empty() {
            let Some(block) = &mut self.block else {
                return self.write_through(chunk);
            };
            let take = chunk.len().min(BLOCK - block.filled);
            let at = block.start + block.filled;
            block.buf[at..at + take].copy_from_slice(&chunk[..take]);
            block.filled += take;
            chunk = &chunk[take..];
            if block.filled == BLOCK {
                self.write_block()?;
            }
        }
        Ok(())
    }

    /// Through the page cache: the chunk as it is, each finished stretch handed to the disk.
    fn write_through(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.file.write_all(chunk)?;
        self.written += chunk.len() as u64;
        if self.written - self.handed >= WRITEBACK_EVERY {
            start_writeback(&self.file, self.handed, self.written - self.handed);
            self.handed = self.written;
        }
        Ok(())
    }

    /// Writes the block's bytes at the file's end. A direct write refused (`EINVAL`: this
    /// file system wants another alignment, or a short write left the rest unaligned)
    /// clears `O_DIRECT`: the rest of the block, and every byte after it, go through the
    /// page cache.
    fn write_block(&mut self) -> std::io::Result<()> {
        let Some(mut block) = self.block.take() else {
            return Ok(());
        };
        let bytes = &block.buf[block.start..block.start + block.filled];
        let mut done = 0;
        while done < bytes.len() {
            let wrote = match self.refuses_direct_at(self.written) {
                true => Err(std::io::Error::from_raw_os_error(libc::EINVAL)),
                false => self.file.write(&bytes[done..]),
            };
            match wrote {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    done += n;
                    self.written += n as u64;
                    self.direct += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    tracing::debug!(
                        "a direct write at byte {} was refused ({e}): the rest goes through the page cache",
                        self.written
                    );
                    set_direct(&self.file, false)?;
                    return self.write_through(&bytes[done..]);
                }
                Err(e) => return Err(e),
            }
        }
        block.filled = 0;
        self.block = Some(block);
        Ok(())
    }

    /// Writes what is left and makes the file durable; gives the bytes written with
    /// `O_DIRECT`.
    fn finish(mut self) -> std::io::Result<u64> {
        if let Some(block) = self.block.take() {
            // The tail is shorter than a block: through the page cache, no padding.
            set_direct(&self.file, false)?;
            self.write_through(&block.buf[block.start..block.start + block.filled])?;
        }
        self.file.sync_data()?;
        Ok(self.direct)
    }

    /// Whether a test has this file refuse direct writes at `offset`.
    fn refuses_direct_at(&self, _offset: u64) -> bool {
        #[cfg(test)]
        return _offset >= self.refuse_direct_from;
        #[cfg(not(test))]
        false
    }
}

impl Block {
    fn new() -> Option<Self> {
        let buf = vec![0u8; BLOCK + ALIGN];
        let start = buf.as_ptr().align_offset(ALIGN);
        (start < ALIGN).then_some(Block {
            buf,
            start,
            filled: 0,
        })
    }
}

/// An open file's status flags (`F_GETFL`).
#[cfg(target_os = "linux")]
fn status_flags(file: &std::fs::File) -> std::io::Result<libc::c_int> {
    use std::os::fd::AsRawFd as _;
    // SAFETY: fcntl on a descriptor this function borrows open; no memory is passed.
    match unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) } {
        flags if flags >= 0 => Ok(flags),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// Turns `O_DIRECT` on or off for an open file.
#[cfg(target_os = "linux")]
fn set_direct(file: &std::fs::File, on: bool) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let flags = match on {
        true => status_flags(file)? | libc::O_DIRECT,
        false => status_flags(file)? & !libc::O_DIRECT,
    };
    // SAFETY: as in `status_flags`.
    match unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// Elsewhere there is no `O_DIRECT` to turn on (and none to turn off).
#[cfg(not(target_os = "linux"))]
fn set_direct(_file: &std::fs::File, on: bool) -> std::io::Result<()> {
    match on {
        true => Err(std::io::ErrorKind::Unsupported.into()),
        false => Ok(()),
    }
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

    /// Chunks of awkward sizes (crossing blocks and writeback stretches), through the page
    /// cache and around it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_chunk_is_written_in_order_and_hashed() {
        let dir = tempfile::tempdir().unwrap();
        for size in [None, Some(DIRECT_FROM)] {
            let path = dir.path().join(format!("{size:?}"));
            let mut sink = FileSink::start(std::fs::File::create(&path).unwrap(), size);
            let all = awkward_chunks(300);
            for chunk in &all {
                assert!(sink.push(Bytes::from(chunk.clone())).await);
            }
            let all = all.concat();
            let sunk = sink.finish().await.unwrap();
            assert!(std::fs::read(&path).unwrap() == all, "{size:?}");
            assert_eq!(sunk.sha256, hex::encode(Sha256::digest(&all)), "{size:?}");
            let direct = size.is_some() && takes_direct(dir.path());
            assert_eq!(
                sunk.direct > 0,
                direct,
                "{size:?}: {} bytes direct",
                sunk.direct
            );
        }
    }

    /// `n` chunks of sizes from 0 to 400 kB, different bytes in each.
    fn awkward_chunks(n: u32) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| (0..(i * 997 % 400_000)).map(|b| (b ^ i) as u8).collect())
            .collect()
    }

    /// Whether files in `dir` take `O_DIRECT` (ext4, xfs, btrfs; tmpfs since Linux 6.6).
    fn takes_direct(dir: &std::path::Path) -> bool {
        let file = std::fs::File::create(dir.join("probe")).unwrap();
        set_direct(&file, true).is_ok()
    }

    /// Runs the writer over `chunks` into `out`; gives what it reported and the file.
    async fn run_writer(
        out: Out,
        path: &std::path::Path,
        chunks: &[Vec<u8>],
    ) -> (Written, Vec<u8>) {
        let (writes, to_write) = mpsc::channel::<Batch>(chunks.len().max(1));
        for chunk in chunks {
            writes
                .send(Arc::new(vec![Bytes::from(chunk.clone())]))
                .await
                .unwrap();
        }
        drop(writes);
        let end = Arc::new(AtomicU8::new(FINISHING));
        let written = tokio::task::spawn_blocking(move || write_all(out, to_write, &end))
            .await
            .unwrap()
            .unwrap();
        (written, std::fs::read(path).unwrap())
    }

    /// Whether `file` has `O_DIRECT` on.
    #[cfg(target_os = "linux")]
    fn direct_is_on(file: &std::fs::File) -> bool {
        status_flags(file).is_ok_and(|flags| flags & libc::O_DIRECT != 0)
    }

    #[cfg(not(target_os = "linux"))]
    fn direct_is_on(_file: &std::fs::File) -> bool {
        false
    }

    /// A large body goes around the page cache in whole blocks (`O_DIRECT` on the file),
    /// and its tail (shorter than a block) through it; the file holds every byte, and no
    /// padding.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_large_body_is_written_around_the_page_cache_but_its_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let chunks = awkward_chunks(120);
        let all = chunks.concat();
        assert!(all.len() > 3 * BLOCK && all.len() % BLOCK != 0);
        let out = Out::new(std::fs::File::create(&path).unwrap(), true);
        let direct = takes_direct(dir.path());
        assert_eq!(direct_is_on(&out.file), direct);
        assert_eq!(out.block.is_some(), direct);
        let (written, file) = run_writer(out, &path, &chunks).await;
        assert!(file == all, "the file differs from the chunks");
        let whole_blocks = (all.len() / BLOCK * BLOCK) as u64;
        match direct {
            true => assert_eq!(
                written,
                Written::Synced {
                    direct: whole_blocks
                }
            ),
            // This file system refuses O_DIRECT: all of it through the page cache.
            false => assert_eq!(written, Written::Synced { direct: 0 }),
        }
    }

    /// A direct write the file system refuses (`EINVAL`, as one that wants a larger
    /// alignment would; here from the second block on) is written again through the page
    /// cache, and so is every byte after it, without the block.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_direct_write_falls_back_to_the_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = std::fs::File::create(&path).unwrap();
        // Whether or not this file system takes O_DIRECT, the writer believes it does.
        let _ = set_direct(&file, true);
        let out = Out {
            refuse_direct_from: BLOCK as u64,
            block: Block::new(),
            ..Out::new(file, false)
        };
        let chunks = awkward_chunks(120);
        let (written, file) = run_writer(out, &path, &chunks).await;
        assert!(file == chunks.concat(), "the file differs from the chunks");
        // The first block went out before the refusal; nothing direct after it.
        assert_eq!(
            written,
            Written::Synced {
                direct: BLOCK as u64
            }
        );
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
            (
                "finished, and is waiting",
                FINISHING,
                Written::Synced { direct: 0 },
            ),
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
            let writer = tokio::task::spawn_blocking(move || {
                write_all(Out::new(file, false), to_write, &end)
            });
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
        let mut sink = FileSink::start(file, None);
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
        let mut sink = FileSink::start(std::fs::File::open(&path).unwrap(), None);
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
