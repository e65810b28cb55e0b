//! SSH key pairs as EC2 makes and reads them: generation (RSA 2048, ED25519), the private key
//! formats CreateKeyPair returns (`pem`: PKCS#1 for RSA, OpenSSH for ED25519; `ppk`: PuTTY's
//! v3 file), reading an imported OpenSSH public key, and each case's fingerprint.
//!
//! Fingerprints follow AWS (the EC2 user guide's "verify your key pair's fingerprint"):
//! - created RSA: SHA-1 of the private key's PKCS#8 DER, colon-separated hex;
//! - imported RSA: MD5 of the public key's DER (SubjectPublicKeyInfo), colon-separated hex —
//!   what `ssh-keygen -e -m PKCS8 -f key.pub | openssl pkey -pubin -outform DER | openssl md5 -c`
//!   prints (the API reference calls this RFC 4716's MD5 fingerprint, which hashes the SSH
//!   blob instead; AWS's own values and its guide's commands use the DER);
//! - ED25519, either way: base64 of SHA-256 of the SSH public key blob, with its padding
//!   (`ssh-keygen -l` prints the same without the `=`).

use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey};
use ssh_key::private::{KeypairData, RsaKeypair};
use ssh_key::public::KeyData;
use ssh_key::rand_core::OsRng;
use ssh_key::{LineEnding, PrivateKey, PublicKey};

/// EC2's RSA key size for CreateKeyPair.
const RSA_BITS: usize = 2048;

/// A key type EC2 makes and imports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Rsa,
    Ed25519,
}

impl KeyType {
    /// `rsa` or `ed25519`.
    pub fn parse(s: &str) -> Option<KeyType> {
        match s {
            "rsa" => Some(KeyType::Rsa),
            "ed25519" => Some(KeyType::Ed25519),
            _ => None,
        }
    }

    /// The EC2 spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Rsa => "rsa",
            KeyType::Ed25519 => "ed25519",
        }
    }
}

/// The private key file format CreateKeyPair returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    Pem,
    Ppk,
}

impl KeyFormat {
    /// `pem` or `ppk`.
    pub fn parse(s: &str) -> Option<KeyFormat> {
        match s {
            "pem" => Some(KeyFormat::Pem),
            "ppk" => Some(KeyFormat::Ppk),
            _ => None,
        }
    }
}

/// Why a key could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Not an OpenSSH public key of a type EC2 takes.
    #[error("{0}")]
    Format(String),
    /// The crypto library failed (not the caller's fault).
    #[error("key generation failed: {0}")]
    Internal(String),
}

/// A freshly made key pair: what CreateKeyPair returns once and what the catalog keeps.
pub struct NewKey {
    /// The private key file (never stored).
    pub material: String,
    /// The public key, one OpenSSH `authorized_keys` line without a comment.
    pub public_openssh: String,
    /// EC2's fingerprint for a created key.
    pub fingerprint: String,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private key.
        f.debug_struct("NewKey")
            .field("public_openssh", &self.public_openssh)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// Makes a key pair of `ty`, its private key in `format`; `comment` names it in a PPK file.
pub fn generate(ty: KeyType, format: KeyFormat, comment: &str) -> Result<NewKey, KeyError> {
    let internal = |e: ssh_key::Error| KeyError::Internal(e.to_string());
    // RSA keys are made by `rsa` and converted: ssh-key 0.6's conversion the other way builds
    // the key from p twice and fails.
    let rsa_key = match ty {
        KeyType::Rsa => Some(
            rsa::RsaPrivateKey::new(&mut OsRng, RSA_BITS)
                .map_err(|e| KeyError::Internal(e.to_string()))?,
        ),
        KeyType::Ed25519 => None,
    };
    let data = match &rsa_key {
        Some(r) => KeypairData::from(RsaKeypair::try_from(r).map_err(internal)?),
        None => KeypairData::from(ssh_key::private::Ed25519Keypair::random(&mut OsRng)),
    };
    let key = PrivateKey::new(data, "").map_err(internal)?;
    let public = key.public_key();
    let public_openssh = public.to_openssh().map_err(internal)?;
    let (material, fingerprint) = match (rsa_key, format) {
        (Some(rsa_key), _) => {
            let der = rsa_key
                .to_pkcs8_der()
                .map_err(|e| KeyError::Internal(e.to_string()))?;
            let fingerprint = colon_hex(
                ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der.as_bytes())
                    .as_ref(),
            );
            let material = match format {
                KeyFormat::Pem => rsa_key
                    .to_pkcs1_pem(LineEnding::LF)
                    .map_err(|e| KeyError::Internal(e.to_string()))?
                    .to_string(),
                KeyFormat::Ppk => ppk(&key, comment)?,
            };
            (material, fingerprint)
        }
        (None, KeyFormat::Pem) => (
            key.to_openssh(LineEnding::LF)
                .map_err(internal)?
                .to_string(),
            sha256_fingerprint(public),
        ),
        (None, KeyFormat::Ppk) => (ppk(&key, comment)?, sha256_fingerprint(public)),
    };
    Ok(NewKey {
        material,
        public_openssh,
        fingerprint,
    })
}

/// An imported public key: its type, its OpenSSH line (comment dropped) and fingerprint.
#[derive(Debug)]
pub struct ImportedKey {
    pub key_type: KeyType,
    pub public_openssh: String,
    pub fingerprint: String,
}

/// Reads ImportKeyPair's `PublicKeyMaterial`: one OpenSSH public key line, RSA (1024 bits or
/// more, as EC2 takes) or ED25519.
pub fn import(material: &[u8]) -> Result<ImportedKey, KeyError> {
    let bad = || KeyError::Format("Key is not in valid OpenSSH public key format".to_string());
    let text = std::str::from_utf8(material).map_err(|_| bad())?.trim();
    let mut key = PublicKey::from_openssh(text).map_err(|_| bad())?;
    key.set_comment("");
    let public_openssh = key.to_openssh().map_err(|_| bad())?;
    match key.key_data() {
        KeyData::Ed25519(_) => Ok(ImportedKey {
            key_type: KeyType::Ed25519,
            public_openssh,
            fingerprint: sha256_fingerprint(&key),
        }),
        KeyData::Rsa(r) => {
            // Built from the components here: ssh-key's own conversion refuses keys under
            // 2048 bits, which EC2 imports.
            let uint = |m: &ssh_key::Mpint| {
                m.as_positive_bytes()
                    .map(rsa::BigUint::from_bytes_be)
                    .ok_or_else(bad)
            };
            let r = rsa::RsaPublicKey::new(uint(&r.n)?, uint(&r.e)?).map_err(|_| bad())?;
            // EC2 imports RSA keys of 1024, 2048 and 4096 bits (and those between).
            if rsa::traits::PublicKeyParts::size(&r) * 8 < 1024 {
                return Err(KeyError::Format(
                    "RSA keys must be 1024 bits or longer".to_string(),
                ));
            }
            let der = r.to_public_key_der().map_err(|_| bad())?;
            let md5 = <md5::Md5 as md5::Digest>::digest(der.as_bytes());
            Ok(ImportedKey {
                key_type: KeyType::Rsa,
                public_openssh,
                fingerprint: colon_hex(&md5),
            })
        }
        other => Err(KeyError::Format(format!(
            "Key type {} is not supported; use rsa or ed25519",
            other.algorithm()
        ))),
    }
}

/// Base64 of SHA-256 of the SSH public key blob, padded.
fn sha256_fingerprint(key: &PublicKey) -> String {
    use base64::Engine;
    let blob = key.to_bytes().unwrap_or_default();
    base64::engine::general_purpose::STANDARD
        .encode(ring::digest::digest(&ring::digest::SHA256, &blob).as_ref())
}

fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A PuTTY private key file, version 3, unencrypted: the public blob in SSH's encoding, the
/// private fields (RSA: d, p, q, iqmp as mpints; ED25519: the 32-byte seed as a string), and
/// the MAC (HMAC-SHA-256 keyed with the empty string over the algorithm, encryption, comment
/// and both blobs, each as an SSH string).
fn ppk(key: &PrivateKey, comment: &str) -> Result<String, KeyError> {
    use ssh_encoding::Encode;
    let internal = |e: ssh_key::Error| KeyError::Internal(e.to_string());
    let enc = |e: ssh_encoding::Error| KeyError::Internal(e.to_string());
    let algorithm = key.algorithm().to_string();
    let public = key.public_key().to_bytes().map_err(internal)?;
    let mut private = Vec::new();
    match key.key_data() {
        KeypairData::Rsa(k) => {
            k.private.d.encode(&mut private).map_err(enc)?;
            k.private.p.encode(&mut private).map_err(enc)?;
            k.private.q.encode(&mut private).map_err(enc)?;
            k.private.iqmp.encode(&mut private).map_err(enc)?;
        }
        KeypairData::Ed25519(k) => {
            k.private
                .to_bytes()
                .as_slice()
                .encode(&mut private)
                .map_err(enc)?;
        }
        _ => return Err(KeyError::Internal("unsupported key type".to_string())),
    }
    let mut mac_input = Vec::new();
    for field in [
        algorithm.as_bytes(),
        b"none",
        comment.as_bytes(),
        &public,
        &private,
    ] {
        field.encode(&mut mac_input).map_err(enc)?;
    }
    let mac = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b""),
        &mac_input,
    );
    let lines = |blob: &[u8]| -> Vec<String> {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(blob);
        b64.as_bytes()
            .chunks(64)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect()
    };
    let (public_lines, private_lines) = (lines(&public), lines(&private));
    let mut out = format!(
        "PuTTY-User-Key-File-3: {algorithm}\nEncryption: none\nComment: {comment}\nPublic-Lines: {}\n",
        public_lines.len()
    );
    for l in &public_lines {
        out.push_str(l);
        out.push('\n');
    }
    out.push_str(&format!("Private-Lines: {}\n", private_lines.len()));
    for l in &private_lines {
        out.push_str(l);
        out.push('\n');
    }
    let hex: String = mac.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    out.push_str(&format!("Private-MAC: {hex}\n"));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_keys_read_back_and_fingerprint_their_public_half() {
        let k = generate(KeyType::Ed25519, KeyFormat::Pem, "demo").unwrap();
        let back = PrivateKey::from_openssh(&k.material).unwrap();
        assert_eq!(back.public_key().to_openssh().unwrap(), k.public_openssh);
        let imported = import(k.public_openssh.as_bytes()).unwrap();
        assert_eq!(imported.fingerprint, k.fingerprint);
        assert_eq!(imported.key_type, KeyType::Ed25519);

        let r = generate(KeyType::Rsa, KeyFormat::Pem, "demo").unwrap();
        assert!(r.material.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        // 20 bytes of SHA-1, colon-separated.
        assert_eq!(r.fingerprint.len(), 59);
        let imported = import(r.public_openssh.as_bytes()).unwrap();
        assert_eq!(imported.key_type, KeyType::Rsa);
        assert_eq!(imported.fingerprint.len(), 47, "16 bytes of MD5");
    }

    #[test]
    fn imports_refuse_what_ec2_refuses() {
        for bad in [
            &b"not a key"[..],
            b"ssh-ed25519 AAAA",
            b"\xff\xfe",
            b"ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEjpNd1dE6fV1pMJ4kFj4U9tq0Aw2pLJ1Dh3Fwn3x1Q3Sqvb9T8i8ChY+Xrx1Y7T0ZcQ+4S2D5mB4p5e8P8J4lE=",
        ] {
            assert!(matches!(import(bad), Err(KeyError::Format(_))), "{bad:?}");
        }
    }

    #[test]
    fn ppk_files_carry_a_mac_over_their_fields() {
        let k = generate(KeyType::Ed25519, KeyFormat::Ppk, "demo").unwrap();
        assert!(
            k.material.starts_with(
                "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: demo\n"
            )
        );
        assert!(k.material.contains("\nPrivate-MAC: "));
    }
}
