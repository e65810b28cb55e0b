//! The key hierarchy behind EBS encryption: the operator's root key wraps every KMS key's
//! material; a KMS key wraps each volume's data key and derives its snapshots' block seal.
//!
//! ```text
//! root key (--kms-root-key-file, 32 bytes, 0600)
//!   └─ KMS key material (32 random bytes; the catalog holds it wrapped under the root key)
//!        ├─ volume data key (64 random bytes, AES-256-XTS; the catalog holds it wrapped)
//!        └─ snapshot block seal (derived: HMAC-SHA256 of the material, see snapshot::block)
//! ```
//!
//! Wrapping is AES-256-GCM (ring) with a random 96-bit nonce: `nonce ‖ ciphertext ‖ tag`,
//! base64 in the catalog, with the wrapped thing's identity as associated data so a wrapped key
//! cannot be moved to another record. Nothing here implements `Display`, and `Debug` never
//! shows a key: key material reaches neither logs nor replies.

use std::fmt;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use base64::Engine as _;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom as _, SystemRandom};
use storage_engine::SectorCipher;

/// Why a key could not be loaded or unwrapped.
#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    /// The root key file could not be read or made.
    #[error("KMS root key file {path}: {source}")]
    RootFile {
        /// The file.
        path: String,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The root key file does not hold a key.
    #[error("KMS root key file {0} must hold 32 bytes as 64 hex digits")]
    RootFormat(String),
    /// Wrapped bytes did not authenticate: the wrong root key, or a damaged record.
    #[error("a wrapped key does not unwrap under its parent key (wrong root key file?)")]
    Unwrap,
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    SystemRandom::new()
        .fill(&mut b)
        .expect("the system's random source works");
    b
}

fn aead(key: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte AES-256 key"))
}

fn seal(key: &LessSafeKey, context: &str, plain: &[u8]) -> String {
    let nonce = random::<NONCE_LEN>();
    let mut buf = plain.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(context.as_bytes()),
        &mut buf,
    )
    .expect("a short key is within AES-GCM's limit");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&buf);
    base64::engine::general_purpose::STANDARD.encode(out)
}

fn open<const N: usize>(
    key: &LessSafeKey,
    context: &str,
    wrapped: &str,
) -> Result<[u8; N], KmsError> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(wrapped)
        .map_err(|_| KmsError::Unwrap)?;
    if raw.len() < NONCE_LEN {
        return Err(KmsError::Unwrap);
    }
    let (nonce, rest) = raw.split_at(NONCE_LEN);
    let mut buf = rest.to_vec();
    let plain = key
        .open_in_place(
            Nonce::try_assume_unique_for_key(nonce).map_err(|_| KmsError::Unwrap)?,
            Aad::from(context.as_bytes()),
            &mut buf,
        )
        .map_err(|_| KmsError::Unwrap)?;
    plain.try_into().map_err(|_| KmsError::Unwrap)
}

/// The operator's root key.
pub struct RootKey(LessSafeKey);

impl fmt::Debug for RootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RootKey(redacted)")
    }
}

impl RootKey {
    /// Reads the root key at `path`, or makes one there (mode 0600, durable) if there is none.
    pub fn load_or_create(path: &Path) -> Result<RootKey, KmsError> {
        let file_err = |source| KmsError::RootFile {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let mode = std::fs::metadata(path)
                    .map_err(file_err)?
                    .permissions()
                    .mode();
                if mode & 0o077 != 0 {
                    tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "the KMS root key file is readable by others than its owner");
                }
                let hex = text.trim();
                let key: Option<[u8; 32]> = (hex.len() == 64)
                    .then(|| {
                        let mut k = [0u8; 32];
                        for (i, b) in k.iter_mut().enumerate() {
                            *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
                        }
                        Some(k)
                    })
                    .flatten();
                let key = key.ok_or_else(|| KmsError::RootFormat(path.display().to_string()))?;
                Ok(RootKey(aead(&key)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Written whole to a private temporary file, then linked into place: a crash
                // leaves either no key file or a complete one, and a key file that appeared
                // meanwhile is never replaced.
                let key = random::<32>();
                let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
                let mut tmp = path.as_os_str().to_owned();
                tmp.push(format!(".tmp.{}", std::process::id()));
                let tmp = std::path::PathBuf::from(tmp);
                let _ = std::fs::remove_file(&tmp);
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&tmp)
                    .map_err(file_err)?;
                if let Err(e) = f
                    .write_all(format!("{hex}\n").as_bytes())
                    .and_then(|()| f.sync_all())
                {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(file_err(e));
                }
                let linked = std::fs::hard_link(&tmp, path);
                let _ = std::fs::remove_file(&tmp);
                match linked {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        return RootKey::load_or_create(path);
                    }
                    Err(e) => return Err(file_err(e)),
                }
                if let Some(dir) = path.parent() {
                    // A bare file name's parent is "": the working directory.
                    let dir = if dir.as_os_str().is_empty() {
                        Path::new(".")
                    } else {
                        dir
                    };
                    std::fs::File::open(dir)
                        .and_then(|d| d.sync_all())
                        .map_err(file_err)?;
                }
                tracing::info!(path = %path.display(), "made a new KMS root key");
                Ok(RootKey(aead(&key)))
            }
            Err(e) => Err(file_err(e)),
        }
    }

    /// A root key from bytes, for tests.
    pub fn from_bytes(key: [u8; 32]) -> RootKey {
        RootKey(aead(&key))
    }

    /// New material for the KMS key `key_id`, wrapped for the catalog.
    pub fn new_key_material(&self, key_id: &str) -> String {
        seal(&self.0, &material_context(key_id), &random::<32>())
    }

    /// The material of KMS key `key_id` from its wrapped form.
    pub fn unwrap_material(&self, key_id: &str, wrapped: &str) -> Result<KeyMaterial, KmsError> {
        let m = open::<32>(&self.0, &material_context(key_id), wrapped)?;
        Ok(KeyMaterial {
            key_id: key_id.to_string(),
            aead: aead(&m),
            seal_secret: {
                let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &m);
                let tag = ring::hmac::sign(&k, b"ebs snapshot block seal v1");
                tag.as_ref().try_into().expect("HMAC-SHA256 is 32 bytes")
            },
        })
    }
}

fn material_context(key_id: &str) -> String {
    format!("kms key material {key_id}")
}

/// The unwrapped material of one KMS key.
pub struct KeyMaterial {
    key_id: String,
    aead: LessSafeKey,
    seal_secret: [u8; 32],
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyMaterial")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

fn data_key_context(key_id: &str) -> String {
    format!("ebs volume data key under {key_id}")
}

impl KeyMaterial {
    /// A new volume data key: its cipher and its wrapped form for the catalog.
    pub fn new_data_key(&self) -> (SectorCipher, String) {
        let key = random::<{ SectorCipher::KEY_LEN }>();
        let wrapped = seal(&self.aead, &data_key_context(&self.key_id), &key);
        (SectorCipher::new(&key), wrapped)
    }

    /// A volume's cipher from its wrapped data key.
    pub fn unwrap_data_key(&self, wrapped: &str) -> Result<SectorCipher, KmsError> {
        let key = open::<{ SectorCipher::KEY_LEN }>(
            &self.aead,
            &data_key_context(&self.key_id),
            wrapped,
        )?;
        Ok(SectorCipher::new(&key))
    }

    /// The seal of every snapshot under this key, named by `key_arn`.
    pub fn block_seal(&self, key_arn: &str) -> snapshot::block::BlockSeal {
        snapshot::block::BlockSeal::new(key_arn, &self.seal_secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hierarchy_wraps_and_binds_each_key_to_its_owner() {
        let root = RootKey::from_bytes([9; 32]);
        let wrapped = root.new_key_material("k1");
        let m = root.unwrap_material("k1", &wrapped).unwrap();
        assert!(
            root.unwrap_material("k2", &wrapped).is_err(),
            "moved to another key id"
        );
        assert!(
            RootKey::from_bytes([8; 32])
                .unwrap_material("k1", &wrapped)
                .is_err()
        );
        let (cipher, dk) = m.new_data_key();
        let again = m.unwrap_data_key(&dk).unwrap();
        let mut a = vec![1u8; 512];
        let mut b = a.clone();
        cipher.encrypt(0, &mut a);
        again.encrypt(0, &mut b);
        assert_eq!(a, b);
        let other = root
            .unwrap_material("k2", &root.new_key_material("k2"))
            .unwrap();
        assert!(other.unwrap_data_key(&dk).is_err());
        assert!(!format!("{root:?}{m:?}").contains(&wrapped));
    }

    #[test]
    fn a_root_key_file_is_made_private_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kms-root.key");
        let a = RootKey::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let wrapped = a.new_key_material("k");
        let b = RootKey::load_or_create(&path).unwrap();
        assert!(
            b.unwrap_material("k", &wrapped).is_ok(),
            "the same key after a restart"
        );
        std::fs::write(&path, "short").unwrap();
        assert!(matches!(
            RootKey::load_or_create(&path),
            Err(KmsError::RootFormat(_))
        ));
    }
}
