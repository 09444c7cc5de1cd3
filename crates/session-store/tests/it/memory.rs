//! Memory: a loaded registry stays under twice the snapshot's size, and loading peaks at about
//! twice the file.
//!
//! A counting allocator tracks the bytes live on each thread, so tests running in parallel
//! threads do not disturb each other's counts. These are byte counts, not timings.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use sessionkit_session_store::{State, encode_snapshot, load_snapshot, parse_snapshot};

use crate::util::fixture;

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    // `try_with`: the allocator also runs while thread-locals are being torn down.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is forwarded to `System` unchanged; only counters are updated.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        track(layout.size() as isize);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        track(-(layout.size() as isize));
        // SAFETY: `ptr` was allocated by `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        track(new_size as isize - layout.size() as isize);
        // SAFETY: as for `dealloc`, and `new_size` comes from the caller's contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.with(Cell::get)
}

/// Resets the peak to the current live count and returns it.
fn reset_peak() -> isize {
    let now = live();
    PEAK.with(|p| p.set(now));
    now
}

fn peak() -> isize {
    PEAK.with(Cell::get)
}

/// A pretty snapshot of `n` entries made from the fixture's, with fresh keys and sessionIds.
fn big_snapshot(n: usize) -> Vec<u8> {
    let fixture = load_snapshot(fixture("openclaw-sessions.json")).unwrap();
    let templates: Vec<(String, String)> = fixture
        .iter()
        .map(|(k, e)| {
            (
                k.to_owned(),
                String::from_utf8(encode_snapshot(&one(k, e.as_str()))).unwrap(),
            )
        })
        .collect();
    let mut out = String::from("{");
    for i in 0..n {
        let (key, text) = &templates[i % templates.len()];
        // The template is `{\n  "<key>": {...}\n}\n`; keep the entry part.
        let body = &text[key.len() + 8..text.len() - 3];
        let body = body.replacen("\"sessionId\": \"", &format!("\"sessionId\": \"{i:06}-"), 1);
        out.push_str(if i == 0 { "\n  " } else { ",\n  " });
        out.push_str(&format!("\"{key}:{i}\": {body}"));
    }
    out.push_str("\n}\n");
    out.into_bytes()
}

fn one(key: &str, entry: &str) -> State {
    let text = format!("{{\"{key}\":{entry}}}");
    parse_snapshot("one".as_ref(), text.as_bytes()).unwrap()
}

#[test]
fn a_loaded_registry_stays_under_twice_the_snapshot() {
    let n = 10_000;
    let bytes = big_snapshot(n);
    let file = bytes.len() as isize;
    let before = reset_peak();
    let state = parse_snapshot("big".as_ref(), &bytes).unwrap();
    let retained = live() - before;
    let peak_during_load = peak() - before;
    assert_eq!(state.len(), n);
    // The caller still holds the file's bytes here. Measured: the state is 1.4 times the
    // file, and the load's peak over the bytes 1.5 times (the state plus the list of raw
    // entries). The bounds leave room for allocator changes, not for a copy of the file.
    assert!(
        retained < 2 * file,
        "state holds {retained} bytes for a {file}-byte snapshot"
    );
    assert!(
        peak_during_load <= 2 * file,
        "loading peaked at {peak_during_load} bytes over a {file}-byte snapshot"
    );
    drop(state);
    assert!(live() - before <= 0, "bytes leaked: {}", live() - before);
}

#[test]
fn loading_a_file_holds_about_one_chunk_besides_the_state() {
    let n = 10_000;
    let bytes = big_snapshot(n);
    let file = bytes.len() as isize;
    let scratch = crate::util::Scratch::new("memory-load");
    let path = scratch.join("sessions.json");
    std::fs::write(&path, &bytes).unwrap();
    drop(bytes);
    let before = reset_peak();
    let state = load_snapshot(&path).unwrap();
    let retained = live() - before;
    let peak_during_load = peak() - before;
    assert_eq!(state.len(), n);
    assert_eq!(
        state,
        parse_snapshot("big".as_ref(), &std::fs::read(&path).unwrap()).unwrap()
    );
    // The file is read in chunks of 64 KiB: what the load holds besides the state at its
    // peak is a chunk or two and the entry being parsed, not the file (a whole-file read
    // would add all of `file`).
    let transient = peak_during_load - retained;
    assert!(
        transient < file / 8,
        "loading held {transient} bytes besides the state for a {file}-byte snapshot"
    );
}

#[test]
fn a_damaged_file_is_judged_by_the_strict_parser() {
    let scratch = crate::util::Scratch::new("memory-damaged");
    let path = scratch.join("sessions.json");
    for text in [
        "",
        "{\"a\": {}} x",
        "{\"a\": 1}",
        "{\"a\": {\"b\": 1},}",
        "{\"a\": {\"b\": [1}}",
        "[{}]",
    ] {
        std::fs::write(&path, text).unwrap();
        let streamed = load_snapshot(&path)
            .map(|s| s.len())
            .map_err(|e| e.to_string());
        let strict = parse_snapshot(&path, text.as_bytes())
            .map(|s| s.len())
            .map_err(|e| e.to_string());
        assert_eq!(streamed, strict, "{text:?}");
        assert!(streamed.is_err(), "{text:?}");
    }
    // Escaped keys, duplicates (the last wins), whitespace everywhere.
    let text = " {\n \"a\\u0062\" : { \"x\" : \"}\\\"{\" } , \"ab\": {\"y\": [1, {\"z\": 2}]} }\n";
    std::fs::write(&path, text).unwrap();
    let streamed = load_snapshot(&path).unwrap();
    assert_eq!(streamed, parse_snapshot(&path, text.as_bytes()).unwrap());
    assert_eq!(streamed.len(), 1);
    assert_eq!(
        streamed.get("ab").unwrap().as_str(),
        r#"{"y":[1, {"z": 2}]}"#
    );
}
