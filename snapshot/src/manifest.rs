//! A snapshot's manifest: every non-zero block index → block key, plus what restoring and
//! copying need (volume size, ids, parent, times). Each manifest is complete on its own: a
//! snapshot restores from its manifest alone, whatever happened to its parent.
//!
//! # Format (`manifests/<snap-id>`, integers little-endian)
//! ```text
//! offset size field
//!      0    8 magic "EBSSNAP\x01"
//!      8    2 version (3; 2, still written for snapshots that are not encrypted so that
//!             older readers take them, has no KMS key string; 1 no owner string either)
//!     10    2 reserved (0)
//!     12    4 block size (524288)
//!     16    8 volume size in bytes
//!     24    8 start time, ms since the Unix epoch (the point in time)
//!     32    8 completion time, ms since the Unix epoch
//!     40    8 number of entries N
//!     48    … five strings, each a u8 length then UTF-8: snapshot id, volume id, parent
//!             snapshot id (length 0: none), owner account id (length 0: unrecorded), the KMS
//!             key ARN its blocks are sealed under (length 0: not encrypted)
//!      …  40N entries in ascending block index: u64 block index, 32-byte SHA-256 key
//!      …    4 CRC-32 (IEEE) of every byte before it
//! ```

use std::collections::BTreeMap;

use crate::block::{BLOCK_SIZE, BlockKey};

const MAGIC: [u8; 8] = *b"EBSSNAP\x01";
const VERSION: u16 = 3;
/// Manifests written before encryption: four strings.
const VERSION_2: u16 = 2;
/// Manifests written before owners were recorded: three strings.
const VERSION_1: u16 = 1;
const FIXED_LEN: usize = 48;
const ENTRY_LEN: usize = 40;

/// A snapshot's block map and identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// `snap-…`.
    pub snapshot_id: String,
    /// The volume it was taken of (for copies: of the source).
    pub volume_id: String,
    /// The snapshot whose unchanged blocks this one references, if incremental.
    pub parent_id: Option<String>,
    /// The AWS account that owns the snapshot; empty when unrecorded (written by a version
    /// without accounts, whose snapshots all belonged to account `000000000000`). A region
    /// copying from another's store checks it, not having that region's catalog.
    pub owner_id: String,
    /// The KMS key (ARN) whose [`crate::block::BlockSeal`] its blocks are stored under; `None`
    /// for a snapshot that is not encrypted.
    pub kms_key_id: Option<String>,
    /// Volume size in bytes.
    pub volume_size: u64,
    /// The point in time, ms since the epoch.
    pub start_ms: u64,
    /// When the snapshot completed, ms since the epoch.
    pub complete_ms: u64,
    /// Non-zero blocks: index → key. Indexes missing here read as zeros.
    pub blocks: BTreeMap<u64, BlockKey>,
}

/// Why bytes are not a valid manifest.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    /// Shorter than its contents.
    #[error("truncated manifest")]
    Truncated,
    /// Not a manifest.
    #[error("bad manifest magic")]
    BadMagic,
    /// Written by a newer version.
    #[error("unsupported manifest version {0}")]
    UnsupportedVersion(u16),
    /// A block size this build does not use.
    #[error("manifest block size {0} is not 524288")]
    BlockSize(u32),
    /// The checksum does not match.
    #[error("manifest checksum mismatch")]
    Checksum,
    /// An id is not UTF-8, or entries are out of order or past the volume's end.
    #[error("malformed manifest: {0}")]
    Malformed(&'static str),
}

impl Manifest {
    /// Number of blocks a volume of this size has.
    pub fn block_count(&self) -> u64 {
        self.volume_size.div_ceil(BLOCK_SIZE)
    }

    /// Serializes to the stored format.
    pub fn encode(&self) -> Vec<u8> {
        let mut ids = vec![
            self.snapshot_id.as_str(),
            self.volume_id.as_str(),
            self.parent_id.as_deref().unwrap_or(""),
            self.owner_id.as_str(),
        ];
        let version = match self.kms_key_id.as_deref() {
            Some(k) => {
                ids.push(k);
                VERSION
            }
            None => VERSION_2,
        };
        let mut out = Vec::with_capacity(
            FIXED_LEN
                + ids.len()
                + ids.iter().map(|s| s.len()).sum::<usize>()
                + ENTRY_LEN * self.blocks.len()
                + 4,
        );
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&version.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&(BLOCK_SIZE as u32).to_le_bytes());
        out.extend_from_slice(&self.volume_size.to_le_bytes());
        out.extend_from_slice(&self.start_ms.to_le_bytes());
        out.extend_from_slice(&self.complete_ms.to_le_bytes());
        out.extend_from_slice(&(self.blocks.len() as u64).to_le_bytes());
        for s in ids {
            // Ids are short ASCII (`snap-` + 17 hex); longer ones are cut, never mis-framed.
            let b = &s.as_bytes()[..s.len().min(255)];
            out.push(b.len() as u8);
            out.extend_from_slice(b);
        }
        for (idx, key) in &self.blocks {
            out.extend_from_slice(&idx.to_le_bytes());
            out.extend_from_slice(&key.0);
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses and checks the stored format.
    pub fn decode(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        if bytes.len() < FIXED_LEN + 3 + 4 {
            return Err(ManifestError::Truncated);
        }
        if bytes[..8] != MAGIC {
            return Err(ManifestError::BadMagic);
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32fast::hash(body) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
            return Err(ManifestError::Checksum);
        }
        let mut r = Reader { b: body, at: 8 };
        let version = r.u16()?;
        if version != VERSION && version != VERSION_2 && version != VERSION_1 {
            return Err(ManifestError::UnsupportedVersion(version));
        }
        r.u16()?;
        let block_size = r.u32()?;
        if u64::from(block_size) != BLOCK_SIZE {
            return Err(ManifestError::BlockSize(block_size));
        }
        let volume_size = r.u64()?;
        let start_ms = r.u64()?;
        let complete_ms = r.u64()?;
        let n = r.u64()?;
        let snapshot_id = r.string()?;
        let volume_id = r.string()?;
        let parent = r.string()?;
        let owner_id = if version == VERSION_1 {
            String::new()
        } else {
            r.string()?
        };
        let kms_key = if version == VERSION {
            // Version 3 is written only for an encrypted snapshot: one form per manifest.
            let k = r.string()?;
            if k.is_empty() {
                return Err(ManifestError::Malformed("version 3 names no KMS key"));
            }
            k
        } else {
            String::new()
        };
        let entries = usize::try_from(n).map_err(|_| ManifestError::Truncated)?;
        if r.b.len() - r.at
            != entries
                .checked_mul(ENTRY_LEN)
                .ok_or(ManifestError::Truncated)?
        {
            return Err(ManifestError::Truncated);
        }
        let nblocks = volume_size.div_ceil(BLOCK_SIZE);
        let mut blocks = BTreeMap::new();
        let mut last = None;
        for _ in 0..entries {
            let idx = r.u64()?;
            let key = BlockKey(
                r.take(32)?
                    .try_into()
                    .map_err(|_| ManifestError::Truncated)?,
            );
            if last.is_some_and(|l| idx <= l) {
                return Err(ManifestError::Malformed("block indexes not ascending"));
            }
            if idx >= nblocks {
                return Err(ManifestError::Malformed(
                    "block index past the volume's end",
                ));
            }
            last = Some(idx);
            blocks.insert(idx, key);
        }
        Ok(Manifest {
            snapshot_id,
            volume_id,
            parent_id: (!parent.is_empty()).then_some(parent),
            owner_id,
            kms_key_id: (!kms_key.is_empty()).then_some(kms_key),
            volume_size,
            start_ms,
            complete_ms,
            blocks,
        })
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ManifestError> {
        let s = self
            .b
            .get(self.at..self.at + n)
            .ok_or(ManifestError::Truncated)?;
        self.at += n;
        Ok(s)
    }

    fn u16(&mut self) -> Result<u16, ManifestError> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }

    fn u32(&mut self) -> Result<u32, ManifestError> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }

    fn u64(&mut self) -> Result<u64, ManifestError> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }

    fn string(&mut self) -> Result<String, ManifestError> {
        let n = self.take(1)?[0] as usize;
        let s = self.take(n)?;
        String::from_utf8(s.to_vec()).map_err(|_| ManifestError::Malformed("id is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            snapshot_id: "snap-0123456789abcdef0".into(),
            volume_id: "vol-0123456789abcdef0".into(),
            parent_id: Some("snap-00000000000000001".into()),
            owner_id: "111122223333".into(),
            kms_key_id: None,
            volume_size: 1 << 30,
            start_ms: 1_700_000_000_000,
            complete_ms: 1_700_000_000_500,
            blocks: [
                (0, BlockKey::of(b"a")),
                (7, BlockKey::of(b"b")),
                (2047, BlockKey::of(b"c")),
            ]
            .into_iter()
            .collect(),
        }
    }

    #[test]
    fn round_trips() {
        let m = sample();
        assert_eq!(Manifest::decode(&m.encode()), Ok(m.clone()));
        let root = Manifest {
            parent_id: None,
            blocks: BTreeMap::new(),
            ..m
        };
        assert_eq!(Manifest::decode(&root.encode()), Ok(root));
    }

    /// An older manifest: the encoding of `m` (no KMS key: version 2) with its last
    /// `strings_dropped` (empty) strings removed, as `version`.
    fn older(m: &Manifest, version: u16, strings_dropped: usize) -> Vec<u8> {
        let v3 = m.encode();
        let mut old = v3[..v3.len() - 4].to_vec();
        old[8..10].copy_from_slice(&version.to_le_bytes());
        let last_string = old.len() - ENTRY_LEN * m.blocks.len() - 1;
        for i in 0..strings_dropped {
            assert_eq!(old.remove(last_string - i), 0, "an empty string");
        }
        let crc = crc32fast::hash(&old);
        old.extend_from_slice(&crc.to_le_bytes());
        old
    }

    #[test]
    fn version_1_and_2_manifests_decode() {
        // Version 1: no owner, no KMS key; version 2: no KMS key.
        let m = Manifest {
            owner_id: String::new(),
            kms_key_id: None,
            ..sample()
        };
        assert_eq!(Manifest::decode(&older(&m, VERSION_1, 1)), Ok(m.clone()));
        assert_eq!(Manifest::decode(&older(&m, VERSION_2, 0)), Ok(m));
        // Plain snapshots are written as version 2 (older readers take them), encrypted ones
        // as version 3.
        let plain = Manifest {
            kms_key_id: None,
            ..sample()
        };
        assert_eq!(plain.encode()[8..10], VERSION_2.to_le_bytes());
        let sealed = Manifest {
            kms_key_id: Some("arn:aws:kms:us-east-1:111122223333:key/k".into()),
            ..sample()
        };
        assert_eq!(sealed.encode()[8..10], VERSION.to_le_bytes());
        assert_eq!(Manifest::decode(&sealed.encode()), Ok(sealed));
        // A version 3 manifest without a key is not one this code writes.
        let mut v3 = older(&plain, VERSION, 0);
        let at = v3.len() - 4 - ENTRY_LEN * plain.blocks.len();
        v3.insert(at, 0);
        let body = v3.len() - 4;
        let crc = crc32fast::hash(&v3[..body]);
        v3[body..].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            Manifest::decode(&v3),
            Err(ManifestError::Malformed(_))
        ));
    }

    #[test]
    fn any_flipped_byte_is_detected() {
        let bytes = sample().encode();
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 1;
            assert!(
                Manifest::decode(&bad).is_err(),
                "flip at {at} went unnoticed"
            );
        }
        assert!(Manifest::decode(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn entries_past_the_end_are_refused() {
        let mut m = sample();
        m.blocks.insert(2048, BlockKey::of(b"d"));
        assert_eq!(
            Manifest::decode(&m.encode()),
            Err(ManifestError::Malformed(
                "block index past the volume's end"
            ))
        );
    }
}
