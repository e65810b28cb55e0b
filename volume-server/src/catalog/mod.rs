//! The catalog: durable records of volumes, hosts and attachments.
//!
//! # Design
//! The control plane keeps the live state in memory and writes every state change through
//! [`Catalog::commit`] as one transaction before it takes effect. The trait is deliberately
//! small (load everything, commit a batch) so a replicated store (etcd, for the scale-out mode)
//! is an added implementation, not a rewrite. [`redb_store`] is the embedded default.
//!
//! Records are serde types stored as JSON: readable with any redb tool, and tolerant of added
//! fields (`#[serde(default)]`).

pub mod redb_store;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::reservation::ReservationRecord;

pub use redb_store::RedbCatalog;

/// Why the catalog failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The underlying store failed.
    #[error("Catalog storage error: {0}")]
    Storage(String),
    /// A stored record could not be decoded.
    #[error("Corrupt catalog record {key}")]
    Corrupt {
        /// Key of the bad record.
        key: String,
        /// Decoder error.
        #[source]
        source: serde_json::Error,
    },
}

/// A volume's lifecycle state (EC2 `State`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VolumeState {
    /// The file is being created.
    Creating,
    /// Ready, not attached.
    Available,
    /// Attached to one or more instances.
    InUse,
    /// Being deleted.
    Deleting,
    /// Gone.
    Deleted,
    /// Unrecoverable.
    Error,
}

impl VolumeState {
    /// The EC2 spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            VolumeState::Creating => "creating",
            VolumeState::Available => "available",
            VolumeState::InUse => "in-use",
            VolumeState::Deleting => "deleting",
            VolumeState::Deleted => "deleted",
            VolumeState::Error => "error",
        }
    }
}

/// An attachment's state (EC2 `VolumeAttachment.State`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttachmentState {
    /// Being set up.
    Attaching,
    /// Serving I/O.
    Attached,
    /// Being fenced and removed.
    Detaching,
    /// Removed (only ever reported, never stored).
    Detached,
}

impl AttachmentState {
    /// The EC2 spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AttachmentState::Attaching => "attaching",
            AttachmentState::Attached => "attached",
            AttachmentState::Detaching => "detaching",
            AttachmentState::Detached => "detached",
        }
    }
}

/// The EBS volume types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeType {
    /// General purpose SSD, burst credits.
    Gp2,
    /// General purpose SSD, provisioned.
    Gp3,
    /// Provisioned IOPS SSD.
    Io1,
    /// Provisioned IOPS SSD (Block Express).
    Io2,
    /// Throughput-optimised HDD.
    St1,
    /// Cold HDD.
    Sc1,
    /// Magnetic (previous generation).
    Standard,
}

impl VolumeType {
    /// The EC2 spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            VolumeType::Gp2 => "gp2",
            VolumeType::Gp3 => "gp3",
            VolumeType::Io1 => "io1",
            VolumeType::Io2 => "io2",
            VolumeType::St1 => "st1",
            VolumeType::Sc1 => "sc1",
            VolumeType::Standard => "standard",
        }
    }

    /// Parses the EC2 spelling.
    pub fn parse(s: &str) -> Option<VolumeType> {
        Some(match s {
            "gp2" => VolumeType::Gp2,
            "gp3" => VolumeType::Gp3,
            "io1" => VolumeType::Io1,
            "io2" => VolumeType::Io2,
            "st1" => VolumeType::St1,
            "sc1" => VolumeType::Sc1,
            "standard" => VolumeType::Standard,
            _ => return None,
        })
    }

    /// Hard-disk types (counted in 1 MiB I/Os, advertised as rotational).
    pub fn is_hdd(self) -> bool {
        matches!(
            self,
            VolumeType::St1 | VolumeType::Sc1 | VolumeType::Standard
        )
    }

    /// Types whose IOPS are set by the user (gp3, io1, io2).
    pub fn provisioned_iops(self) -> bool {
        matches!(self, VolumeType::Gp3 | VolumeType::Io1 | VolumeType::Io2)
    }
}

/// One attachment of a volume to an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentRecord {
    /// `i-…`.
    pub instance_id: String,
    /// e.g. `/dev/sdf`.
    pub device: String,
    /// Lifecycle state.
    pub state: AttachmentState,
    /// Milliseconds since the Unix epoch.
    pub attach_time_ms: u64,
    /// Delete the volume when the instance terminates.
    #[serde(default)]
    pub delete_on_termination: bool,
    /// NBD export name: secret, unguessable.
    pub token: String,
    /// Fencing generation: strictly increasing per volume.
    pub generation: u64,
}

/// The account of resources made before accounts existed, and of gRPC callers.
pub const LOCAL_ACCOUNT_ID: &str = "000000000000";

fn local_account() -> String {
    LOCAL_ACCOUNT_ID.to_string()
}

/// One volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    /// `vol-…`.
    pub volume_id: String,
    /// The account that owns it (records from before accounts: [`LOCAL_ACCOUNT_ID`]).
    #[serde(default = "local_account")]
    pub owner_id: String,
    /// GiB.
    pub size_gib: u32,
    /// The AZ whose directory holds the file.
    pub availability_zone: String,
    /// Lifecycle state.
    pub state: VolumeState,
    /// EBS type.
    pub volume_type: VolumeType,
    /// Provisioned (gp3/io1/io2) or baseline (gp2) IOPS.
    #[serde(default)]
    pub iops: Option<u32>,
    /// Provisioned throughput, MiB/s (gp3).
    #[serde(default)]
    pub throughput: Option<u32>,
    /// io1/io2 Multi-Attach.
    #[serde(default)]
    pub multi_attach_enabled: bool,
    /// Source snapshot, if any.
    #[serde(default)]
    pub snapshot_id: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub create_time_ms: u64,
    /// Tags, sorted by key.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Current attachments.
    #[serde(default)]
    pub attachments: Vec<AttachmentRecord>,
    /// Idempotency token of the CreateVolume call.
    #[serde(default)]
    pub client_token: Option<String>,
    /// Next attachment generation to hand out.
    #[serde(default)]
    pub next_generation: u64,
    /// Modifications started in the last 24 hours, oldest first (the last one is current).
    #[serde(default)]
    pub modifications: Vec<ModificationRecord>,
    /// NVMe reservation state (Multi-Attach io2).
    #[serde(default)]
    pub reservation: ReservationRecord,
    /// The snapshot whose point in time the volume's changed-block tracking counts from: the
    /// parent of the next snapshot. `None`: the next snapshot reads every block.
    #[serde(default)]
    pub cbt_base: Option<String>,
    /// Volumes restored from a snapshot: background hydration rate, MiB/s.
    #[serde(default)]
    pub initialization_rate_mib: Option<u32>,
    /// Created with a fast snapshot restore credit: fully initialized when available.
    #[serde(default)]
    pub fast_restored: bool,
    /// Made by a RunInstances still in progress, for this instance: a launch is all or
    /// nothing, so start-up deletes the volume if that launch never finished.
    #[serde(default)]
    pub launched_for: Option<String>,
    /// EC2's `autoEnableIO`: an I/O failure does not stop the volume.
    #[serde(default)]
    pub auto_enable_io: bool,
    /// Encrypted at rest: its KMS key and wrapped data key. `None`: not encrypted.
    #[serde(default)]
    pub encryption: Option<VolumeEncryption>,
}

/// How a volume is encrypted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeEncryption {
    /// The KMS key's ARN.
    pub kms_key_id: String,
    /// The volume's AES-256-XTS data key, wrapped under that KMS key (see `crate::kms`).
    pub wrapped_data_key: String,
}

#[cfg(test)]
impl VolumeRecord {
    /// An available, unattached volume for tests.
    pub fn for_test(
        id: &str,
        volume_type: VolumeType,
        size_gib: u32,
        iops: Option<u32>,
        throughput: Option<u32>,
    ) -> Self {
        VolumeRecord {
            volume_id: id.into(),
            owner_id: LOCAL_ACCOUNT_ID.into(),
            size_gib,
            availability_zone: "us-east-1a".into(),
            state: VolumeState::Available,
            volume_type,
            iops,
            throughput,
            multi_attach_enabled: false,
            snapshot_id: None,
            create_time_ms: 1,
            tags: BTreeMap::new(),
            attachments: vec![],
            client_token: None,
            next_generation: 1,
            modifications: vec![],
            reservation: ReservationRecord::default(),
            cbt_base: None,
            initialization_rate_mib: None,
            fast_restored: false,
            launched_for: None,
            auto_enable_io: false,
            encryption: None,
        }
    }
}

/// The performance-relevant configuration of a volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerfSpec {
    /// GiB.
    pub size_gib: u32,
    /// Type.
    pub volume_type: VolumeType,
    /// IOPS (provisioned, or gp2's baseline).
    pub iops: Option<u32>,
    /// MiB/s (gp3).
    pub throughput: Option<u32>,
    /// Multi-Attach.
    pub multi_attach_enabled: bool,
}

/// One ModifyVolume call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModificationRecord {
    /// Milliseconds since the Unix epoch.
    pub start_ms: u64,
    /// When optimization ends and the modification is `completed`.
    pub end_ms: u64,
    /// Before.
    pub original: PerfSpec,
    /// After.
    pub target: PerfSpec,
}

/// A host registered outside the instance manager.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    /// `i-…`.
    pub instance_id: String,
    /// The account that owns it (records from before accounts: [`LOCAL_ACCOUNT_ID`]).
    #[serde(default = "local_account")]
    pub owner_id: String,
    /// Human name.
    pub name: String,
    /// The AZ it lives in.
    pub availability_zone: String,
    /// Milliseconds since the Unix epoch.
    pub launch_time_ms: u64,
    /// Tags, sorted by key.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Set for instances launched by RunInstances; `None` for hosts that registered themselves.
    #[serde(default)]
    pub instance: Option<InstanceRecord>,
    /// Its private address in the zone's default subnet (`None` in records from before
    /// addresses: one is derived from the id, see `control::network`).
    #[serde(default)]
    pub private_ip: Option<String>,
    /// The subnet made by CreateSubnet that it was launched into; `None`: its zone's default
    /// subnet.
    #[serde(default)]
    pub subnet_id: Option<String>,
}

/// Why an instance is in its state (EC2 `StateReason`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateReasonRecord {
    /// `Client.UserInitiatedShutdown`, `Client.InstanceInitiatedShutdown`, ….
    pub code: String,
    /// The human text.
    pub message: String,
}

/// An instance store disk: a sparse local file, erased on stop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceStoreRecord {
    /// The device name the workload sees.
    pub device_name: String,
    /// `ephemeral0`….
    pub virtual_name: String,
    /// Bytes.
    pub size_bytes: u64,
    /// The NBD export name while the instance runs; kept across a restart of the server so an
    /// adopted workload's connections stay valid.
    #[serde(default)]
    pub token: String,
}

/// What RunInstances launched, and where it is in its lifecycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// `m5d.large`, ….
    pub instance_type: String,
    /// The AMI it was launched from.
    pub image_id: String,
    /// `r-…`: the RunInstances call that launched it.
    pub reservation_id: String,
    /// Its index in that call.
    pub launch_index: u32,
    /// Lifecycle state.
    pub state: instance_manager::lifecycle::InstanceState,
    /// Why it is in this state.
    #[serde(default)]
    pub state_reason: Option<StateReasonRecord>,
    /// When the state last changed (ms since the epoch).
    pub transition_ms: u64,
    /// The AMI's root device name.
    pub root_device_name: String,
    /// The AMI's architecture.
    pub architecture: String,
    /// The AMI's virtualization type.
    pub virtualization_type: String,
    /// What the workload's own exit does.
    #[serde(default)]
    pub shutdown_behavior: instance_manager::lifecycle::ShutdownBehavior,
    /// TerminateInstances is refused.
    #[serde(default)]
    pub disable_api_termination: bool,
    /// The workload's shell command.
    #[serde(default)]
    pub workload: Option<String>,
    /// Base64 user data, run when no command is given.
    #[serde(default)]
    pub user_data: Option<String>,
    /// Instance store disks.
    #[serde(default)]
    pub instance_store: Vec<InstanceStoreRecord>,
    /// The workload's pid and start time (clock ticks since boot) while it runs, to re-adopt it.
    #[serde(default)]
    pub pid: Option<(u32, u64)>,
    /// RunInstances idempotency token.
    #[serde(default)]
    pub client_token: Option<String>,
    /// The key pair named at launch, and its public key then: the instance keeps both when
    /// the pair is deleted, as on EC2.
    #[serde(default)]
    pub key_name: Option<String>,
    #[serde(default)]
    pub public_key: Option<String>,
    /// How its instance metadata service answers.
    #[serde(default)]
    pub metadata: MetadataOptions,
    /// Its RunInstances has not finished: start-up discards the instance and the volumes
    /// made for it (their `launched_for`). The call's last commit clears it for every
    /// instance it launched at once.
    #[serde(default)]
    pub launching: bool,
}

/// An instance's metadata service settings (EC2's `InstanceMetadataOptions`). The defaults are
/// EC2's for an AMI without `ImdsSupport`: v1 and v2 both answered, a hop limit of 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataOptions {
    /// `HttpTokens=required`: only IMDSv2 (session token) requests are answered.
    pub tokens_required: bool,
    /// `HttpPutResponseHopLimit`: the IP TTL of token responses, 1–64.
    pub hop_limit: u8,
    /// `HttpEndpoint=enabled`.
    pub endpoint_enabled: bool,
    /// `InstanceMetadataTags=enabled`: `tags/instance` is served.
    pub tags_enabled: bool,
}

impl Default for MetadataOptions {
    fn default() -> Self {
        MetadataOptions {
            tokens_required: false,
            hop_limit: 1,
            endpoint_enabled: true,
            tags_enabled: false,
        }
    }
}

/// A snapshot's lifecycle state (EC2 `State`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotState {
    /// Being taken or copied.
    Pending,
    /// Its manifest is in the store: restorable.
    Completed,
    /// Failed; see the state message.
    Error,
}

impl SnapshotState {
    /// The EC2 spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotState::Pending => "pending",
            SnapshotState::Completed => "completed",
            SnapshotState::Error => "error",
        }
    }
}

/// One snapshot of this region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    /// `snap-…`.
    pub snapshot_id: String,
    /// The account that owns it (records from before accounts: [`LOCAL_ACCOUNT_ID`]).
    #[serde(default = "local_account")]
    pub owner_id: String,
    /// The volume it was taken of (copies: the source's volume).
    pub volume_id: String,
    /// GiB.
    pub volume_size_gib: u32,
    /// Lifecycle state.
    pub state: SnapshotState,
    /// Why it is in `error`.
    #[serde(default)]
    pub state_message: String,
    /// The point in time, ms since the Unix epoch.
    pub start_ms: u64,
    /// When it completed.
    #[serde(default)]
    pub complete_ms: Option<u64>,
    /// Description given at creation.
    #[serde(default)]
    pub description: String,
    /// Tags, sorted by key.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// The snapshot whose unchanged blocks this one references.
    #[serde(default)]
    pub parent_id: Option<String>,
    /// CopySnapshot: source region and snapshot.
    #[serde(default)]
    pub source: Option<(String, String)>,
    /// Non-zero blocks the manifest references (when completed).
    #[serde(default)]
    pub block_count: u64,
    /// Blocks this snapshot read (or copied) and stored.
    #[serde(default)]
    pub blocks_written: u64,
    /// Stored bytes this snapshot added to the store.
    #[serde(default)]
    pub bytes_written: u64,
    /// DeleteSnapshot was called while it was pending: delete it when it ends.
    #[serde(default)]
    pub delete_requested: bool,
    /// The KMS key (ARN) its blocks are sealed under; `None`: not encrypted.
    #[serde(default)]
    pub kms_key_id: Option<String>,
}

/// Fast snapshot restore of one snapshot in one availability zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FsrRecord {
    /// `snap-…`.
    pub snapshot_id: String,
    /// The zone.
    pub availability_zone: String,
    /// When it was enabled (ms since the epoch); optimizing follows at once.
    pub enabling_ms: u64,
    /// When optimizing ends and the state is `enabled`.
    pub enabled_ms: u64,
    /// When it was disabled, if it was.
    #[serde(default)]
    pub disabled_ms: Option<u64>,
    /// Credits in the bucket at `credits_ms`.
    pub credits: f64,
    /// When `credits` was last brought up to date.
    pub credits_ms: u64,
}

impl FsrRecord {
    /// The catalog key: `<snapshot>/<zone>`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.snapshot_id, self.availability_zone)
    }
}

/// An EBS block device of an AMI mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EbsMapping {
    /// The snapshot the volume is created from.
    #[serde(default)]
    pub snapshot_id: Option<String>,
    /// GiB (default: the snapshot's size).
    #[serde(default)]
    pub volume_size: Option<u32>,
    /// Volume type (default gp2).
    #[serde(default)]
    pub volume_type: Option<String>,
    /// Provisioned IOPS.
    #[serde(default)]
    pub iops: Option<u32>,
    /// Provisioned throughput, MiB/s.
    #[serde(default)]
    pub throughput: Option<u32>,
    /// Delete the volume when the instance terminates (EC2 default: true).
    #[serde(default)]
    pub delete_on_termination: Option<bool>,
    /// Encrypt the volume (a volume from an encrypted snapshot always is).
    #[serde(default)]
    pub encrypted: Option<bool>,
    /// The KMS key of an encrypted volume (any form KMS takes).
    #[serde(default)]
    pub kms_key_id: Option<String>,
}

/// One block device mapping of an AMI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingRecord {
    /// `/dev/xvda`, `/dev/sdf`, ….
    pub device_name: String,
    /// An EBS volume.
    #[serde(default)]
    pub ebs: Option<EbsMapping>,
    /// Instance store: `ephemeral0`…`ephemeral23`.
    #[serde(default)]
    pub virtual_name: Option<String>,
    /// Suppresses the device.
    #[serde(default)]
    pub no_device: bool,
}

/// A VPC made by CreateVpc (each account's default VPC is derived, not stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpcRecord {
    /// `vpc-…`.
    pub vpc_id: String,
    /// The account that owns it.
    pub owner_id: String,
    /// Its IPv4 block, e.g. `10.0.0.0/16`.
    pub cidr_block: String,
    /// `vpc-cidr-assoc-…`.
    pub cidr_association_id: String,
    /// When it was made, ms since the epoch.
    pub created_ms: u64,
    /// Its tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// A subnet made by CreateSubnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetRecord {
    /// `subnet-…`.
    pub subnet_id: String,
    /// Its VPC.
    pub vpc_id: String,
    /// The account that owns it.
    pub owner_id: String,
    /// Its zone.
    pub availability_zone: String,
    /// Its IPv4 block, inside the VPC's.
    pub cidr_block: String,
    /// Its tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// A key pair made by CreateKeyPair or ImportKeyPair: its public half only (the private key
/// is returned once and never kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPairRecord {
    /// `key-…`.
    pub key_pair_id: String,
    /// The account that owns it.
    pub owner_id: String,
    /// Unique per account and region.
    pub key_name: String,
    /// `rsa` or `ed25519`.
    pub key_type: String,
    /// EC2's fingerprint (see `crate::keys`).
    pub fingerprint: String,
    /// The public key, one OpenSSH line.
    pub public_key: String,
    /// When it was made or imported, ms since the epoch.
    pub created_ms: u64,
    /// Its tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// An Elastic IP address allocated by AllocateAddress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressRecord {
    /// `eipalloc-…`.
    pub allocation_id: String,
    /// The account that owns it.
    pub owner_id: String,
    /// The address, from `--eip-pool`.
    pub public_ip: String,
    /// Its association, if any.
    #[serde(default)]
    pub association: Option<AddressAssociation>,
    /// Its tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// Where an Elastic IP points.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressAssociation {
    /// `eipassoc-…`.
    pub association_id: String,
    /// The instance whose primary interface has it.
    pub instance_id: String,
}

/// A registered AMI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// `ami-…`.
    pub image_id: String,
    /// The account that owns it (records from before accounts: [`LOCAL_ACCOUNT_ID`]).
    #[serde(default = "local_account")]
    pub owner_id: String,
    /// Unique in the region.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Milliseconds since the Unix epoch.
    pub creation_ms: u64,
    /// The root device; one of the mappings, with a snapshot.
    pub root_device_name: String,
    /// x86_64, arm64 or i386.
    pub architecture: String,
    /// hvm or paravirtual.
    pub virtualization_type: String,
    /// Block device mappings.
    pub mappings: Vec<MappingRecord>,
    /// Tags, sorted by key.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// A KMS key's state (KMS `KeyState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KmsKeyState {
    /// Usable.
    Enabled,
    /// DisableKey: kept, not usable.
    Disabled,
    /// ScheduleKeyDeletion: not usable; gone at its deletion date unless cancelled.
    PendingDeletion,
}

impl KmsKeyState {
    /// KMS's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            KmsKeyState::Enabled => "Enabled",
            KmsKeyState::Disabled => "Disabled",
            KmsKeyState::PendingDeletion => "PendingDeletion",
        }
    }
}

/// A KMS key (symmetric, AWS_KMS origin). Its material is stored wrapped under the root key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KmsKeyRecord {
    /// A UUID.
    pub key_id: String,
    /// The account that owns it.
    pub owner_id: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Its state.
    pub state: KmsKeyState,
    /// An AWS managed key (`alias/aws/ebs`): it cannot be disabled or deleted.
    #[serde(default)]
    pub aws_managed: bool,
    /// Milliseconds since the Unix epoch.
    pub creation_ms: u64,
    /// When it is deleted, while `PendingDeletion`.
    #[serde(default)]
    pub deletion_ms: Option<u64>,
    /// The waiting period ScheduleKeyDeletion was given.
    #[serde(default)]
    pub pending_window_days: Option<u32>,
    /// The key material, wrapped (see `crate::kms`).
    pub wrapped_material: String,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// A KMS alias: a name pointing at one key of its account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KmsAliasRecord {
    /// `alias/…`.
    pub alias_name: String,
    /// The account that owns it.
    pub owner_id: String,
    /// The key it points at (id).
    pub target_key_id: String,
    /// Milliseconds since the Unix epoch.
    pub creation_ms: u64,
}

impl KmsAliasRecord {
    /// Its catalog key: aliases are unique per account.
    pub fn key(&self) -> String {
        format!("{}/{}", self.owner_id, self.alias_name)
    }
}

/// An account's EBS encryption defaults (EnableEbsEncryptionByDefault, ModifyEbsDefaultKmsKeyId).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EbsDefaultsRecord {
    /// The account.
    pub owner_id: String,
    /// New volumes are encrypted.
    pub encryption_by_default: bool,
    /// The key they get (id); `None`: the AWS managed key `alias/aws/ebs`.
    #[serde(default)]
    pub kms_key_id: Option<String>,
}

/// Everything the catalog holds.
#[derive(Debug, Default)]
pub struct CatalogContents {
    /// All volumes.
    pub volumes: Vec<VolumeRecord>,
    /// All registered hosts.
    pub hosts: Vec<HostRecord>,
    /// All snapshots of this region.
    pub snapshots: Vec<SnapshotRecord>,
    /// Fast snapshot restore settings.
    pub fsr: Vec<FsrRecord>,
    /// Registered AMIs.
    pub images: Vec<ImageRecord>,
    /// VPCs made by CreateVpc.
    pub vpcs: Vec<VpcRecord>,
    /// Subnets made by CreateSubnet.
    pub subnets: Vec<SubnetRecord>,
    /// Key pairs.
    pub key_pairs: Vec<KeyPairRecord>,
    /// Elastic IP addresses.
    pub addresses: Vec<AddressRecord>,
    /// KMS keys.
    pub kms_keys: Vec<KmsKeyRecord>,
    /// KMS aliases.
    pub kms_aliases: Vec<KmsAliasRecord>,
    /// EBS encryption defaults per account.
    pub ebs_defaults: Vec<EbsDefaultsRecord>,
    /// Usage segments (metering).
    pub usage: Vec<billing::usage::Segment>,
    /// The billing clock's anchor, once the server has run.
    pub billing_clock: Option<billing::clock::Clock>,
    /// Bought Reserved Instances.
    pub reservations: Vec<billing::commitments::Reservation>,
    /// Bought Savings Plans.
    pub savings_plans: Vec<billing::commitments::SavingsPlan>,
}

/// One change in a transaction.
#[derive(Debug, Clone)]
pub enum Change {
    /// Insert or replace a volume.
    PutVolume(VolumeRecord),
    /// Remove a volume.
    DeleteVolume(String),
    /// Insert or replace a host (boxed: the largest record by far).
    PutHost(Box<HostRecord>),
    /// Remove a host.
    DeleteHost(String),
    /// Insert or replace a snapshot.
    PutSnapshot(SnapshotRecord),
    /// Remove a snapshot.
    DeleteSnapshot(String),
    /// Insert or replace a fast snapshot restore setting.
    PutFsr(FsrRecord),
    /// Remove a fast snapshot restore setting (by [`FsrRecord::key`]).
    DeleteFsr(String),
    /// Insert or replace an AMI.
    PutImage(ImageRecord),
    /// Remove an AMI.
    DeleteImage(String),
    /// Insert or replace a VPC.
    PutVpc(VpcRecord),
    /// Remove a VPC.
    DeleteVpc(String),
    /// Insert or replace a subnet.
    PutSubnet(SubnetRecord),
    /// Remove a subnet.
    DeleteSubnet(String),
    /// Insert or replace a key pair.
    PutKeyPair(KeyPairRecord),
    /// Remove a key pair (by id).
    DeleteKeyPair(String),
    /// Insert or replace an Elastic IP.
    PutAddress(AddressRecord),
    /// Remove an Elastic IP (by allocation id).
    DeleteAddress(String),
    /// Insert or replace a KMS key.
    PutKmsKey(KmsKeyRecord),
    /// Remove a KMS key (by id): its deletion date passed.
    DeleteKmsKey(String),
    /// Insert or replace a KMS alias.
    PutKmsAlias(KmsAliasRecord),
    /// Remove a KMS alias (by [`KmsAliasRecord::key`]).
    DeleteKmsAlias(String),
    /// Insert or replace an account's EBS encryption defaults.
    PutEbsDefaults(EbsDefaultsRecord),
    /// Insert or replace a usage segment (metering; segments are never removed).
    PutUsage(billing::usage::Segment),
    /// Replace the billing clock's anchor.
    PutBillingClock(billing::clock::Clock),
    /// Insert or replace a bought Reserved Instance.
    PutReservation(billing::commitments::Reservation),
    /// Insert or replace a bought Savings Plan.
    PutSavingsPlan(billing::commitments::SavingsPlan),
}

/// A durable store of records. `commit` is atomic and durable when it returns.
pub trait Catalog: Send + Sync + std::fmt::Debug + 'static {
    /// Reads every record.
    fn load(&self) -> Result<CatalogContents, CatalogError>;
    /// Applies `changes` as one transaction.
    fn commit(&self, changes: &[Change]) -> Result<(), CatalogError>;
}
