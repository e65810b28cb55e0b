//! KMS keys and aliases of each account, the AWS managed key `alias/aws/ebs`, key states, and
//! the EBS encryption defaults (EnableEbsEncryptionByDefault, ModifyEbsDefaultKmsKeyId, …);
//! and what EBS asks of them: which key a new volume gets, a volume's sector cipher, a
//! snapshot's block seal. The key hierarchy itself is `crate::kms`.
//!
//! KMS's rules kept here: a key is named by its id, its ARN, an alias name or an alias ARN, of
//! the caller's account and this region only (`NotFoundException` otherwise, never another
//! account's key); `alias/aws/` is reserved for AWS managed keys, which cannot be disabled or
//! deleted; ScheduleKeyDeletion waits 7–30 days (default 30) and CancelKeyDeletion leaves the
//! key `Disabled`. A key that is not `Enabled` serves no volume or snapshot: EBS calls that
//! need it fail with `InvalidKMSKey.InvalidState` (the state-reason code EC2 gives a launch
//! whose key is unusable), and work again once it is enabled.

use std::sync::Arc;

use storage_engine::SectorCipher;

use super::{Account, ControlPlane, Ec2Error, ErrorCode, State, now_ms};
use crate::catalog::{
    Change, EbsDefaultsRecord, KmsAliasRecord, KmsKeyRecord, KmsKeyState, VolumeEncryption,
};

/// The alias of the AWS managed key for EBS.
pub const EBS_MANAGED_ALIAS: &str = "alias/aws/ebs";
const DAY_MS: u64 = 86_400_000;

fn kms_error(code: ErrorCode, message: impl Into<String>) -> Ec2Error {
    Ec2Error::new(code, message)
}

fn not_found(what: &str) -> Ec2Error {
    kms_error(
        ErrorCode::NotFoundException,
        format!("Key '{what}' does not exist"),
    )
}

/// An EBS caller's view of a KMS failure: EC2 codes, not KMS's.
fn for_ec2(e: Ec2Error) -> Ec2Error {
    match e.code {
        ErrorCode::InvalidKmsKeyInvalidState | ErrorCode::InternalError => e,
        _ => Ec2Error::invalid_value(format!("The KMS key is not valid: {}", e.message)),
    }
}

fn unusable(k: &KmsKeyRecord, arn: &str) -> Ec2Error {
    Ec2Error::new(
        ErrorCode::InvalidKmsKeyInvalidState,
        format!(
            "The KMS key provided is in an incorrect state: {arn} is {}.",
            k.state.as_str()
        ),
    )
}

/// A new key id, in the UUID form KMS uses.
fn new_key_id() -> String {
    let h = crate::ids::new_export_token();
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// What a caller named.
enum KeyRef {
    Id(String),
    Alias(String),
}

/// A key in a reply: its record and ARN.
#[derive(Debug, Clone)]
pub struct KeyView {
    pub record: KmsKeyRecord,
    pub arn: String,
}

/// An alias in a reply.
#[derive(Debug, Clone)]
pub struct AliasView {
    pub record: KmsAliasRecord,
    pub arn: String,
}

impl ControlPlane {
    /// `arn:aws:kms:<region>:<account>:key/<id>`.
    pub fn kms_key_arn(&self, owner: &str, key_id: &str) -> String {
        format!("arn:aws:kms:{}:{owner}:key/{key_id}", self.cfg.region)
    }

    fn alias_arn(&self, owner: &str, alias: &str) -> String {
        format!("arn:aws:kms:{}:{owner}:{alias}", self.cfg.region)
    }

    fn key_view(&self, k: &KmsKeyRecord) -> KeyView {
        KeyView {
            arn: self.kms_key_arn(&k.owner_id, &k.key_id),
            record: k.clone(),
        }
    }

    fn parse_ref(&self, who: Account, s: &str) -> Result<KeyRef, Ec2Error> {
        if s.is_empty() {
            return Err(kms_error(
                ErrorCode::ValidationException,
                "1 validation error detected: Value at 'keyId' failed to satisfy constraint: Member must have length greater than or equal to 1",
            ));
        }
        if let Some(rest) = s.strip_prefix("arn:") {
            let parts: Vec<&str> = rest.splitn(5, ':').collect();
            let [partition, service, region, account, resource] = parts[..] else {
                return Err(kms_error(
                    ErrorCode::InvalidArnException,
                    format!("ARN {s} is not valid"),
                ));
            };
            if !partition.starts_with("aws") || service != "kms" {
                return Err(kms_error(
                    ErrorCode::InvalidArnException,
                    format!("ARN {s} is not a KMS ARN"),
                ));
            }
            // Another region's or account's key is, to this caller, a key that does not exist.
            if region != self.cfg.region || account != who.id() {
                return Err(not_found(s));
            }
            return match resource.split_once('/') {
                Some(("key", id)) => Ok(KeyRef::Id(id.to_string())),
                Some(("alias", _)) => Ok(KeyRef::Alias(resource.to_string())),
                _ => Err(kms_error(
                    ErrorCode::InvalidArnException,
                    format!("ARN {s} names neither a key nor an alias"),
                )),
            };
        }
        if s.starts_with("alias/") {
            return Ok(KeyRef::Alias(s.to_string()));
        }
        Ok(KeyRef::Id(s.to_string()))
    }

    /// The key `s` names, of `who`'s account. The managed EBS key is made on first use, as on
    /// AWS. A key whose deletion date has passed no longer exists.
    fn find_key(&self, st: &mut State, who: Account, s: &str) -> Result<KmsKeyRecord, Ec2Error> {
        let id = match self.parse_ref(who, s)? {
            KeyRef::Id(id) => id,
            KeyRef::Alias(alias) if alias == EBS_MANAGED_ALIAS => {
                return self.managed_ebs_key(st, who);
            }
            KeyRef::Alias(alias) => {
                let key = format!("{}/{alias}", who.id());
                match st.kms_aliases.get(&key) {
                    Some(a) => a.target_key_id.clone(),
                    None => {
                        return Err(kms_error(
                            ErrorCode::NotFoundException,
                            format!("Alias {} is not found.", self.alias_arn(who.id(), &alias)),
                        ));
                    }
                }
            }
        };
        match st.kms_keys.get(&id) {
            Some(k) if who.owns(&k.owner_id) && k.deletion_ms.is_none_or(|d| d > now_ms()) => {
                Ok(k.clone())
            }
            _ => Err(not_found(&self.kms_key_arn(who.id(), &id))),
        }
    }

    /// The AWS managed key for EBS of `who`, made (with its alias) if it does not exist yet.
    fn managed_ebs_key(&self, st: &mut State, who: Account) -> Result<KmsKeyRecord, Ec2Error> {
        let alias_key = format!("{}/{EBS_MANAGED_ALIAS}", who.id());
        if let Some(k) = st
            .kms_aliases
            .get(&alias_key)
            .and_then(|a| st.kms_keys.get(&a.target_key_id))
        {
            return Ok(k.clone());
        }
        let key_id = new_key_id();
        let rec = KmsKeyRecord {
            wrapped_material: self.cfg.kms_root.new_key_material(&key_id),
            key_id: key_id.clone(),
            owner_id: who.id().to_string(),
            description: "Default key that protects my EBS volumes when no other key is defined"
                .into(),
            state: KmsKeyState::Enabled,
            aws_managed: true,
            creation_ms: now_ms(),
            deletion_ms: None,
            pending_window_days: None,
            tags: Default::default(),
        };
        let alias = KmsAliasRecord {
            alias_name: EBS_MANAGED_ALIAS.into(),
            owner_id: who.id().to_string(),
            target_key_id: key_id.clone(),
            creation_ms: rec.creation_ms,
        };
        self.commit(&[
            Change::PutKmsKey(rec.clone()),
            Change::PutKmsAlias(alias.clone()),
        ])?;
        st.kms_keys.insert(key_id, rec.clone());
        st.kms_aliases.insert(alias_key, alias);
        tracing::info!(account = who.id(), "made the AWS managed key alias/aws/ebs");
        Ok(rec)
    }

    fn put_key(&self, st: &mut State, k: KmsKeyRecord) -> Result<KeyView, Ec2Error> {
        self.commit(&[Change::PutKmsKey(k.clone())])?;
        let view = self.key_view(&k);
        st.kms_keys.insert(k.key_id.clone(), k);
        Ok(view)
    }

    /// CreateKey: a symmetric encryption key (the only kind EBS uses).
    pub fn kms_create_key(
        &self,
        who: Account,
        description: &str,
        key_usage: Option<&str>,
        key_spec: Option<&str>,
        origin: Option<&str>,
        tags: Vec<(String, String)>,
    ) -> Result<KeyView, Ec2Error> {
        if key_usage.is_some_and(|u| u != "ENCRYPT_DECRYPT")
            || key_spec.is_some_and(|s| s != "SYMMETRIC_DEFAULT")
            || origin.is_some_and(|o| o != "AWS_KMS")
        {
            return Err(kms_error(
                ErrorCode::UnsupportedOperationException,
                "This KMS makes symmetric encryption keys only (KeyUsage ENCRYPT_DECRYPT, KeySpec SYMMETRIC_DEFAULT, Origin AWS_KMS).",
            ));
        }
        if description.len() > 8192 {
            return Err(kms_error(
                ErrorCode::ValidationException,
                "Description must be at most 8192 characters",
            ));
        }
        let key_id = new_key_id();
        let rec = KmsKeyRecord {
            wrapped_material: self.cfg.kms_root.new_key_material(&key_id),
            key_id,
            owner_id: who.id().to_string(),
            description: description.to_string(),
            state: KmsKeyState::Enabled,
            aws_managed: false,
            creation_ms: now_ms(),
            deletion_ms: None,
            pending_window_days: None,
            tags: tags.into_iter().collect(),
        };
        let mut st = self.lock();
        self.put_key(&mut st, rec)
    }

    /// DescribeKey.
    pub fn kms_describe_key(&self, who: Account, key: &str) -> Result<KeyView, Ec2Error> {
        let mut st = self.lock();
        let k = self.find_key(&mut st, who, key)?;
        Ok(self.key_view(&k))
    }

    /// ListKeys: every key of `who`'s account, oldest first.
    pub fn kms_list_keys(&self, who: Account) -> Vec<KeyView> {
        let st = self.lock();
        let now = now_ms();
        let mut keys: Vec<KeyView> = st
            .kms_keys
            .values()
            .filter(|k| who.owns(&k.owner_id) && k.deletion_ms.is_none_or(|d| d > now))
            .map(|k| self.key_view(k))
            .collect();
        keys.sort_by(|a, b| {
            (a.record.creation_ms, &a.record.key_id).cmp(&(b.record.creation_ms, &b.record.key_id))
        });
        keys
    }

    /// EnableKey (`enable`) or DisableKey.
    pub fn kms_set_enabled(&self, who: Account, key: &str, enable: bool) -> Result<(), Ec2Error> {
        let mut st = self.lock();
        let mut k = self.find_key(&mut st, who, key)?;
        if k.aws_managed {
            return Err(kms_error(
                ErrorCode::UnsupportedOperationException,
                format!(
                    "{} is an AWS managed key; it cannot be enabled or disabled.",
                    self.kms_key_arn(&k.owner_id, &k.key_id)
                ),
            ));
        }
        if k.state == KmsKeyState::PendingDeletion {
            return Err(kms_error(
                ErrorCode::KmsInvalidStateException,
                format!(
                    "{} is pending deletion.",
                    self.kms_key_arn(&k.owner_id, &k.key_id)
                ),
            ));
        }
        let to = if enable {
            KmsKeyState::Enabled
        } else {
            KmsKeyState::Disabled
        };
        if k.state != to {
            k.state = to;
            self.put_key(&mut st, k)?;
        }
        if enable {
            // What a restart left unserved while a key was unusable serves again: attachments
            // and background restores. Every EnableKey runs it (it is idempotent), so one
            // that met a passing failure, logged volume by volume, is retried by the next.
            let _ = self.export_attached(&mut st, false);
            let _ = self.resume_hydrations(&mut st, false);
        }
        Ok(())
    }

    /// ScheduleKeyDeletion: the key is unusable at once and deleted after `days` (7–30,
    /// default 30).
    pub fn kms_schedule_deletion(
        &self,
        who: Account,
        key: &str,
        days: Option<i64>,
    ) -> Result<KeyView, Ec2Error> {
        let days = days.unwrap_or(30);
        if !(7..=30).contains(&days) {
            return Err(kms_error(
                ErrorCode::ValidationException,
                format!(
                    "1 validation error detected: Value '{days}' at 'pendingWindowInDays' failed to satisfy constraint: Member must have value between 7 and 30"
                ),
            ));
        }
        let mut st = self.lock();
        let mut k = self.find_key(&mut st, who, key)?;
        let arn = self.kms_key_arn(&k.owner_id, &k.key_id);
        if k.aws_managed {
            return Err(kms_error(
                ErrorCode::UnsupportedOperationException,
                format!("{arn} is an AWS managed key; it cannot be deleted."),
            ));
        }
        if k.state == KmsKeyState::PendingDeletion {
            return Err(kms_error(
                ErrorCode::KmsInvalidStateException,
                format!("{arn} is pending deletion."),
            ));
        }
        k.state = KmsKeyState::PendingDeletion;
        k.deletion_ms = Some(now_ms() + days as u64 * DAY_MS);
        k.pending_window_days = Some(days as u32);
        self.put_key(&mut st, k)
    }

    /// CancelKeyDeletion: the key is kept, `Disabled`.
    pub fn kms_cancel_deletion(&self, who: Account, key: &str) -> Result<KeyView, Ec2Error> {
        let mut st = self.lock();
        let mut k = self.find_key(&mut st, who, key)?;
        if k.state != KmsKeyState::PendingDeletion {
            return Err(kms_error(
                ErrorCode::KmsInvalidStateException,
                format!(
                    "{} is not pending deletion.",
                    self.kms_key_arn(&k.owner_id, &k.key_id)
                ),
            ));
        }
        k.state = KmsKeyState::Disabled;
        k.deletion_ms = None;
        k.pending_window_days = None;
        self.put_key(&mut st, k)
    }

    /// CreateAlias.
    pub fn kms_create_alias(
        &self,
        who: Account,
        alias: &str,
        target: &str,
    ) -> Result<(), Ec2Error> {
        check_alias_name(alias)?;
        if alias.starts_with("alias/aws/") {
            return Err(kms_error(
                ErrorCode::InvalidAliasNameException,
                "Alias names beginning with alias/aws/ are reserved for AWS managed keys.",
            ));
        }
        let mut st = self.lock();
        let k = self.find_key(&mut st, who, target)?;
        if k.aws_managed {
            return Err(kms_error(
                ErrorCode::UnsupportedOperationException,
                "An alias cannot point at an AWS managed key.",
            ));
        }
        let rec = KmsAliasRecord {
            alias_name: alias.to_string(),
            owner_id: who.id().to_string(),
            target_key_id: k.key_id,
            creation_ms: now_ms(),
        };
        if st.kms_aliases.contains_key(&rec.key()) {
            return Err(kms_error(
                ErrorCode::AlreadyExistsException,
                format!(
                    "An alias with the name {} already exists",
                    self.alias_arn(who.id(), alias)
                ),
            ));
        }
        self.commit(&[Change::PutKmsAlias(rec.clone())])?;
        st.kms_aliases.insert(rec.key(), rec);
        Ok(())
    }

    /// DeleteAlias.
    pub fn kms_delete_alias(&self, who: Account, alias: &str) -> Result<(), Ec2Error> {
        check_alias_name(alias)?;
        if alias.starts_with("alias/aws/") {
            return Err(kms_error(
                ErrorCode::InvalidAliasNameException,
                "Aliases of AWS managed keys cannot be deleted.",
            ));
        }
        let key = format!("{}/{alias}", who.id());
        let mut st = self.lock();
        if !st.kms_aliases.contains_key(&key) {
            return Err(kms_error(
                ErrorCode::NotFoundException,
                format!("Alias {} is not found.", self.alias_arn(who.id(), alias)),
            ));
        }
        self.commit(&[Change::DeleteKmsAlias(key.clone())])?;
        st.kms_aliases.remove(&key);
        Ok(())
    }

    /// ListAliases: `who`'s aliases, of one key if `key` is given, by name.
    pub fn kms_list_aliases(
        &self,
        who: Account,
        key: Option<&str>,
    ) -> Result<Vec<AliasView>, Ec2Error> {
        let mut st = self.lock();
        let only = match key {
            Some(k) => Some(self.find_key(&mut st, who, k)?.key_id),
            None => None,
        };
        Ok(st
            .kms_aliases
            .values()
            .filter(|a| who.owns(&a.owner_id))
            .filter(|a| only.as_ref().is_none_or(|id| *id == a.target_key_id))
            .map(|a| AliasView {
                arn: self.alias_arn(&a.owner_id, &a.alias_name),
                record: a.clone(),
            })
            .collect())
    }

    // ------------------------------------------------------------ EBS encryption defaults

    fn ebs_defaults(st: &State, who: Account) -> EbsDefaultsRecord {
        st.ebs_defaults
            .get(who.id())
            .cloned()
            .unwrap_or_else(|| EbsDefaultsRecord {
                owner_id: who.id().to_string(),
                ..Default::default()
            })
    }

    fn put_defaults(&self, st: &mut State, d: EbsDefaultsRecord) -> Result<(), Ec2Error> {
        self.commit(&[Change::PutEbsDefaults(d.clone())])?;
        st.ebs_defaults.insert(d.owner_id.clone(), d);
        Ok(())
    }

    /// GetEbsEncryptionByDefault.
    pub fn ebs_encryption_by_default(&self, who: Account) -> bool {
        Self::ebs_defaults(&self.lock(), who).encryption_by_default
    }

    /// EnableEbsEncryptionByDefault (`on`) or DisableEbsEncryptionByDefault; the new setting.
    pub fn set_ebs_encryption_by_default(&self, who: Account, on: bool) -> Result<bool, Ec2Error> {
        let mut st = self.lock();
        let mut d = Self::ebs_defaults(&st, who);
        if d.encryption_by_default != on {
            d.encryption_by_default = on;
            self.put_defaults(&mut st, d)?;
        }
        Ok(on)
    }

    /// GetEbsDefaultKmsKeyId: the ARN of the key new encrypted volumes get by default.
    pub fn ebs_default_kms_key(&self, who: Account) -> Result<String, Ec2Error> {
        let mut st = self.lock();
        let k = self.default_key(&mut st, who)?;
        Ok(self.kms_key_arn(&k.owner_id, &k.key_id))
    }

    /// ModifyEbsDefaultKmsKeyId (`Some`) or ResetEbsDefaultKmsKeyId; the default key's ARN.
    pub fn set_ebs_default_kms_key(
        &self,
        who: Account,
        key: Option<&str>,
    ) -> Result<String, Ec2Error> {
        let mut st = self.lock();
        let mut d = Self::ebs_defaults(&st, who);
        d.kms_key_id = match key {
            Some(k) => Some(self.find_key(&mut st, who, k).map_err(for_ec2)?.key_id),
            None => None,
        };
        self.put_defaults(&mut st, d)?;
        let k = self.default_key(&mut st, who)?;
        Ok(self.kms_key_arn(&k.owner_id, &k.key_id))
    }

    /// The account's default EBS key: the one it chose, or the AWS managed key.
    fn default_key(&self, st: &mut State, who: Account) -> Result<KmsKeyRecord, Ec2Error> {
        match Self::ebs_defaults(st, who).kms_key_id {
            Some(id) => self.find_key(st, who, &id).map_err(for_ec2),
            None => self.managed_ebs_key(st, who),
        }
    }

    // ------------------------------------------------------------ what EBS needs

    /// How a new volume of `who` is encrypted: from `encrypted` and `kms_key_id` as asked, the
    /// source snapshot's key (`from_key`, if it is encrypted) and the account's defaults, as
    /// EC2 decides it. A new data key is drawn for an encrypted volume. `None`: not encrypted.
    pub(super) fn new_volume_encryption(
        &self,
        st: &mut State,
        who: Account,
        encrypted: Option<bool>,
        kms_key_id: Option<&str>,
        from_key: Option<&str>,
    ) -> Result<Option<(VolumeEncryption, SectorCipher)>, Ec2Error> {
        if kms_key_id.is_some() && encrypted != Some(true) && from_key.is_none() {
            return Err(Ec2Error::invalid_combination(
                "KmsKeyId requires Encrypted=true.",
            ));
        }
        let by_default = Self::ebs_defaults(st, who).encryption_by_default;
        if encrypted != Some(true) && from_key.is_none() && !by_default {
            return Ok(None);
        }
        let key = match (kms_key_id, from_key) {
            (Some(k), _) => self.find_key(st, who, k).map_err(for_ec2)?,
            (None, Some(id)) => Self::key_by_id(st, id)?,
            (None, None) => self.default_key(st, who)?,
        };
        let material = self.usable_material(&key)?;
        let (cipher, wrapped) = material.new_data_key();
        Ok(Some((
            VolumeEncryption {
                kms_key_id: self.kms_key_arn(&key.owner_id, &key.key_id),
                wrapped_data_key: wrapped,
            },
            cipher,
        )))
    }

    /// The material of `k`, if `k` may be used now.
    fn usable_material(&self, k: &KmsKeyRecord) -> Result<crate::kms::KeyMaterial, Ec2Error> {
        let arn = self.kms_key_arn(&k.owner_id, &k.key_id);
        if k.state != KmsKeyState::Enabled || k.deletion_ms.is_some_and(|d| d <= now_ms()) {
            return Err(unusable(k, &arn));
        }
        self.cfg
            .kms_root
            .unwrap_material(&k.key_id, &k.wrapped_material)
            .map_err(|e| Ec2Error::internal(format!("unwrapping {arn}: {e}")))
    }

    /// The key `id` (or key ARN, as volumes and snapshots record it) names.
    fn key_by_id(st: &State, id: &str) -> Result<KmsKeyRecord, Ec2Error> {
        let bare = id.rsplit('/').next().unwrap_or(id);
        st.kms_keys.get(bare).cloned().ok_or_else(|| {
            Ec2Error::new(
                ErrorCode::InvalidKmsKeyInvalidState,
                format!("The KMS key {id} no longer exists."),
            )
        })
    }

    /// The sector cipher of an encrypted volume (`None` for a plain one); fails while its key
    /// is not usable.
    pub(super) fn volume_cipher(
        &self,
        st: &State,
        enc: Option<&VolumeEncryption>,
    ) -> Result<Option<SectorCipher>, Ec2Error> {
        let Some(enc) = enc else {
            return Ok(None);
        };
        let k = Self::key_by_id(st, &enc.kms_key_id)?;
        let cipher = self
            .usable_material(&k)?
            .unwrap_data_key(&enc.wrapped_data_key)
            .map_err(|e| Ec2Error::internal(format!("unwrapping a volume's data key: {e}")))?;
        Ok(Some(cipher))
    }

    /// Fails while the key of an encrypted volume or snapshot (`kms_key_id`) is not usable.
    pub(super) fn check_key_usable(
        &self,
        st: &State,
        kms_key_id: Option<&str>,
    ) -> Result<(), Ec2Error> {
        match kms_key_id {
            None => Ok(()),
            Some(id) => self.usable_material(&Self::key_by_id(st, id)?).map(|_| ()),
        }
    }

    /// The block seal of the snapshots under KMS key `kms_key_id` (id or ARN; `None`: not
    /// encrypted);
    /// fails while the key is not usable.
    pub(super) fn snapshot_seal(
        &self,
        st: &State,
        kms_key_id: Option<&str>,
    ) -> Result<Option<Arc<snapshot::block::BlockSeal>>, Ec2Error> {
        let Some(id) = kms_key_id else {
            return Ok(None);
        };
        let k = Self::key_by_id(st, id)?;
        let arn = self.kms_key_arn(&k.owner_id, &k.key_id);
        Ok(Some(Arc::new(self.usable_material(&k)?.block_seal(&arn))))
    }

    /// The key a copy or new snapshot under `kms_key_id` (any form) of `who` resolves to, for
    /// EBS callers.
    pub(super) fn resolve_ebs_key(
        &self,
        st: &mut State,
        who: Account,
        kms_key_id: &str,
    ) -> Result<KmsKeyRecord, Ec2Error> {
        self.find_key(st, who, kms_key_id).map_err(for_ec2)
    }

    /// The default EBS key of `who` (for a copy asked to be encrypted without a key).
    pub(super) fn default_ebs_key(
        &self,
        st: &mut State,
        who: Account,
    ) -> Result<KmsKeyRecord, Ec2Error> {
        self.default_key(st, who)
    }

    /// Whether `who`'s new volumes are encrypted by default.
    pub(super) fn encrypts_by_default(st: &State, who: Account) -> bool {
        Self::ebs_defaults(st, who).encryption_by_default
    }
}

fn check_alias_name(alias: &str) -> Result<(), Ec2Error> {
    let ok = alias.len() <= 256
        && alias.strip_prefix("alias/").is_some_and(|n| {
            !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/_-".contains(&b))
        });
    if ok {
        Ok(())
    } else {
        Err(kms_error(
            ErrorCode::InvalidAliasNameException,
            format!(
                "Alias name {alias} is not valid: it must begin with alias/ followed by letters, digits, /, _ or -"
            ),
        ))
    }
}
