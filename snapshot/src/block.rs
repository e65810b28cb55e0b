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
//!     10    2 codec: 0 raw, 1 zstd frame; + 16 when sealed (encrypted snapshots)
//!     12    4 plaintext length (524288)
//!     16    4 payload length
//!     20    4 CRC-32 (IEEE) of the payload
//!     24    4 CRC-32 (IEEE) of bytes 0..24
//!     28    … payload
//! ```
//! The payload is raw when zstd would not make it smaller (random data). Reading checks both
//! CRCs, decompresses, and checks the plaintext's SHA-256 against the key it was fetched by:
//! corruption anywhere is an error, never wrong data.
//!
//! # Encrypted snapshots
//! A snapshot of an encrypted volume stores its blocks under a [`BlockSeal`] derived from its
//! KMS key. The block's key is then an HMAC-SHA256 of the plaintext under the seal's address
//! key, so deduplication works within one KMS key and equal plaintext under two keys has two
//! unrelated addresses. The payload (compressed first: ciphertext does not compress) is sealed
//! with AES-256-GCM: a random 12-byte nonce, the ciphertext, the 16-byte tag, with the block's
//! key as associated data, so a store cannot answer one address with another block.

use std::cell::RefCell;
use std::fmt;

use sha2::{Digest, Sha256};

/// Snapshot block size: the EBS direct-API block (and the changed-block tracking unit).
pub const BLOCK_SIZE: u64 = 512 * 1024;

const MAGIC: [u8; 8] = *b"EBSBLK\0\x01";
const VERSION: u16 = 1;
const CODEC_RAW: u16 = 0;
const CODEC_ZSTD: u16 = 1;
/// Added to the codec of a sealed payload.
const CODEC_SEALED: u16 = 16;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
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
    /// The block is encrypted and was read without its snapshot's key.
    #[error("block is encrypted and no key was given to read it")]
    Sealed,
    /// The block is plain where an encrypted snapshot's block was expected.
    #[error("block is not encrypted, but its snapshot is")]
    NotSealed,
    /// The sealed payload does not authenticate under the key it was read with.
    #[error("block does not decrypt under its snapshot's key")]
    Unseal,
}

/// The keys an encrypted snapshot's blocks are addressed and sealed with, derived from one
/// secret of its KMS key: every snapshot under that KMS key shares them (and deduplicates).
pub struct BlockSeal {
    key_id: String,
    address: ring::hmac::Key,
    seal: ring::aead::LessSafeKey,
}

impl fmt::Debug for BlockSeal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockSeal")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl BlockSeal {
    /// The seal of KMS key `key_id`, from its 32-byte `secret` (HKDF-SHA256 expands it into an
    /// address key and a sealing key).
    pub fn new(key_id: &str, secret: &[u8; 32]) -> BlockSeal {
        use ring::{aead, hkdf, hmac};
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"ebs snapshot blocks v1").extract(secret);
        let address = prk
            .expand(&[b"address"], hmac::HMAC_SHA256)
            .map(hmac::Key::from)
            .expect("HKDF-SHA256 yields 32 bytes");
        let seal = prk
            .expand(&[b"seal"], &aead::AES_256_GCM)
            .map(aead::UnboundKey::from)
            .map(aead::LessSafeKey::new)
            .expect("HKDF-SHA256 yields 32 bytes");
        BlockSeal {
            key_id: key_id.to_string(),
            address,
            seal,
        }
    }

    /// The KMS key this seal belongs to.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }
}

/// The key of `plaintext`: its SHA-256, or its HMAC under `seal` for an encrypted snapshot.
pub fn key_of(seal: Option<&BlockSeal>, plaintext: &[u8]) -> BlockKey {
    match seal {
        None => BlockKey::of(plaintext),
        Some(s) => {
            let tag = ring::hmac::sign(&s.address, plaintext);
            BlockKey(tag.as_ref().try_into().expect("HMAC-SHA256 is 32 bytes"))
        }
    }
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
    encode_with(None, &BlockKey([0; 32]), plaintext)
}

/// Encodes `plaintext`, whose key is `key` ([`key_of`]), sealed under `seal` if given.
pub fn encode_with(seal: Option<&BlockSeal>, key: &BlockKey, plaintext: &[u8]) -> Vec<u8> {
    let (mut codec, mut payload) = match compress(plaintext) {
        Some(z) if z.len() < plaintext.len() => (CODEC_ZSTD, z),
        _ => (CODEC_RAW, plaintext.to_vec()),
    };
    if let Some(s) = seal {
        use ring::aead::{Aad, Nonce};
        use ring::rand::SecureRandom as _;
        let mut nonce = [0u8; NONCE_LEN];
        ring::rand::SystemRandom::new()
            .fill(&mut nonce)
            .expect("the system's random source works");
        s.seal
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(key.0),
                &mut payload,
            )
            .expect("a 512 KiB payload is within AES-GCM's limit");
        payload.splice(0..0, nonce);
        codec += CODEC_SEALED;
    }
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
    decode_with(None, key, stored)
}

/// Decodes a block of a snapshot sealed under `seal` (`None`: a plain snapshot), checking every
/// checksum, the seal's tag and the key.
pub fn decode_with(
    seal: Option<&BlockSeal>,
    key: &BlockKey,
    stored: &[u8],
) -> Result<Vec<u8>, BlockError> {
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
    let mut opened;
    let (codec, payload) = match (codec >= CODEC_SEALED, seal) {
        (false, None) => (codec, payload),
        (false, Some(_)) => return Err(BlockError::NotSealed),
        (true, None) => return Err(BlockError::Sealed),
        (true, Some(s)) => {
            use ring::aead::{Aad, Nonce};
            if payload.len() < NONCE_LEN + TAG_LEN {
                return Err(BlockError::Unseal);
            }
            let nonce: [u8; NONCE_LEN] = payload[..NONCE_LEN].try_into().expect("nonce length");
            opened = payload[NONCE_LEN..].to_vec();
            let n = s
                .seal
                .open_in_place(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(key.0),
                    &mut opened,
                )
                .map_err(|_| BlockError::Unseal)?
                .len();
            opened.truncate(n);
            (codec - CODEC_SEALED, &opened[..])
        }
    };
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
    if key_of(seal, &plain) != *key {
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
    fn sealed_blocks_round_trip_only_under_their_key() {
        let a = BlockSeal::new("key-a", &[1; 32]);
        let b = BlockSeal::new("key-b", &[2; 32]);
        let text: Vec<u8> = (0..BLOCK_SIZE).map(|i| (i % 251) as u8).collect();
        for plain in [text, random_block()] {
            let key = key_of(Some(&a), &plain);
            // Addresses depend on the KMS key: equal plaintext under two keys is unrelated.
            assert_ne!(key, BlockKey::of(&plain));
            assert_ne!(key, key_of(Some(&b), &plain));
            let stored = encode_with(Some(&a), &key, &plain);
            assert_eq!(
                decode_with(Some(&a), &key, &stored).as_deref(),
                Ok(&plain[..])
            );
            // No 16-byte run of the plaintext is stored.
            for run in plain.chunks(16).step_by(997) {
                assert!(!stored.windows(16).any(|w| w == run));
            }
            assert_eq!(
                decode_with(Some(&b), &key, &stored),
                Err(BlockError::Unseal)
            );
            assert_eq!(decode(&key, &stored), Err(BlockError::Sealed));
            // Fetched under another address (the tag binds it), or tampered with.
            let other = key_of(Some(&a), b"other");
            assert_eq!(
                decode_with(Some(&a), &other, &stored),
                Err(BlockError::Unseal)
            );
        }
        let plain = vec![3u8; BLOCK_SIZE as usize];
        let stored = encode(&plain);
        assert_eq!(
            decode_with(Some(&a), &BlockKey::of(&plain), &stored),
            Err(BlockError::NotSealed)
        );
        assert!(!format!("{a:?}").contains("seal:"));
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
