//! [`MemoLookup`]: an owner lookup that remembers each pid's answers for one sweep.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use sessionkit_write_lock::{OwnerLookup, ProcessProbe};

/// One pid's cached answer. The slot's own mutex is held during the real lookup, so two threads
/// asking about the same pid at once make one lookup between them.
type Slot<T> = Arc<Mutex<Option<T>>>;

/// Wraps an [`OwnerLookup`] and remembers its answers per pid, so that a sweep makes one real
/// lookup per pid however many locks that pid owns, across all the directories of the sweep.
///
/// - A successful answer ([`probe`](OwnerLookup::probe) or [`cmdline`](OwnerLookup::cmdline),
///   each on its own) is cached for the life of the `MemoLookup`; make a new one per sweep, as
///   [`Sweeper`](crate::Sweeper) does, so that a pid reused between sweeps is looked up afresh.
/// - A failed lookup (`Err`) is not cached: the next lock of the same pid asks again.
/// - [`lookups`](MemoLookup::lookups) counts every real call to the wrapped lookup, failed
///   ones included, exactly (also when several threads ask at once).
pub struct MemoLookup {
    inner: Arc<dyn OwnerLookup>,
    probes: Mutex<HashMap<u32, Slot<ProcessProbe>>>,
    cmdlines: Mutex<HashMap<u32, Slot<Option<Vec<String>>>>>,
    lookups: AtomicU64,
}

impl MemoLookup {
    /// A memo over `inner` with nothing cached yet.
    pub fn new(inner: Arc<dyn OwnerLookup>) -> MemoLookup {
        MemoLookup {
            inner,
            probes: Mutex::new(HashMap::new()),
            cmdlines: Mutex::new(HashMap::new()),
            lookups: AtomicU64::new(0),
        }
    }

    /// How many real lookups (calls to the wrapped lookup) were made, failed ones included.
    pub fn lookups(&self) -> u64 {
        self.lookups.load(Ordering::SeqCst)
    }

    fn cached<T: Clone>(
        &self,
        map: &Mutex<HashMap<u32, Slot<T>>>,
        pid: u32,
        look: impl FnOnce() -> io::Result<T>,
    ) -> io::Result<T> {
        let slot = lock(map).entry(pid).or_default().clone();
        let mut slot = lock(&slot);
        if let Some(answer) = &*slot {
            return Ok(answer.clone());
        }
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let answer = look()?;
        *slot = Some(answer.clone());
        Ok(answer)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in a lookup leaves the cache consistent (a slot is written only on success).
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl fmt::Debug for MemoLookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoLookup")
            .field("inner", &self.inner)
            .field("lookups", &self.lookups())
            .finish_non_exhaustive()
    }
}

impl OwnerLookup for MemoLookup {
    fn probe(&self, pid: u32) -> io::Result<ProcessProbe> {
        self.cached(&self.probes, pid, || self.inner.probe(pid))
    }

    fn cmdline(&self, pid: u32) -> io::Result<Option<Vec<String>>> {
        self.cached(&self.cmdlines, pid, || self.inner.cmdline(pid))
    }
}
