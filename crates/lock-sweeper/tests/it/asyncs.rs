//! The async sweep gives the same report as the sync one.

use std::time::Duration;

use sessionkit_lock_sweeper::Sweeper;

use crate::util::{Scratch, Sleeper, mixed_dirs, outline};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_async_sweep_matches_the_sync_sweep() {
    let scratch = Scratch::new("async");
    let live = Sleeper::spawn();
    let dead = Sleeper::spawn().kill();
    let dirs = mixed_dirs(&scratch, &live, dead, 5, 150);
    let mut all = dirs.clone();
    all.push(scratch.join("missing"));

    let dry = || {
        let mut b = Sweeper::builder();
        b.dry_run(true).concurrency(2).batch_size(16);
        b.build().unwrap()
    };
    let sync = dry().sweep(&all).unwrap();
    let async_ = dry().sweep_async(&all).await.unwrap();
    assert_eq!(outline(&sync), outline(&async_));
    assert_eq!(sync.totals, async_.totals);
    assert_eq!(sync.lookups, 2);
    assert_eq!(async_.lookups, 2);

    let swept = Sweeper::builder()
        .concurrency(3)
        .batch_size(7)
        .temp_older_than(Some(Duration::from_secs(60)))
        .build()
        .unwrap()
        .sweep_async(&all)
        .await
        .unwrap();
    assert_eq!(swept.totals.scanned, 750);
    assert_eq!(swept.totals.removed, sync.totals.stale);
    assert_eq!(swept.lookups, 2);
    assert!(swept.temps.is_some());
    let again = Sweeper::builder().build().unwrap().sweep(&all).unwrap();
    assert_eq!(again.totals.scanned, 750 - sync.totals.stale);
    assert_eq!(again.totals.stale, 0);
}
