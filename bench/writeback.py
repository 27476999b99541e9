"""How a download's file should become durable, measured on this host's disk (issue 14).

Writes SIZE bytes (default 1 GiB) in 256 KiB chunks, three ways, and times the writing and
the final fdatasync separately:

  none      write everything, then one fdatasync (the whole file is dirty at the end)
  every     fdatasync after every 64 MiB (each waits for the disk), then the final one
  hinted    sync_file_range(SYNC_FILE_RANGE_WRITE) after every 32 MiB: the kernel starts
            writing that stretch back and the writer goes on at once; the final fdatasync
            waits for what is left (what avala-pipe's download does)

usage: writeback.py DIR [SIZE_MIB] [ROUNDS]   (prints one line per strategy and round)
"""
import ctypes
import os
import sys
import time

directory = sys.argv[1]
size = int(sys.argv[2]) * 1024 * 1024 if len(sys.argv) > 2 else 1 << 30
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
CHUNK = 256 * 1024
SYNC_FILE_RANGE_WRITE = 2
libc = ctypes.CDLL("libc.so.6", use_errno=True)
libc.sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
block = os.urandom(CHUNK)


def write(strategy):
    path = os.path.join(directory, f"writeback-{strategy}.bin")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    started = time.perf_counter()
    written = handed = 0
    while written < size:
        os.write(fd, block)
        written += CHUNK
        if strategy == "every" and written - handed >= 64 << 20:
            os.fdatasync(fd)
            handed = written
        elif strategy == "hinted" and written - handed >= 32 << 20:
            libc.sync_file_range(fd, handed, written - handed, SYNC_FILE_RANGE_WRITE)
            handed = written
    wrote = time.perf_counter()
    os.fdatasync(fd)
    synced = time.perf_counter()
    os.close(fd)
    os.unlink(path)
    return wrote - started, synced - wrote


for r in range(rounds):
    for strategy in ("none", "every", "hinted"):
        w, s = write(strategy)
        print(f"round {r + 1} {strategy:6}  writing {w:.3f} s  final fdatasync {s:.3f} s  "
              f"total {w + s:.3f} s", flush=True)
