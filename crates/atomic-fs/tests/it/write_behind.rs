//! Write-behind: a durable write asks the kernel to write the temp file back a chunk at a
//! time, waits one chunk behind, and treats a writeback error as a failed sync.

use std::fs::{self, File};
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use sessionkit_atomic_fs::{
    AtomicWriter, DEFAULT_WRITE_BEHIND, Durability, FileSystem, RealFs, Step,
};

use crate::util::Scratch;

/// One `write_back` call: offset, length, and whether it waited.
type Call = (u64, u64, bool);

/// Records the `write_back` calls (and performs them for real), failing the `nth` (1-based)
/// with `fault` if one is set.
#[derive(Debug, Default)]
struct Behind {
    calls: Mutex<Vec<Call>>,
    fault: Option<(usize, i32)>,
}

impl Behind {
    fn failing(nth: usize, errno: i32) -> Behind {
        Behind {
            fault: Some((nth, errno)),
            ..Behind::default()
        }
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

impl FileSystem for Behind {
    fn write_back(
        &self,
        file: &File,
        path: &Path,
        offset: u64,
        len: u64,
        wait: bool,
    ) -> io::Result<()> {
        let mut calls = self.calls.lock().unwrap();
        calls.push((offset, len, wait));
        if let Some((nth, errno)) = self.fault
            && calls.len() == nth
        {
            return Err(io::Error::from_raw_os_error(errno));
        }
        RealFs.write_back(file, path, offset, len, wait)
    }
}

/// Writes `len` bytes to `target` through `prepare_with` in pieces of 1,000 bytes (so chunk
/// boundaries fall inside pieces), with `chunk` as the write-behind.
fn write_in_pieces(
    fs: Arc<Behind>,
    durability: Durability,
    chunk: u64,
    target: &Path,
    len: usize,
) -> sessionkit_atomic_fs::Result<Vec<u8>> {
    let contents: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let mut writer = AtomicWriter::new();
    writer
        .file_system(fs)
        .durability(durability)
        .write_behind(chunk);
    writer
        .prepare_with(target, |out| {
            contents
                .chunks(1000)
                .try_for_each(|piece| out.write_all(piece))
        })?
        .commit()?;
    Ok(contents)
}

#[test]
fn a_durable_write_starts_each_chunk_and_waits_for_the_one_before() {
    let dir = Scratch::new("behind-chunks");
    let target = dir.join("sessions.json");
    let fs = Arc::new(Behind::default());
    // Five whole chunks and part of a sixth.
    let contents = write_in_pieces(
        fs.clone(),
        Durability::Durable,
        4096,
        &target,
        5 * 4096 + 100,
    )
    .unwrap();
    assert_eq!(fs::read(&target).unwrap(), contents);
    assert_eq!(
        fs.calls(),
        [
            (0, 4096, false),
            (4096, 4096, false),
            (0, 4096, true),
            (8192, 4096, false),
            (4096, 4096, true),
            (12288, 4096, false),
            (8192, 4096, true),
            (16384, 4096, false),
            (12288, 4096, true),
        ]
    );
}

#[test]
fn one_large_piece_is_written_back_chunk_by_chunk_too() {
    let dir = Scratch::new("behind-one-piece");
    let target = dir.join("sessions.json");
    let fs = Arc::new(Behind::default());
    let contents = vec![b'x'; 3 * 4096];
    let mut writer = AtomicWriter::new();
    writer.file_system(fs.clone()).write_behind(4096);
    writer.write(&target, &contents).unwrap();
    assert_eq!(fs::read(&target).unwrap(), contents);
    assert_eq!(
        fs.calls(),
        [
            (0, 4096, false),
            (4096, 4096, false),
            (0, 4096, true),
            (8192, 4096, false),
            (4096, 4096, true),
        ]
    );
}

#[test]
fn atomic_only_writes_small_files_and_a_zero_chunk_never_write_back() {
    let dir = Scratch::new("behind-none");
    let cases = [
        ("atomic only", Durability::AtomicOnly, 4096, 10 * 4096),
        ("under one chunk", Durability::Durable, 4096, 4095),
        ("turned off", Durability::Durable, 0, 10 * 4096),
    ];
    for (what, durability, chunk, len) in cases {
        let target = dir.join("sessions.json");
        let fs = Arc::new(Behind::default());
        let contents = write_in_pieces(fs.clone(), durability, chunk, &target, len).unwrap();
        assert_eq!(fs::read(&target).unwrap(), contents, "{what}");
        assert_eq!(fs.calls(), [], "{what}");
    }
    // The default is on, and the documented size.
    assert_eq!(DEFAULT_WRITE_BEHIND, 2 << 20);
    let target = dir.join("default.json");
    let fs = Arc::new(Behind::default());
    let mut writer = AtomicWriter::new();
    writer.file_system(fs.clone());
    writer.write(&target, &vec![b'y'; 5 << 20]).unwrap();
    assert_eq!(
        fs.calls(),
        [
            (0, 2 << 20, false),
            (2 << 20, 2 << 20, false),
            (0, 2 << 20, true),
        ]
    );
}

#[test]
fn a_writeback_error_fails_the_write_and_keeps_the_target() {
    let dir = Scratch::new("behind-eio");
    let target = dir.join("sessions.json");
    let old = b"old contents".to_vec();
    // The 3rd call is the first wait: the error a writeback of chunk 0 left.
    for (nth, errno) in [(1, 5), (3, 5), (5, 28)] {
        fs::write(&target, &old).unwrap();
        let fs = Arc::new(Behind::failing(nth, errno));
        let err = write_in_pieces(fs.clone(), Durability::Durable, 4096, &target, 5 * 4096)
            .expect_err("a writeback error must fail the write");
        let what = format!("call {nth}, errno {errno}: {err}");
        assert_eq!(err.step(), Some(Step::Write), "{what}");
        assert_eq!(
            err.io_error().unwrap().raw_os_error(),
            Some(errno),
            "{what}"
        );
        assert_eq!(
            fs.calls().len(),
            nth,
            "no call after the failed one: {what}"
        );
        assert_eq!(fs::read(&target).unwrap(), old, "{what}");
        assert_eq!(dir.names(), ["sessions.json"], "no temp file left: {what}");
    }
}

#[test]
fn a_file_system_that_refuses_the_call_gets_the_whole_file_synced_at_the_end() {
    let dir = Scratch::new("behind-refused");
    let target = dir.join("sessions.json");
    // ENOSYS, EOPNOTSUPP and EINVAL: the call cannot be made here.
    for errno in [38, 95, 22] {
        let fs = Arc::new(Behind::failing(1, errno));
        let contents =
            write_in_pieces(fs.clone(), Durability::Durable, 4096, &target, 5 * 4096).unwrap();
        assert_eq!(fs::read(&target).unwrap(), contents, "errno {errno}");
        assert_eq!(fs.calls(), [(0, 4096, false)], "errno {errno}");
    }
}

/// The real call, on whatever file system the scratch directory is on: the write is whole.
#[test]
fn write_behind_with_the_real_call_writes_the_whole_file() {
    let dir = Scratch::new("behind-real");
    let target = dir.join("big.json");
    let contents: Vec<u8> = (0..(3 << 20) + 17).map(|i| (i % 253) as u8).collect();
    let mut writer = AtomicWriter::new();
    writer.write_behind(64 << 10);
    writer
        .prepare_with(&target, |out| {
            contents
                .chunks(10_000)
                .try_for_each(|piece| out.write_all(piece))
        })
        .unwrap()
        .commit()
        .unwrap();
    assert_eq!(fs::read(&target).unwrap(), contents);
}
