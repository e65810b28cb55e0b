//! The control plane's request types: what each call takes, whatever protocol carried it. Each
//! protocol (gRPC today; the AWS wire protocols next) decodes into these; the control plane never
//! sees a protocol's own types.

/// CreateVolume's parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CreateVolumeRequest {
    pub availability_zone: String,
    /// GiB. Required unless created from a snapshot.
    pub size: Option<i32>,
    /// gp2 (default), gp3, io1, io2, st1, sc1, standard.
    pub volume_type: Option<String>,
    pub iops: Option<i32>,
    /// MiB/s, gp3 only.
    pub throughput: Option<i32>,
    pub snapshot_id: Option<String>,
    pub multi_attach_enabled: Option<bool>,
    pub tag_specifications: Vec<TagSpecification>,
    /// Idempotency token: a retry with the same token returns the same volume.
    pub client_token: Option<String>,
    pub encrypted: Option<bool>,
    /// The KMS key of an encrypted volume (id, ARN, alias or alias ARN); needs `encrypted`.
    pub kms_key_id: Option<String>,
    /// MiB/s at which a volume created from a snapshot is hydrated in the background (100..=300);
    /// without it, a default rate.
    pub volume_initialization_rate: Option<i32>,
}

/// DescribeVolumes's parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DescribeVolumesRequest {
    pub volume_ids: Vec<String>,
    pub filters: Vec<Filter>,
    /// 5..=500; not together with volume_ids.
    pub max_results: Option<i32>,
    pub next_token: Option<String>,
}

/// AttachVolume's parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AttachVolumeRequest {
    pub volume_id: String,
    pub instance_id: String,
    /// e.g. /dev/sdf
    pub device: String,
}

/// DetachVolume's parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DetachVolumeRequest {
    pub volume_id: String,
    /// Required when the volume has several attachments (Multi-Attach).
    pub instance_id: Option<String>,
    pub device: Option<String>,
    pub force: bool,
}

/// A tag: key and value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// A tag to delete: its key, and its value if only that value is to go.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeleteTag {
    pub key: String,
    pub value: Option<String>,
}

/// RegisterHost's parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RegisterHostRequest {
    pub name: String,
    pub availability_zone: String,
    pub tag_specifications: Vec<TagSpecification>,
}

/// ModifyVolume's parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModifyVolumeRequest {
    pub volume_id: String,
    /// GiB; may only grow.
    pub size: Option<i32>,
    pub volume_type: Option<String>,
    pub iops: Option<i32>,
    pub throughput: Option<i32>,
    pub multi_attach_enabled: Option<bool>,
}

/// CreateSnapshot's parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CreateSnapshotRequest {
    pub volume_id: String,
    pub description: Option<String>,
    /// resource_type "snapshot".
    pub tag_specifications: Vec<TagSpecification>,
}

/// DescribeSnapshots's parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DescribeSnapshotsRequest {
    pub snapshot_ids: Vec<String>,
    /// "self" or the account id; every snapshot here is owned by "self".
    pub owner_ids: Vec<String>,
    /// snapshot-id, volume-id, status, description, volume-size, tag:KEY, tag-key.
    pub filters: Vec<Filter>,
    /// 5..=1000; not together with snapshot_ids.
    pub max_results: Option<i32>,
    pub next_token: Option<String>,
}

/// CopySnapshot's parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CopySnapshotRequest {
    /// The region whose snapshot store holds the source (this region when empty).
    pub source_region: String,
    pub source_snapshot_id: String,
    pub description: Option<String>,
    /// Must be this server's region when given.
    pub destination_region: Option<String>,
    pub tag_specifications: Vec<TagSpecification>,
    pub encrypted: Option<bool>,
    /// The copy's KMS key (id, ARN, alias or alias ARN); needs `encrypted`.
    pub kms_key_id: Option<String>,
}

/// StartSnapshot's parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StartSnapshotRequest {
    /// GiB, 1..=65536.
    pub volume_size: i64,
    /// Incremental: the new snapshot starts with this one's blocks.
    pub parent_snapshot_id: Option<String>,
    pub tags: Vec<Tag>,
    pub description: Option<String>,
    pub client_token: Option<String>,
    pub encrypted: Option<bool>,
    /// Minutes (default 60): a snapshot idle or uncompleted this long after its last call fails.
    pub timeout: Option<i32>,
}

/// RunInstances's parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunInstancesRequest {
    pub image_id: String,
    /// Default m5.large.
    pub instance_type: Option<String>,
    pub min_count: i32,
    pub max_count: i32,
    pub placement: Option<Placement>,
    /// Overlaid on the AMI's mappings by device name; NoDevice removes one.
    pub block_device_mappings: Vec<BlockDeviceMapping>,
    /// Base64 user data: a script run as the workload when no command is given.
    pub user_data: Option<String>,
    /// The workload: a shell command line (`sh -c`). This server's extension to RunInstances.
    pub workload: Option<String>,
    /// stop (default) | terminate: what happens when the workload exits on its own.
    pub instance_initiated_shutdown_behavior: Option<String>,
    pub tag_specifications: Vec<TagSpecification>,
    pub client_token: Option<String>,
    pub disable_api_termination: bool,
    /// A default subnet: the instance's zone (agreeing with `placement` when both are given).
    pub subnet_id: Option<String>,
    /// Security groups by id and by name: only the default VPC's `default` group exists.
    pub security_group_ids: Vec<String>,
    pub security_groups: Vec<String>,
    /// The key pair whose public key the instance's first boot authorises.
    pub key_name: Option<String>,
    /// `MetadataOptions`.
    pub metadata_options: Option<MetadataOptionsRequest>,
}

/// RunInstances' `MetadataOptions` and ModifyInstanceMetadataOptions' parameters: what is
/// absent stays as it was (at launch: EC2's default).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetadataOptionsRequest {
    /// optional | required
    pub http_tokens: Option<String>,
    /// 1–64
    pub http_put_response_hop_limit: Option<i32>,
    /// enabled | disabled
    pub http_endpoint: Option<String>,
    /// enabled | disabled
    pub instance_metadata_tags: Option<String>,
}

/// ReservationRegister's parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReservationRegisterRequest {
    pub volume_id: String,
    /// The host (attached instance) acting.
    pub instance_id: String,
    /// register: the new key; unregister/replace: the current key.
    pub key: u64,
    /// register | unregister | replace
    pub action: String,
    /// replace: the new key.
    pub new_key: u64,
}

/// ReservationAcquire's parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReservationAcquireRequest {
    pub volume_id: String,
    pub instance_id: String,
    /// The acting host's current key.
    pub key: u64,
    pub r#type: i32,
    /// acquire | preempt | preempt-abort
    pub action: String,
    /// preempt: the key of the registrations to remove.
    pub preempt_key: u64,
}

/// ReservationRelease's parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReservationReleaseRequest {
    pub volume_id: String,
    pub instance_id: String,
    pub key: u64,
    pub r#type: i32,
    /// Clear: remove every registration and the reservation.
    pub clear: bool,
}

/// RegisterImage's parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RegisterImageRequest {
    pub name: String,
    pub description: Option<String>,
    /// e.g. /dev/xvda or /dev/sda1; must be one of the mappings, with an Ebs.SnapshotId.
    pub root_device_name: String,
    pub block_device_mappings: Vec<BlockDeviceMapping>,
    /// x86_64 (default) | arm64 | i386
    pub architecture: Option<String>,
    /// hvm (default)
    pub virtualization_type: Option<String>,
    pub tag_specifications: Vec<TagSpecification>,
}

/// PutSnapshotBlock's parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PutSnapshotBlockRequest {
    pub snapshot_id: String,
    pub block_index: i32,
    pub block_data: Vec<u8>,
    /// Must be 524288.
    pub data_length: i32,
    /// Base64(SHA-256(block_data)).
    pub checksum: String,
    /// SHA256
    pub checksum_algorithm: String,
    pub progress: Option<i32>,
}

/// ListSnapshotBlocks's parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListSnapshotBlocksRequest {
    pub snapshot_id: String,
    /// 100..=10000 (default 10000).
    pub max_results: Option<i32>,
    pub next_token: Option<String>,
    pub starting_block_index: Option<i32>,
}

/// ListChangedBlocks's parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListChangedBlocksRequest {
    pub first_snapshot_id: Option<String>,
    pub second_snapshot_id: String,
    pub max_results: Option<i32>,
    pub next_token: Option<String>,
    pub starting_block_index: Option<i32>,
}

/// GetSnapshotBlock's parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GetSnapshotBlockRequest {
    pub snapshot_id: String,
    pub block_index: i32,
    pub block_token: String,
}

/// CompleteSnapshot's parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompleteSnapshotRequest {
    pub snapshot_id: String,
    /// Blocks written with PutSnapshotBlock (distinct indexes).
    pub changed_blocks_count: i32,
    /// Optional aggregate: Base64(SHA-256 of the per-block SHA-256 digests of the written blocks,
    /// concatenated in ascending block index).
    pub checksum: Option<String>,
    pub checksum_algorithm: Option<String>,
    /// LINEAR
    pub checksum_aggregation_method: Option<String>,
}

/// EnableFastSnapshotRestores's parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnableFastSnapshotRestoresRequest {
    pub availability_zones: Vec<String>,
    pub source_snapshot_ids: Vec<String>,
}

/// DisableFastSnapshotRestores's parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DisableFastSnapshotRestoresRequest {
    pub availability_zones: Vec<String>,
    pub source_snapshot_ids: Vec<String>,
}

/// DescribeFastSnapshotRestores's parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DescribeFastSnapshotRestoresRequest {
    /// availability-zone, snapshot-id, state, owner-id.
    pub filters: Vec<Filter>,
    pub max_results: Option<i32>,
    pub next_token: Option<String>,
}

/// DescribeInstances's parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DescribeInstancesRequest {
    pub instance_ids: Vec<String>,
    /// instance-id, instance-state-name, instance-state-code, instance-type, image-id,
    /// availability-zone, block-device-mapping.volume-id, reservation-id, tag:KEY, tag-key
    pub filters: Vec<Filter>,
    pub max_results: Option<i32>,
    pub next_token: Option<String>,
}

/// DescribeImages's parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DescribeImagesRequest {
    pub image_ids: Vec<String>,
    /// self | account id
    pub owners: Vec<String>,
    /// image-id, name, state, architecture, root-device-name, block-device-mapping.snapshot-id,
    /// tag:KEY, tag-key
    pub filters: Vec<Filter>,
    pub max_results: Option<i32>,
    pub next_token: Option<String>,
}

/// CreateImage's parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CreateImageRequest {
    pub instance_id: String,
    pub name: String,
    pub description: Option<String>,
    /// Snapshot the volumes while the workload runs (no reboot): crash-consistent only.
    pub no_reboot: bool,
    pub tag_specifications: Vec<TagSpecification>,
}

/// Tags for the resources of one type that a call creates.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TagSpecification {
    /// "volume" or "instance".
    pub resource_type: String,
    pub tags: Vec<Tag>,
}

/// A Describe filter: a name and the values any of which matches.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// e.g. "status", "volume-type", "availability-zone", "attachment.instance-id", "tag:Name".
    pub name: String,
    pub values: Vec<String>,
}

/// Where an instance runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Placement {
    pub availability_zone: String,
}

/// A device of an image or a launch: an EBS volume, an instance store disk, or none.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BlockDeviceMapping {
    pub device_name: String,
    pub ebs: Option<EbsBlockDevice>,
    /// Instance store: ephemeral0..ephemeral23.
    pub virtual_name: Option<String>,
    /// Suppresses a mapping of the AMI (any value; EC2 sends "").
    pub no_device: Option<String>,
}

/// The EBS volume of a block device mapping.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EbsBlockDevice {
    pub snapshot_id: Option<String>,
    /// GiB.
    pub volume_size: Option<i32>,
    pub volume_type: Option<String>,
    pub iops: Option<i32>,
    pub throughput: Option<i32>,
    pub delete_on_termination: Option<bool>,
    pub encrypted: Option<bool>,
    /// The KMS key of an encrypted volume; needs `encrypted`.
    pub kms_key_id: Option<String>,
}

/// One ModifyInstanceAttribute change.
#[derive(Debug, Clone, PartialEq)]
pub enum InstanceAttributeChange {
    DisableApiTermination(bool),
    /// stop | terminate.
    ShutdownBehavior(String),
    /// Only while stopped, to a type of the same architecture and instance store.
    InstanceType(String),
    /// Base64, at most 16 KiB decoded; only while stopped.
    UserData(String),
    /// DeleteOnTermination by device name of attached EBS volumes.
    DeleteOnTermination(Vec<(String, bool)>),
}
