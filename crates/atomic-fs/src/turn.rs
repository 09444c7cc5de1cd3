//! Directory turns: this process's changes to one directory's entries, one at a time.

use std::cell::Cell;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::path::Path;
use std::sync::Mutex;

/// Turns are kept in this many stripes, chosen by a hash of the directory's path.
const STRIPES: usize = 64;

static TURNS: [Mutex<()>; STRIPES] = [const { Mutex::new(()) }; STRIPES];
thread_local! {
    /// Turns taken by this thread: per thread, so that tests running side by side in one
    /// process count exactly their own.
    static TAKEN: Cell<u64> = const { Cell::new(0) };
}

/// Runs `change`, which creates, renames or removes one entry of the directory `dir` (or a
/// short run of them), as this process's only such change in `dir` at that moment; returns
/// what it returns.
///
/// The kernel makes the changes to one directory's entries one at a time anyway, under the
/// directory's lock. On Linux a thread waiting for that lock spins on its CPU while the holder
/// runs (the lock's optimistic spinning), and a holder on ext4 may run for milliseconds,
/// searching the inode table for an inode it may reuse. With many threads creating and
/// removing files in one directory, such as transcripts and their locks, the spinning took CPU
/// time an async runtime's workers were waiting for. A thread waiting for its turn here sleeps
/// instead. Other processes are not affected.
///
/// Every call of this crate that creates, renames or removes a file or directory takes a turn
/// (through [`RealFs`](crate::RealFs)), and so do the lock files of `sessionkit-write-lock` and
/// the transcripts that `sessionkit-session-store`'s maintenance removes. Maintenance changes
/// many files at a time and takes one turn for each run of them: queued once per file behind
/// threads that take the turn all the time, it waited behind each of them once per file.
///
/// A turn is held only for `change`, which must not wait for anything else (another turn, a
/// file lock, a channel). The turns are kept in 64 stripes by a hash of `dir`, so two
/// directories may share one: a change in one then waits for one call in the other, and never
/// deadlocks, since no turn is held while waiting.
///
/// ```
/// use std::path::Path;
///
/// let dir = std::env::temp_dir();
/// let path = dir.join(format!("turn-example-{}", std::process::id()));
/// let before = sessionkit_atomic_fs::directory_turns_taken();
/// sessionkit_atomic_fs::in_directory_turn(&dir, || std::fs::write(&path, b"x"))?;
/// sessionkit_atomic_fs::in_directory_turn(&dir, || std::fs::remove_file(&path))?;
/// assert_eq!(sessionkit_atomic_fs::directory_turns_taken(), before + 2);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn in_directory_turn<T>(dir: &Path, change: impl FnOnce() -> T) -> T {
    let stripe = BuildHasherDefault::<DefaultHasher>::default().hash_one(dir) as usize % STRIPES;
    // A panic in another change leaves nothing to repair: the mutex guards no data.
    let turn = TURNS[stripe].lock().unwrap_or_else(|e| e.into_inner());
    TAKEN.set(TAKEN.get() + 1);
    let out = change();
    drop(turn);
    out
}

/// Runs `change` on `path` in the turn of the directory that holds it (see
/// [`in_directory_turn`]).
pub fn in_turn_of_parent<T>(path: &Path, change: impl FnOnce() -> T) -> T {
    in_directory_turn(path.parent().unwrap_or(Path::new("")), change)
}

/// The number of directory turns the calling thread has taken, for tests that count which
/// calls took one.
pub fn directory_turns_taken() -> u64 {
    TAKEN.get()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::thread;

    #[test]
    fn changes_in_one_directory_never_overlap() {
        let dir = Path::new("/some/dir");
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (inside, most) = (inside.clone(), most.clone());
                thread::spawn(move || {
                    for _ in 0..200 {
                        in_directory_turn(dir, || {
                            let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            thread::yield_now();
                            inside.fetch_sub(1, Ordering::SeqCst);
                        });
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn the_parent_of_a_path_names_the_turn_and_each_turn_is_counted() {
        let before = directory_turns_taken();
        let seen = in_turn_of_parent(Path::new("/some/dir/file"), || {
            // The same stripe is held: a nested turn of that directory would wait forever,
            // so look at the lock instead.
            let stripe = BuildHasherDefault::<DefaultHasher>::default()
                .hash_one(Path::new("/some/dir")) as usize
                % STRIPES;
            TURNS[stripe].try_lock().is_err()
        });
        assert!(seen);
        assert_eq!(directory_turns_taken(), before + 1);
    }
}
