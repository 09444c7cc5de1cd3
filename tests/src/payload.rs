//! Recognisable payloads and the checkers that tell a whole payload from a damaged one.
//!
//! Two families:
//!
//! - **Indexed** payloads (kill -9 torture): a fixed set of sizes from 0 B to 1 MiB whose bytes
//!   are derived from the index, so a file can be matched byte for byte against the set.
//! - **Sequenced** payloads (power-loss images): a header with a magic, a sequence number, the
//!   body length and an FNV-1a 64 checksum, then a body derived from the sequence number. A file
//!   read back from a crash image either parses whole or is reported as corrupt.

use std::fmt;

use crate::rng::{SplitMix64, mix64};

/// The sizes of the indexed payloads: empty, one byte, small, one page, large, very large.
pub const INDEXED_SIZES: [usize; 6] = [0, 1, 100, 4096, 64 * 1024, 1024 * 1024];

/// What the kill -9 harness writes before any child starts; its length is not in
/// [`INDEXED_SIZES`], so it can never be mistaken for a written payload.
pub const INITIAL_PAYLOAD: &[u8] = b"sessionkit-torture: initial contents, before any write\n";

/// Fills `out` with bytes derived from `key`, eight at a time.
fn derived_bytes(key: u64, out: &mut [u8]) {
    for (chunk_index, chunk) in out.chunks_mut(8).enumerate() {
        let word = mix64(key ^ mix64(chunk_index as u64)).to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
}

/// The indexed payload number `index` (an index into [`INDEXED_SIZES`]).
pub fn indexed_payload(index: usize) -> Vec<u8> {
    let mut bytes = vec![0; INDEXED_SIZES[index]];
    // The index goes into the high bits so that no two payloads share a byte stream.
    derived_bytes((index as u64 + 1) << 56, &mut bytes);
    bytes
}

/// Which known payload a file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Known {
    /// [`INITIAL_PAYLOAD`].
    Initial,
    /// The indexed payload with this index.
    Indexed(usize),
}

impl fmt::Display for Known {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Known::Initial => write!(f, "the initial payload"),
            Known::Indexed(i) => write!(f, "payload #{i} ({} B)", INDEXED_SIZES[*i]),
        }
    }
}

/// All indexed payloads, built once, with a matcher for file contents.
#[derive(Clone)]
pub struct IndexedPayloads {
    payloads: Vec<Vec<u8>>,
}

impl fmt::Debug for IndexedPayloads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IndexedPayloads")
            .field("sizes", &INDEXED_SIZES)
            .finish()
    }
}

impl Default for IndexedPayloads {
    fn default() -> Self {
        IndexedPayloads::new()
    }
}

impl IndexedPayloads {
    /// Builds every payload of [`INDEXED_SIZES`].
    pub fn new() -> IndexedPayloads {
        IndexedPayloads {
            payloads: (0..INDEXED_SIZES.len()).map(indexed_payload).collect(),
        }
    }

    /// The bytes of a known payload.
    pub fn bytes(&self, known: Known) -> &[u8] {
        match known {
            Known::Initial => INITIAL_PAYLOAD,
            Known::Indexed(i) => &self.payloads[i],
        }
    }

    /// The payload `contents` is byte for byte, if any.
    pub fn identify(&self, contents: &[u8]) -> Option<Known> {
        if contents == INITIAL_PAYLOAD {
            return Some(Known::Initial);
        }
        self.payloads
            .iter()
            .position(|p| p.as_slice() == contents)
            .map(Known::Indexed)
    }
}

/// The order in which a kill -9 child writes indexed payloads: the parent replays it from the
/// same seed to know which payloads a killed child may have left.
#[derive(Clone, Debug)]
pub struct IndexedSequence {
    rng: SplitMix64,
}

impl IndexedSequence {
    /// The sequence of a child started with `seed`.
    pub fn new(seed: u64) -> IndexedSequence {
        IndexedSequence {
            rng: SplitMix64::new(seed),
        }
    }
}

impl Iterator for IndexedSequence {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        Some(self.rng.below(INDEXED_SIZES.len() as u64) as usize)
    }
}

/// The magic that starts every sequenced payload.
pub const SEQ_MAGIC: [u8; 8] = *b"SKTORT01";

/// Magic, sequence number, body length and checksum, eight bytes each.
pub const SEQ_HEADER_LEN: usize = 32;

/// The smallest body a power-loss child writes.
pub const MIN_BODY: usize = 100;

/// The largest body a power-loss child writes.
pub const MAX_BODY: usize = 64 * 1024;

/// FNV-1a 64 over the concatenation of `parts`.
pub fn fnv1a64(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &byte in *part {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

/// The checksum of a sequenced payload; it covers the sequence number and length too, so a
/// damaged header cannot pass for another write.
fn sequenced_checksum(seq: u64, body: &[u8]) -> u64 {
    fnv1a64(&[&seq.to_le_bytes(), &(body.len() as u64).to_le_bytes(), body])
}

/// The sequenced payload for write `seq` with a body of `body_len` bytes.
pub fn sequenced_payload(seq: u64, body_len: usize) -> Vec<u8> {
    let mut body = vec![0; body_len];
    derived_bytes(mix64(seq ^ 0x5eed_0fb0_d1e5_0001), &mut body);
    let mut out = Vec::with_capacity(SEQ_HEADER_LEN + body_len);
    out.extend_from_slice(&SEQ_MAGIC);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(body_len as u64).to_le_bytes());
    out.extend_from_slice(&sequenced_checksum(seq, &body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// A random body length in `MIN_BODY..=MAX_BODY`.
pub fn random_body_len(rng: &mut SplitMix64) -> usize {
    rng.range_inclusive(MIN_BODY as u64, MAX_BODY as u64) as usize
}

/// Why bytes are not a whole sequenced payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PayloadError {
    /// Shorter than the header (an empty file, for example).
    TooShort {
        /// The number of bytes found.
        len: usize,
    },
    /// The magic is wrong (a zero-filled file, for example).
    BadMagic,
    /// The header's length disagrees with the bytes that follow it.
    LengthMismatch {
        /// The length the header claims.
        header: u64,
        /// The body bytes present.
        actual: usize,
    },
    /// The checksum does not match the sequence number, length and body.
    Checksum {
        /// The checksum in the header.
        stored: u64,
        /// The checksum of what was read.
        computed: u64,
    },
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PayloadError::TooShort { len } => {
                write!(
                    f,
                    "{len} bytes, shorter than the {SEQ_HEADER_LEN}-byte header"
                )
            }
            PayloadError::BadMagic => {
                write!(f, "bad magic (zero-filled or foreign contents)")
            }
            PayloadError::LengthMismatch { header, actual } => {
                write!(f, "header says {header} body bytes, found {actual}")
            }
            PayloadError::Checksum { stored, computed } => {
                write!(
                    f,
                    "checksum {computed:016x} does not match stored {stored:016x}"
                )
            }
        }
    }
}

impl std::error::Error for PayloadError {}

/// Reads one 8-byte little-endian field of the header.
fn field(bytes: &[u8], index: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[index * 8..index * 8 + 8]);
    u64::from_le_bytes(word)
}

/// Checks that `bytes` are one whole sequenced payload and returns its sequence number.
///
/// # Errors
///
/// A [`PayloadError`] naming the first thing that is wrong.
pub fn parse_sequenced(bytes: &[u8]) -> Result<u64, PayloadError> {
    if bytes.len() < SEQ_HEADER_LEN {
        return Err(PayloadError::TooShort { len: bytes.len() });
    }
    if bytes[..8] != SEQ_MAGIC {
        return Err(PayloadError::BadMagic);
    }
    let seq = field(bytes, 1);
    let header = field(bytes, 2);
    let stored = field(bytes, 3);
    let body = &bytes[SEQ_HEADER_LEN..];
    if header != body.len() as u64 {
        return Err(PayloadError::LengthMismatch {
            header,
            actual: body.len(),
        });
    }
    let computed = sequenced_checksum(seq, body);
    if computed != stored {
        return Err(PayloadError::Checksum { stored, computed });
    }
    Ok(seq)
}
