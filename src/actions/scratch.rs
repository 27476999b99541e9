//! Temporary files being written (a download's `.part` file, a `save_to` list), known by
//! path so that an exit that skips destructors can still remove them: the second
//! SIGINT/SIGTERM exits at once, and must not leave partial files behind either.
//!
//! The files themselves are `tempfile::NamedTempFile`s, removed on drop as usual (also on
//! the first signal, when transfers are aborted); this only keeps their names meanwhile.
//! Must not: create, rename or own the files.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Keeps a path registered while it lives.
#[derive(Debug)]
pub struct Registered(PathBuf);

/// Registers a temporary file until the returned guard is dropped.
pub fn register(path: &Path) -> Registered {
    if let Ok(mut live) = LIVE.lock() {
        live.push(path.to_path_buf());
    }
    Registered(path.to_path_buf())
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut live) = LIVE.lock() {
            if let Some(i) = live.iter().position(|p| *p == self.0) {
                live.swap_remove(i);
            }
        }
    }
}

/// Removes every registered file (best effort): the last thing before an immediate exit.
pub fn remove_all() {
    // A poisoned lock still holds the list; an exit must not be stopped by it.
    let live = match LIVE.lock() {
        Ok(live) => live,
        Err(poisoned) => poisoned.into_inner(),
    };
    for path in live.iter() {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_files_are_removed_and_dropped_guards_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let kept = dir.path().join("kept");
        let removed = dir.path().join("removed.part");
        std::fs::write(&kept, "x").unwrap();
        std::fs::write(&removed, "x").unwrap();
        drop(register(&kept));
        let _guard = register(&removed);
        remove_all();
        assert!(kept.exists());
        assert!(!removed.exists());
    }
}
