//! CreateKeyPair, ImportKeyPair, DescribeKeyPairs and DeleteKeyPair: each account's key pairs
//! in the catalog, public halves only. The private key CreateKeyPair makes is returned once
//! and never kept or logged. Launched instances name their key pair (`KeyName`); the metadata
//! service hands its public key to the instance, whose first boot authorises it for the
//! AMI's default user.
//!
//! EC2's rules: names are unique per account and region, 1 to 255 ASCII characters
//! (`InvalidKeyPair.Duplicate`, `InvalidParameterValue`); DescribeKeyPairs of a name or id
//! that does not exist is `InvalidKeyPair.NotFound`; DeleteKeyPair by name succeeds whether or
//! not the pair exists, as EC2's does, and by id is `InvalidKeyPair.NotFound` when missing.

use super::network::{check_filters, filters_pass, tag_field};
use super::{Account, ControlPlane, Ec2Error, ErrorCode, model, validate};
use crate::catalog::{Change, KeyPairRecord};
use crate::ids;
use crate::keys::{self, KeyFormat, KeyType};

/// What CreateKeyPair returns: the record and, once, the private key.
pub struct CreatedKeyPair {
    pub record: KeyPairRecord,
    /// The private key file in the asked format.
    pub key_material: String,
}

impl std::fmt::Debug for CreatedKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private key.
        f.debug_struct("CreatedKeyPair")
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

/// `InvalidParameterValue` unless `name` is 1–255 printable ASCII characters.
fn check_name(name: &str) -> Result<(), Ec2Error> {
    if name.is_empty() {
        return Err(Ec2Error::missing("KeyName"));
    }
    // Printable ASCII only: the name ends up in `authorized_keys` lines, PPK headers and the
    // metadata service's listings, where a control character would split or forge a line.
    if name.len() > 255 || !name.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(Ec2Error::invalid_value(format!(
            "Value ({}) for parameter keyName is invalid. Key names are 1 to 255 printable ASCII characters.",
            name.escape_default()
        )));
    }
    Ok(())
}

pub(super) fn not_found(what: &str) -> Ec2Error {
    Ec2Error::new(
        ErrorCode::InvalidKeyPairNotFound,
        format!("The key pair '{what}' does not exist"),
    )
}

impl ControlPlane {
    /// CreateKeyPair: a new key of `key_type` (default `rsa`), its private key in `key_format`
    /// (default `pem`).
    pub fn create_key_pair(
        &self,
        who: Account,
        key_name: &str,
        key_type: Option<&str>,
        key_format: Option<&str>,
        tag_specifications: &[model::TagSpecification],
    ) -> Result<CreatedKeyPair, Ec2Error> {
        check_name(key_name)?;
        let ty = match key_type.filter(|t| !t.is_empty()) {
            None => KeyType::Rsa,
            Some(t) => KeyType::parse(t).ok_or_else(|| {
                Ec2Error::invalid_value(format!(
                    "Value ({t}) for parameter keyType is invalid. Valid values are rsa and ed25519."
                ))
            })?,
        };
        let format = match key_format.filter(|f| !f.is_empty()) {
            None => KeyFormat::Pem,
            Some(f) => KeyFormat::parse(f).ok_or_else(|| {
                Ec2Error::invalid_value(format!(
                    "Value ({f}) for parameter keyFormat is invalid. Valid values are pem and ppk."
                ))
            })?,
        };
        let tags = validate::tag_specifications("key-pair", tag_specifications)?;
        if self.key_pair_named(who, key_name).is_some() {
            return Err(duplicate(key_name));
        }
        // Made outside the lock: an RSA key takes a while.
        let made = keys::generate(ty, format, key_name)
            .map_err(|e| Ec2Error::new(ErrorCode::InternalError, e.to_string()))?;
        let record = KeyPairRecord {
            key_pair_id: ids::new_id("key"),
            owner_id: who.id().to_string(),
            key_name: key_name.to_string(),
            key_type: ty.as_str().to_string(),
            fingerprint: made.fingerprint,
            public_key: made.public_openssh,
            created_ms: super::now_ms(),
            tags,
        };
        self.insert_key_pair(who, &record)?;
        Ok(CreatedKeyPair {
            record,
            key_material: made.material,
        })
    }

    /// ImportKeyPair: an OpenSSH public key (RSA or ED25519).
    pub fn import_key_pair(
        &self,
        who: Account,
        key_name: &str,
        public_key_material: &[u8],
        tag_specifications: &[model::TagSpecification],
    ) -> Result<KeyPairRecord, Ec2Error> {
        check_name(key_name)?;
        if public_key_material.is_empty() {
            return Err(Ec2Error::missing("PublicKeyMaterial"));
        }
        let key = keys::import(public_key_material)
            .map_err(|e| Ec2Error::new(ErrorCode::InvalidKeyFormat, e.to_string()))?;
        let tags = validate::tag_specifications("key-pair", tag_specifications)?;
        let record = KeyPairRecord {
            key_pair_id: ids::new_id("key"),
            owner_id: who.id().to_string(),
            key_name: key_name.to_string(),
            key_type: key.key_type.as_str().to_string(),
            fingerprint: key.fingerprint,
            public_key: key.public_openssh,
            created_ms: super::now_ms(),
            tags,
        };
        self.insert_key_pair(who, &record)?;
        Ok(record)
    }

    /// Commits a new key pair unless its name is taken (checked again under the lock, so two
    /// racing calls with one name make one pair).
    fn insert_key_pair(&self, who: Account, record: &KeyPairRecord) -> Result<(), Ec2Error> {
        let mut st = self.lock();
        if st
            .key_pairs
            .values()
            .any(|k| who.owns(&k.owner_id) && k.key_name == record.key_name)
        {
            return Err(duplicate(&record.key_name));
        }
        self.commit(&[Change::PutKeyPair(record.clone())])?;
        st.key_pairs
            .insert(record.key_pair_id.clone(), record.clone());
        tracing::info!(key_pair_id = %record.key_pair_id, key_name = %record.key_name, "key pair added");
        Ok(())
    }

    /// `who`'s key pair called `name`.
    pub fn key_pair_named(&self, who: Account, name: &str) -> Option<KeyPairRecord> {
        self.lock()
            .key_pairs
            .values()
            .find(|k| who.owns(&k.owner_id) && k.key_name == name)
            .cloned()
    }

    /// DescribeKeyPairs.
    pub fn describe_key_pairs(
        &self,
        who: Account,
        names: &[String],
        ids: &[String],
        filters: &[model::Filter],
    ) -> Result<Vec<KeyPairRecord>, Ec2Error> {
        check_filters(
            filters,
            &[
                "key-pair-id",
                "key-name",
                "fingerprint",
                "key-type",
                "tag-key",
            ],
        )?;
        let st = self.lock();
        let mine: Vec<&KeyPairRecord> = st
            .key_pairs
            .values()
            .filter(|k| who.owns(&k.owner_id))
            .collect();
        if let Some(n) = names
            .iter()
            .find(|n| !mine.iter().any(|k| &k.key_name == *n))
        {
            return Err(not_found(n));
        }
        if let Some(id) = ids
            .iter()
            .find(|id| !mine.iter().any(|k| &k.key_pair_id == *id))
        {
            return Err(not_found(id));
        }
        let mut out: Vec<KeyPairRecord> = mine
            .into_iter()
            .filter(|k| names.is_empty() || names.contains(&k.key_name))
            .filter(|k| ids.is_empty() || ids.contains(&k.key_pair_id))
            .filter(|k| {
                filters_pass(filters, |name| match name {
                    "key-pair-id" => Some(vec![k.key_pair_id.clone()]),
                    "key-name" => Some(vec![k.key_name.clone()]),
                    "fingerprint" => Some(vec![k.fingerprint.clone()]),
                    "key-type" => Some(vec![k.key_type.clone()]),
                    other => tag_field(other, &k.tags),
                })
            })
            .cloned()
            .collect();
        out.sort_by(|a, b| a.key_name.cmp(&b.key_name));
        Ok(out)
    }

    /// DeleteKeyPair by name or id; returns the id deleted, if any. Instances launched with
    /// the pair keep the key their first boot authorised, as on EC2.
    pub fn delete_key_pair(
        &self,
        who: Account,
        key_name: Option<&str>,
        key_pair_id: Option<&str>,
    ) -> Result<Option<String>, Ec2Error> {
        let key_name = key_name.filter(|n| !n.is_empty());
        let key_pair_id = key_pair_id.filter(|n| !n.is_empty());
        let mut st = self.lock();
        let found = match (key_name, key_pair_id) {
            (None, None) => return Err(Ec2Error::missing("KeyName")),
            (_, Some(id)) => Some(
                st.key_pairs
                    .values()
                    .find(|k| who.owns(&k.owner_id) && k.key_pair_id == id)
                    .ok_or_else(|| not_found(id))?,
            ),
            (Some(name), None) => st
                .key_pairs
                .values()
                .find(|k| who.owns(&k.owner_id) && k.key_name == name),
        };
        let Some(id) = found.map(|k| k.key_pair_id.clone()) else {
            return Ok(None);
        };
        self.commit(&[Change::DeleteKeyPair(id.clone())])?;
        st.key_pairs.remove(&id);
        tracing::info!(key_pair_id = %id, "key pair deleted");
        Ok(Some(id))
    }
}

fn duplicate(name: &str) -> Ec2Error {
    Ec2Error::new(
        ErrorCode::InvalidKeyPairDuplicate,
        format!("The keypair '{name}' already exists."),
    )
}
