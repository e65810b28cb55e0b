//! The stored form of one 512 KiB snapshot block, and its content key.
//!
//! A block is keyed by the SHA-256 of its plaintext, so equal blocks are stored once across all
//! snapshots of a store, and a key names exactly one content. All-zero blocks are never stored.
//!
//! # Format (`blocks/<2 hex>/<64 hex>`, integers little-endian)
//! ```text
//! offset size field
//!      0    8 magic "EBSBLK\0\x01"
//!      8    2 version (1)
//!     10    2 codec: 0 raw, 1 zstd frame
//!     12    4 plaintext length (524288)
//!     16    4 payload length
//!     20    4 CRC-32 (IEEE) of the payload
//!     24    4 CRC-32 (IEEE) of bytes 0..24
//!     28    … payload
//! ```
//! The payload is raw when zstd would not make it smaller (random data). Reading checks both
//! CRCs, decompresses, and checks the plaintext's SHA-256 against the key it was fetched by:
//! corruption anywhere is an error, never wrong data.

use std::cell::RefCell;
use std::fmt;

use sha2::{Digest, Sha256};

/// Snapshot block size: the EBS direct-API block (and the changed-block tracking unit).
pub const BLOCK_SIZE: u64 = 512 * 1024;

const MAGIC: [u8; 8] = *b"EBSBLK\0\x01";
const VERSION: u16 = 1;
const CODEC_RAW: u16 = 0;
const CODEC_ZSTD: u16 = 1;
const HEADER_LEN: usize = 28;
/// zstd level: the same as `zstd -3`, the command-line default.
pub const ZSTD_LEVEL: i32 = 3;

/// SHA-256 of a block's plaintext.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockKey(pub [u8; 32]);

impl BlockKey {
    /// The key of `plaintext`.
    pub fn of(plaintext: &[u8]) -> BlockKey {
        BlockKey(Sha256::digest(plaintext).into())
    }

    /// Lowercase hex, as used in object names.
    pub fn to_hex(&self) -> String {
        use fmt::Write as _;
        let mut s = String::with_capacity(64);
        for b in self.0 {
            let _ = write!(s, "{b:02x}");
        }
        s
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Option<BlockKey> {
        if s.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(BlockKey(out))
    }
}

impl fmt::Debug for BlockKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlockKey({})", &self.to_hex()[..16])
    }
}

impl fmt::Display for BlockKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Why stored bytes are not a valid block.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BlockError {
    /// Shorter than its header says.
    #[error("truncated block object ({0} bytes)")]
    Truncated(usize),
    /// Not a block object.
    #[error("bad block magic")]
    BadMagic,
    /// Written by a newer version.
    #[error("unsupported block version {0}")]
    UnsupportedVersion(u16),
    /// Unknown payload codec.
    #[error("unknown block codec {0}")]
    UnknownCodec(u16),
    /// The header does not match its checksum.
    #[error("block header checksum mismatch")]
    HeaderChecksum,
    /// The payload does not match its checksum.
    #[error("block payload checksum mismatch (CRC-32 {stored:08x} stored, {actual:08x} computed)")]
    PayloadChecksum {
        /// CRC in the header.
        stored: u32,
        /// CRC of the payload read.
        actual: u32,
    },
    /// zstd refused the payload.
    #[error("block payload does not decompress: {0}")]
    Decompress(String),
    /// The plaintext has the wrong length.
    #[error("block plaintext is {actual} bytes, header says {expected}")]
    Length {
        /// From the header.
        expected: usize,
        /// After decoding.
        actual: usize,
    },
    /// The plaintext's SHA-256 is not the key it was stored under.
    #[error("block content does not match its SHA-256 key")]
    KeyMismatch,
}

/// Whether every byte of `buf` is zero.
pub fn is_zero(buf: &[u8]) -> bool {
    let (head, words, tail) = {
        // SAFETY: any bit pattern is a valid u64; align_to only reinterprets the aligned middle.
        unsafe { buf.align_to::<u64>() }
    };
    head.iter().all(|&b| b == 0) && words.iter().all(|&w| w == 0) && tail.iter().all(|&b| b == 0)
}

thread_local! {
    // A compression context per thread: creating one costs more than compressing 512 KiB of
    // zeros, and blocks are encoded on a handful of blocking threads.
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
}

fn compress(plaintext: &[u8]) -> Option<Vec<u8>> {
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = zstd::bulk::Compressor::new(ZSTD_LEVEL).ok();
        }
        c.as_mut()?.compress(plaintext).ok()
    })
}

/// Encodes `plaintext` into its stored form (zstd unless that does not pay).
pub fn encode(plaintext: &[u8]) -> Vec<u8> {
    let (codec, payload) = match compress(plaintext) {
        Some(z) if z.len() < plaintext.len() => (CODEC_ZSTD, z),
        _ => (CODEC_RAW, plaintext.to_vec()),
    };
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&codec.to_le_bytes());
    out.extend_from_slice(&(plaintext.len() as u32).to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    let header_crc = crc32fast::hash(&out);
    out.extend_from_slice(&header_crc.to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Decodes a stored block fetched under `key`, checking every checksum and the key.
pub fn decode(key: &BlockKey, stored: &[u8]) -> Result<Vec<u8>, BlockError> {
    if stored.len() < HEADER_LEN {
        return Err(BlockError::Truncated(stored.len()));
    }
    if stored[..8] != MAGIC {
        return Err(BlockError::BadMagic);
    }
    if crc32fast::hash(&stored[..24]) != u32_at(stored, 24) {
        return Err(BlockError::HeaderChecksum);
    }
    let version = u16_at(stored, 8);
    if version != VERSION {
        return Err(BlockError::UnsupportedVersion(version));
    }
    let codec = u16_at(stored, 10);
    let plain_len = u32_at(stored, 12) as usize;
    // Never trust a size from the store for an allocation: blocks are all one size.
    if plain_len as u64 != BLOCK_SIZE {
        return Err(BlockError::Length {
            expected: BLOCK_SIZE as usize,
            actual: plain_len,
        });
    }
    let payload_len = u32_at(stored, 16) as usize;
    let payload = stored
        .get(HEADER_LEN..HEADER_LEN + payload_len)
        .ok_or(BlockError::Truncated(stored.len()))?;
    let actual = crc32fast::hash(payload);
    let expected_crc = u32_at(stored, 20);
    if actual != expected_crc {
        return Err(BlockError::PayloadChecksum {
            stored: expected_crc,
            actual,
        });
    }
    let plain = match codec {
        CODEC_RAW => payload.to_vec(),
        CODEC_ZSTD => zstd::bulk::decompress(payload, plain_len)
            .map_err(|e| BlockError::Decompress(e.to_string()))?,
        c => return Err(BlockError::UnknownCodec(c)),
    };
    if plain.len() != plain_len {
        return Err(BlockError::Length {
            expected: plain_len,
            actual: plain.len(),
        });
    }
    if BlockKey::of(&plain) != *key {
        return Err(BlockError::KeyMismatch);
    }
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngCore as _;

    fn random_block() -> Vec<u8> {
        let mut b = vec![0u8; BLOCK_SIZE as usize];
        rand::rng().fill_bytes(&mut b);
        b
    }

    #[test]
    fn round_trips_compressible_and_random_data() {
        let text: Vec<u8> = (0..BLOCK_SIZE).map(|i| (i % 251) as u8).collect();
        let random = random_block();
        for plain in [text, random] {
            let key = BlockKey::of(&plain);
            let stored = encode(&plain);
            assert_eq!(decode(&key, &stored).as_deref(), Ok(&plain[..]));
        }
    }

    #[test]
    fn compressible_data_is_stored_compressed_and_random_raw() {
        let text = vec![7u8; BLOCK_SIZE as usize];
        assert!(encode(&text).len() < 4096);
        let random = random_block();
        assert_eq!(encode(&random).len(), random.len() + HEADER_LEN);
    }

    #[test]
    fn every_corruption_is_detected() {
        let plain: Vec<u8> = (0..BLOCK_SIZE).map(|i| (i / 7) as u8).collect();
        let key = BlockKey::of(&plain);
        let stored = encode(&plain);
        for at in [0, 9, 13, 21, 25, HEADER_LEN, stored.len() - 1] {
            let mut bad = stored.clone();
            bad[at] ^= 0x40;
            assert!(decode(&key, &bad).is_err(), "flip at {at} went unnoticed");
        }
        assert_eq!(
            decode(&key, &stored[..stored.len() - 1]),
            Err(BlockError::Truncated(stored.len() - 1))
        );
        let other = BlockKey::of(b"something else");
        assert_eq!(decode(&other, &stored), Err(BlockError::KeyMismatch));
    }

    #[test]
    fn keys_print_and_parse_as_hex() {
        let k = BlockKey::of(b"abc");
        assert_eq!(
            k.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(BlockKey::from_hex(&k.to_hex()), Some(k));
        assert_eq!(BlockKey::from_hex("zz"), None);
    }

    #[test]
    fn zero_detection_covers_unaligned_edges() {
        let mut b = vec![0u8; 4099];
        assert!(is_zero(&b));
        assert!(is_zero(&b[1..]));
        b[4098] = 1;
        assert!(!is_zero(&b[1..]));
        b[4098] = 0;
        b[0] = 1;
        assert!(!is_zero(&b));
        assert!(is_zero(&b[1..]));
    }
}
