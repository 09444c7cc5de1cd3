//! The tracing events operators rely on: long holds and revocations say "lock held for N ms".

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sessionkit_write_lock::{LockConfig, Locker, ManualClock};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

use crate::util::Scratch;

/// Keeps the level and message of every event.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<(Level, String)>>>);

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut message = Message(String::new());
        event.record(&mut message);
        self.0
            .lock()
            .unwrap()
            .push((*event.metadata().level(), message.0));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn long_holds_and_revocations_are_logged_with_their_length() {
    let dir = Scratch::new("events");
    let capture = Capture::default();
    let events = capture.0.clone();
    let clock = Arc::new(ManualClock::new());
    let locker = Locker::with_config(
        LockConfig::builder()
            .clock(clock.clone())
            .watchdog(false)
            .max_hold(Duration::from_secs(60))
            .warn_hold_after(Duration::from_secs(10))
            .build()
            .unwrap(),
    );
    tracing::subscriber::with_default(capture, || {
        let short = locker.acquire(dir.join("short")).unwrap();
        clock.advance(Duration::from_secs(9));
        drop(short);
        let long = locker.acquire(dir.join("long")).unwrap();
        clock.advance(Duration::from_millis(10_500));
        drop(long);
        let _hung = locker.acquire(dir.join("hung")).unwrap();
        clock.advance(Duration::from_secs(61));
        locker.watchdog_pass();
    });
    let warnings: Vec<String> = events
        .lock()
        .unwrap()
        .iter()
        .filter(|(level, _)| *level == Level::WARN)
        .map(|(_, m)| m.clone())
        .collect();
    assert_eq!(
        warnings,
        [
            "lock held for 10500 ms",
            "lock held for 61000 ms (max 60000 ms); revoking"
        ],
        "{warnings:?}"
    );
}
