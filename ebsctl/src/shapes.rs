//! What each subcommand prints: protobuf replies as AWS-shaped structs (PascalCase names, AWS field order).
//!
//! Like the AWS CLI, optional numbers (`Iops`, `Throughput`) and empty `Tags` are left out, while an empty
//! `SnapshotId` stays `""`. Fields that are the emulator's own and not EC2's are named so
//! (`NbdUri`, `Generation`, `InitializationProgress`) or kept apart (a snapshot's `Ebsemu`).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use proto::ebs::v1 as pb;
use serde::Serialize;

/// A volume, as `create-volume` and `describe-volumes` print it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Volume {
    pub attachments: Vec<Attachment>,
    pub availability_zone: String,
    pub create_time: String,
    pub encrypted: bool,
    pub size: i32,
    pub snapshot_id: String,
    pub state: String,
    pub volume_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iops: Option<i32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    pub volume_type: String,
    pub multi_attach_enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throughput: Option<i32>,
    /// Restored from a snapshot using a fast snapshot restore credit of its zone: fully initialized
    /// when it became available.
    pub fast_restored: bool,
    /// Volumes restored from a snapshot: % of their blocks already local. Left out otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initialization_progress: Option<i32>,
}

impl From<pb::Volume> for Volume {
    fn from(v: pb::Volume) -> Self {
        Self {
            attachments: v.attachments.into_iter().map(Attachment::listed).collect(),
            availability_zone: v.availability_zone,
            create_time: v.create_time,
            encrypted: v.encrypted,
            size: v.size,
            snapshot_id: v.snapshot_id,
            state: v.state,
            volume_id: v.volume_id,
            iops: v.iops,
            tags: v.tags.into_iter().map(Tag::from).collect(),
            volume_type: v.volume_type,
            multi_attach_enabled: v.multi_attach_enabled,
            throughput: v.throughput,
            fast_restored: v.fast_restored,
            initialization_progress: v.initialization_progress,
        }
    }
}

/// A volume attachment, plus the emulator's `NbdUri` and fencing `Generation`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Attachment {
    pub attach_time: String,
    pub device: String,
    pub instance_id: String,
    pub state: String,
    pub volume_id: String,
    /// Shown where AWS shows it: in a volume's or host's list, not in attach/detach replies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delete_on_termination: Option<bool>,
    pub nbd_uri: String,
    pub generation: u64,
}

impl Attachment {
    /// As an element of `Volume.Attachments` / `Host.Attachments` (with `DeleteOnTermination`).
    pub fn listed(a: pb::VolumeAttachment) -> Self {
        let delete_on_termination = Some(a.delete_on_termination);
        Self {
            delete_on_termination,
            ..Self::reply(a)
        }
    }

    /// As the reply of attach-volume / detach-volume (no `DeleteOnTermination`, like AWS).
    pub fn reply(a: pb::VolumeAttachment) -> Self {
        Self {
            attach_time: a.attach_time,
            device: a.device,
            instance_id: a.instance_id,
            state: a.state,
            volume_id: a.volume_id,
            delete_on_termination: None,
            nbd_uri: a.nbd_uri,
            generation: a.generation,
        }
    }
}

/// A resource tag.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    pub key: String,
    pub value: String,
}

impl From<pb::Tag> for Tag {
    fn from(t: pb::Tag) -> Self {
        Self {
            key: t.key,
            value: t.value,
        }
    }
}

/// A registered host.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Host {
    pub instance_id: String,
    pub name: String,
    pub availability_zone: String,
    pub state: String,
    pub launch_time: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    pub attachments: Vec<Attachment>,
}

impl From<pb::Host> for Host {
    fn from(h: pb::Host) -> Self {
        Self {
            instance_id: h.instance_id,
            name: h.name,
            availability_zone: h.availability_zone,
            state: h.state,
            launch_time: h.launch_time,
            tags: h.tags.into_iter().map(Tag::from).collect(),
            attachments: h.attachments.into_iter().map(Attachment::listed).collect(),
        }
    }
}

/// `describe-volumes`: every page merged, or one page and its `NextToken`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Volumes {
    pub volumes: Vec<Volume>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// `describe-registered-hosts`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Hosts {
    pub hosts: Vec<Host>,
}

/// `deregister-host`: the attachments it detached (and fenced).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Detached {
    pub detached: Vec<Attachment>,
}

/// A snapshot, as `create-snapshot` and `describe-snapshots` print it. An empty `StateMessage`,
/// `CompletionTime` (not completed yet), `SourceRegion` and `SourceSnapshotId` (not a copy) are left
/// out, as are empty `Tags`. The emulator's own counters are not EC2 fields: they sit apart, under
/// `Ebsemu`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Snapshot {
    pub snapshot_id: String,
    pub volume_id: String,
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_message: Option<String>,
    pub start_time: String,
    /// `"0%"`..`"100%"`, a string as EC2 has it.
    pub progress: String,
    pub volume_size: i32,
    pub description: String,
    pub encrypted: bool,
    pub owner_id: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<String>,
    pub full_snapshot_size_in_bytes: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_snapshot_id: Option<String>,
    pub ebsemu: SnapshotCounters,
}

/// A snapshot's `Ebsemu` object: how the emulator made it. Not EC2 fields.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SnapshotCounters {
    /// Non-zero blocks the snapshot references.
    pub block_count: i64,
    /// Blocks the snapshot read from its volume (or source store) and wrote to the store.
    pub blocks_written: i64,
}

impl From<pb::Snapshot> for Snapshot {
    fn from(s: pb::Snapshot) -> Self {
        Self {
            snapshot_id: s.snapshot_id,
            volume_id: s.volume_id,
            state: s.state,
            state_message: non_empty(s.state_message),
            start_time: s.start_time,
            progress: s.progress,
            volume_size: s.volume_size,
            description: s.description,
            encrypted: s.encrypted,
            owner_id: s.owner_id,
            tags: s.tags.into_iter().map(Tag::from).collect(),
            completion_time: non_empty(s.completion_time),
            full_snapshot_size_in_bytes: s.full_snapshot_size_in_bytes,
            source_region: non_empty(s.source_region),
            source_snapshot_id: non_empty(s.source_snapshot_id),
            ebsemu: SnapshotCounters {
                block_count: s.block_count,
                blocks_written: s.blocks_written,
            },
        }
    }
}

/// `describe-snapshots`: every page merged, or one page and its `NextToken`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Snapshots {
    pub snapshots: Vec<Snapshot>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// `copy-snapshot`: the new snapshot's ID, as EC2 answers CopySnapshot.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CopiedSnapshot {
    pub snapshot_id: String,
}

/// A (snapshot, availability zone) pair's fast snapshot restore, as `enable-`, `disable-` and
/// `describe-fast-snapshot-restores` print it. A time the pair has not reached yet (empty) is left
/// out.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FastSnapshotRestore {
    pub snapshot_id: String,
    pub availability_zone: String,
    /// `enabling`, `optimizing`, `enabled`, `disabling` or `disabled`.
    pub state: String,
    pub state_transition_reason: String,
    pub owner_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabling_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optimizing_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabling_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_time: Option<String>,
}

impl From<pb::FastSnapshotRestore> for FastSnapshotRestore {
    fn from(f: pb::FastSnapshotRestore) -> Self {
        Self {
            snapshot_id: f.snapshot_id,
            availability_zone: f.availability_zone,
            state: f.state,
            state_transition_reason: f.state_transition_reason,
            owner_id: f.owner_id,
            enabling_time: non_empty(f.enabling_time),
            optimizing_time: non_empty(f.optimizing_time),
            enabled_time: non_empty(f.enabled_time),
            disabling_time: non_empty(f.disabling_time),
            disabled_time: non_empty(f.disabled_time),
        }
    }
}

/// `enable-fast-snapshot-restores` and `disable-fast-snapshot-restores`: the pairs that succeeded,
/// and the errors of those that failed grouped by snapshot, as EC2 answers (the protobuf reply has
/// one error per pair).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FastSnapshotRestoresResult {
    pub successful: Vec<FastSnapshotRestore>,
    pub unsuccessful: Vec<FastSnapshotRestoreErrorItem>,
}

/// One snapshot's failed zones.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FastSnapshotRestoreErrorItem {
    pub snapshot_id: String,
    pub fast_snapshot_restore_state_errors: Vec<FastSnapshotRestoreStateErrorItem>,
}

/// One zone in which a snapshot's fast snapshot restore could not be enabled or disabled.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FastSnapshotRestoreStateErrorItem {
    pub availability_zone: String,
    pub error: FastSnapshotRestoreStateError,
}

/// The EC2 error of a failed pair, e.g. `InvalidSnapshot.NotFound`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FastSnapshotRestoreStateError {
    pub code: String,
    pub message: String,
}

impl From<pb::FastSnapshotRestoresResult> for FastSnapshotRestoresResult {
    fn from(r: pb::FastSnapshotRestoresResult) -> Self {
        // Snapshots in the order of their first error; each one's zones in the order received.
        let mut unsuccessful: Vec<FastSnapshotRestoreErrorItem> = Vec::new();
        for e in r.unsuccessful {
            let zone = FastSnapshotRestoreStateErrorItem {
                availability_zone: e.availability_zone,
                error: FastSnapshotRestoreStateError {
                    code: e.code,
                    message: e.message,
                },
            };
            match unsuccessful
                .iter_mut()
                .find(|item| item.snapshot_id == e.snapshot_id)
            {
                Some(item) => item.fast_snapshot_restore_state_errors.push(zone),
                None => unsuccessful.push(FastSnapshotRestoreErrorItem {
                    snapshot_id: e.snapshot_id,
                    fast_snapshot_restore_state_errors: vec![zone],
                }),
            }
        }
        Self {
            successful: r
                .successful
                .into_iter()
                .map(FastSnapshotRestore::from)
                .collect(),
            unsuccessful,
        }
    }
}

/// `describe-fast-snapshot-restores`: every page merged, or one page and its `NextToken`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FastSnapshotRestores {
    pub fast_snapshot_restores: Vec<FastSnapshotRestore>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// A volume modification, as `modify-volume` and `describe-volumes-modifications` print it (AWS field
/// order). An empty `StatusMessage` or `EndTime` (not completed yet) is left out, as are absent IOPS and
/// throughput.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeModification {
    pub volume_id: String,
    pub modification_state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    pub target_size: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_iops: Option<i32>,
    pub target_volume_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_throughput: Option<i32>,
    pub target_multi_attach_enabled: bool,
    pub original_size: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_iops: Option<i32>,
    pub original_volume_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_throughput: Option<i32>,
    pub original_multi_attach_enabled: bool,
    pub progress: i32,
    pub start_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
}

/// An instance type, as `describe-instance-types` prints it (AWS names and order). Left out:
/// `InstanceStorageInfo` of an EBS-only type, `GpuInfo` of a type without GPUs, `Hypervisor` of a
/// bare metal type.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceType {
    pub instance_type: String,
    pub current_generation: bool,
    pub v_cpu_info: VCpuInfo,
    pub memory_info: MemoryInfo,
    pub instance_storage_supported: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_storage_info: Option<InstanceStorageInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ebs_info: Option<EbsInfo>,
    pub processor_info: ProcessorInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_info: Option<GpuInfo>,
    pub network_info: NetworkInfo,
    pub burstable_performance_supported: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hypervisor: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VCpuInfo {
    pub default_v_cpus: i32,
}

#[derive(Debug, Serialize)]
pub struct MemoryInfo {
    #[serde(rename = "SizeInMiB")]
    pub size_in_mib: i64,
}

/// The instance store: its total and its disks (GB, 10^9 bytes).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceStorageInfo {
    #[serde(rename = "TotalSizeInGB")]
    pub total_size_in_gb: i64,
    pub disks: Vec<Disk>,
    pub nvme_support: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Disk {
    #[serde(rename = "SizeInGB")]
    pub size_in_gb: i64,
    pub count: i32,
    /// `ssd` or `hdd`.
    pub r#type: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EbsInfo {
    pub ebs_optimized_support: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ebs_optimized_info: Option<EbsOptimizedInfo>,
    pub nvme_support: String,
}

/// The dedicated EBS bandwidth: Mbps, MB/s (128 KiB I/O) and IOPS (16 KiB I/O).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EbsOptimizedInfo {
    pub baseline_bandwidth_in_mbps: i32,
    #[serde(rename = "BaselineThroughputInMBps")]
    pub baseline_throughput_in_mb_ps: f64,
    pub baseline_iops: i32,
    pub maximum_bandwidth_in_mbps: i32,
    #[serde(rename = "MaximumThroughputInMBps")]
    pub maximum_throughput_in_mb_ps: f64,
    pub maximum_iops: i32,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProcessorInfo {
    pub supported_architectures: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GpuInfo {
    pub gpus: Vec<Gpu>,
    #[serde(rename = "TotalGpuMemoryInMiB")]
    pub total_gpu_memory_in_mib: i64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Gpu {
    pub name: String,
    pub manufacturer: String,
    pub count: i32,
    /// Memory of each GPU.
    pub memory_info: MemoryInfo,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkInfo {
    pub network_performance: String,
}

impl From<pb::InstanceTypeInfo> for InstanceType {
    fn from(t: pb::InstanceTypeInfo) -> Self {
        let gpu_info = (!t.gpus.is_empty()).then(|| GpuInfo {
            total_gpu_memory_in_mib: t
                .gpus
                .iter()
                .map(|g| i64::from(g.count) * g.memory_size_in_mib)
                .sum(),
            gpus: t
                .gpus
                .into_iter()
                .map(|g| Gpu {
                    name: g.name,
                    manufacturer: g.manufacturer,
                    count: g.count,
                    memory_info: MemoryInfo {
                        size_in_mib: g.memory_size_in_mib,
                    },
                })
                .collect(),
        });
        Self {
            instance_type: t.instance_type,
            current_generation: t.current_generation,
            v_cpu_info: VCpuInfo {
                default_v_cpus: t.default_vcpus,
            },
            memory_info: MemoryInfo {
                size_in_mib: t.memory_size_in_mib,
            },
            instance_storage_supported: t.instance_storage_supported,
            instance_storage_info: t.instance_storage_info.map(|s| InstanceStorageInfo {
                total_size_in_gb: s.total_size_in_gb,
                disks: s
                    .disks
                    .into_iter()
                    .map(|d| Disk {
                        size_in_gb: d.size_in_gb,
                        count: d.count,
                        r#type: d.r#type,
                    })
                    .collect(),
                nvme_support: s.nvme_support,
            }),
            ebs_info: t.ebs_info.map(|e| EbsInfo {
                ebs_optimized_support: e.ebs_optimized_support,
                ebs_optimized_info: e.ebs_optimized_info.map(|o| EbsOptimizedInfo {
                    baseline_bandwidth_in_mbps: o.baseline_bandwidth_in_mbps,
                    baseline_throughput_in_mb_ps: o.baseline_throughput_in_mb_ps,
                    baseline_iops: o.baseline_iops,
                    maximum_bandwidth_in_mbps: o.maximum_bandwidth_in_mbps,
                    maximum_throughput_in_mb_ps: o.maximum_throughput_in_mb_ps,
                    maximum_iops: o.maximum_iops,
                }),
                nvme_support: e.nvme_support,
            }),
            processor_info: ProcessorInfo {
                supported_architectures: t.supported_architectures,
            },
            gpu_info,
            network_info: NetworkInfo {
                network_performance: t.network_performance,
            },
            burstable_performance_supported: t.burstable_performance_supported,
            hypervisor: non_empty(t.hypervisor),
        }
    }
}

/// `describe-instance-types`: every page merged, or one page and its `NextToken`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceTypes {
    pub instance_types: Vec<InstanceType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// An AMI, as `describe-images` prints it. An empty `Description` and empty `Tags` are left out,
/// as EC2 does.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Image {
    pub image_id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `available` (EC2 also has `pending`, `failed`, `deregistered`...).
    pub state: String,
    pub creation_date: String,
    pub root_device_name: String,
    /// `ebs`.
    pub root_device_type: String,
    pub architecture: String,
    pub virtualization_type: String,
    pub block_device_mappings: Vec<BlockDeviceMapping>,
    pub owner_id: String,
    pub public: bool,
    /// `machine`.
    pub image_type: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
}

/// A device of an AMI: an EBS volume (`Ebs`), an instance store volume (`VirtualName`) or none
/// (`NoDevice`, an empty string as EC2 prints it). Members the server left unset are left out.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct BlockDeviceMapping {
    pub device_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ebs: Option<EbsBlockDevice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtual_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_device: Option<String>,
}

/// The EBS volume of a mapping (GiB, IOPS, MiB/s).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EbsBlockDevice {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_size: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iops: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throughput: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delete_on_termination: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encrypted: Option<bool>,
}

impl From<pb::BlockDeviceMapping> for BlockDeviceMapping {
    fn from(m: pb::BlockDeviceMapping) -> Self {
        Self {
            device_name: m.device_name,
            ebs: m.ebs.map(|e| EbsBlockDevice {
                // An empty ID is no snapshot (a blank volume), as the optional's absence is.
                snapshot_id: e.snapshot_id.filter(|s| !s.is_empty()),
                volume_size: e.volume_size,
                volume_type: e.volume_type,
                iops: e.iops,
                throughput: e.throughput,
                delete_on_termination: e.delete_on_termination,
                encrypted: e.encrypted,
            }),
            virtual_name: m.virtual_name,
            no_device: m.no_device,
        }
    }
}

impl From<pb::Image> for Image {
    fn from(i: pb::Image) -> Self {
        Self {
            image_id: i.image_id,
            name: i.name,
            description: non_empty(i.description),
            state: i.state,
            creation_date: i.creation_date,
            root_device_name: i.root_device_name,
            root_device_type: i.root_device_type,
            architecture: i.architecture,
            virtualization_type: i.virtualization_type,
            block_device_mappings: i
                .block_device_mappings
                .into_iter()
                .map(BlockDeviceMapping::from)
                .collect(),
            owner_id: i.owner_id,
            public: i.public,
            image_type: i.image_type,
            tags: i.tags.into_iter().map(Tag::from).collect(),
        }
    }
}

/// `describe-images`: every page merged, or one page and its `NextToken`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Images {
    pub images: Vec<Image>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// `register-image` and `create-image`: the new AMI's ID, as EC2 answers RegisterImage and
/// CreateImage.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RegisteredImage {
    pub image_id: String,
}

/// An instance, as `run-instances` and `describe-instances` print it (AWS names and order). A
/// missing `StateReason` and empty `Tags` are left out, as EC2 does. `InstanceInitiatedShutdownBehavior`
/// (which EC2 shows only through DescribeInstanceAttribute) follows the EC2 fields, then the
/// emulator's own, which are not EC2 fields: `InstanceStoreDevices`, `WorkloadPid` (left out when no
/// workload runs), `DevicesFile` and `DeviceUris` (sorted by device name; empty unless running).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Instance {
    pub ami_launch_index: i32,
    pub image_id: String,
    pub instance_id: String,
    pub instance_type: String,
    pub launch_time: String,
    pub placement: Placement,
    pub state: InstanceState,
    pub state_transition_reason: String,
    pub architecture: String,
    pub block_device_mappings: Vec<InstanceBlockDeviceMapping>,
    pub ebs_optimized: bool,
    pub root_device_name: String,
    /// `ebs`.
    pub root_device_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<StateReason>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    pub virtualization_type: String,
    pub cpu_options: CpuOptions,
    /// `stop` or `terminate`.
    pub instance_initiated_shutdown_behavior: String,
    pub instance_store_devices: Vec<InstanceStoreDevice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload_pid: Option<i32>,
    pub devices_file: String,
    pub device_uris: BTreeMap<String, String>,
}

/// Where an instance runs.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Placement {
    pub availability_zone: String,
}

/// An instance's state: 0 `pending`, 16 `running`, 32 `shutting-down`, 48 `terminated`,
/// 64 `stopping`, 80 `stopped`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceState {
    pub code: i32,
    pub name: String,
}

impl From<Option<pb::InstanceState>> for InstanceState {
    /// A state the server left out prints as code 0 with an empty name.
    fn from(s: Option<pb::InstanceState>) -> Self {
        let s = s.unwrap_or_default();
        Self {
            code: s.code,
            name: s.name,
        }
    }
}

/// Why an instance last changed state, e.g. `Client.UserInitiatedShutdown`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StateReason {
    pub code: String,
    pub message: String,
}

/// An EBS volume of an instance.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceBlockDeviceMapping {
    pub device_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ebs: Option<EbsInstanceBlockDevice>,
}

/// The attachment of an instance's EBS volume.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EbsInstanceBlockDevice {
    pub attach_time: String,
    pub delete_on_termination: bool,
    /// `attaching`, `attached`, `detaching` or `detached`.
    pub status: String,
    pub volume_id: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CpuOptions {
    pub core_count: i32,
}

/// An instance store disk (a local file, erased on stop). Not an EC2 field.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceStoreDevice {
    pub device_name: String,
    /// `ephemeral0` … `ephemeral23`.
    pub virtual_name: String,
    pub size_bytes: i64,
}

impl From<pb::Instance> for Instance {
    fn from(i: pb::Instance) -> Self {
        Self {
            ami_launch_index: i.ami_launch_index,
            image_id: i.image_id,
            instance_id: i.instance_id,
            instance_type: i.instance_type,
            launch_time: i.launch_time,
            placement: Placement {
                availability_zone: i.placement.unwrap_or_default().availability_zone,
            },
            state: InstanceState::from(i.state),
            state_transition_reason: i.state_transition_reason,
            architecture: i.architecture,
            block_device_mappings: i
                .block_device_mappings
                .into_iter()
                .map(|m| InstanceBlockDeviceMapping {
                    device_name: m.device_name,
                    ebs: m.ebs.map(|e| EbsInstanceBlockDevice {
                        attach_time: e.attach_time,
                        delete_on_termination: e.delete_on_termination,
                        status: e.status,
                        volume_id: e.volume_id,
                    }),
                })
                .collect(),
            ebs_optimized: i.ebs_optimized,
            root_device_name: i.root_device_name,
            root_device_type: i.root_device_type,
            // An empty reason is no reason.
            state_reason: i
                .state_reason
                .filter(|r| !r.code.is_empty() || !r.message.is_empty())
                .map(|r| StateReason {
                    code: r.code,
                    message: r.message,
                }),
            tags: i.tags.into_iter().map(Tag::from).collect(),
            virtualization_type: i.virtualization_type,
            cpu_options: CpuOptions {
                core_count: i.cpu_core_count,
            },
            instance_initiated_shutdown_behavior: i.instance_initiated_shutdown_behavior,
            instance_store_devices: i
                .instance_store_devices
                .into_iter()
                .map(|d| InstanceStoreDevice {
                    device_name: d.device_name,
                    virtual_name: d.virtual_name,
                    size_bytes: d.size_bytes,
                })
                .collect(),
            workload_pid: i.workload_pid,
            devices_file: i.devices_file,
            device_uris: i.device_uris.into_iter().collect(),
        }
    }
}

/// A reservation: the instances one RunInstances launched. Printed whole by `run-instances`, as
/// EC2 answers RunInstances, and as an element of `describe-instances`' `Reservations`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Reservation {
    pub instances: Vec<Instance>,
    pub owner_id: String,
    pub reservation_id: String,
}

impl From<pb::Reservation> for Reservation {
    fn from(r: pb::Reservation) -> Self {
        Self {
            instances: r.instances.into_iter().map(Instance::from).collect(),
            owner_id: r.owner_id,
            reservation_id: r.reservation_id,
        }
    }
}

/// `describe-instances`: every page merged, or one page and its `NextToken`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Reservations {
    pub reservations: Vec<Reservation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// One instance's state change, as start-, stop- and terminate-instances print it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceStateChange {
    pub current_state: InstanceState,
    pub instance_id: String,
    pub previous_state: InstanceState,
}

impl InstanceStateChange {
    /// Every change of a reply, in its order.
    pub fn all(changes: pb::InstanceStateChanges) -> Vec<Self> {
        changes
            .instances
            .into_iter()
            .map(|c| Self {
                current_state: InstanceState::from(c.current_state),
                instance_id: c.instance_id,
                previous_state: InstanceState::from(c.previous_state),
            })
            .collect()
    }
}

/// `start-instances`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StartingInstances {
    pub starting_instances: Vec<InstanceStateChange>,
}

/// `stop-instances`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StoppingInstances {
    pub stopping_instances: Vec<InstanceStateChange>,
}

/// `terminate-instances`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TerminatingInstances {
    pub terminating_instances: Vec<InstanceStateChange>,
}

/// `get-console-output`: the output decoded, as the AWS CLI prints it (the server sends base64;
/// bytes that are not UTF-8 become U+FFFD). An output that is not base64 is printed as received,
/// as the AWS CLI does.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConsoleOutput {
    pub instance_id: String,
    pub timestamp: String,
    pub output: String,
}

impl From<pb::GetConsoleOutputResponse> for ConsoleOutput {
    fn from(r: pb::GetConsoleOutputResponse) -> Self {
        let output = match B64.decode(r.output.as_bytes()) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(_) => r.output,
        };
        Self {
            instance_id: r.instance_id,
            timestamp: r.timestamp,
            output,
        }
    }
}

/// `Some(s)` unless `s` is empty.
fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

impl From<pb::VolumeModification> for VolumeModification {
    fn from(m: pb::VolumeModification) -> Self {
        Self {
            volume_id: m.volume_id,
            modification_state: m.modification_state,
            status_message: non_empty(m.status_message),
            target_size: m.target_size,
            target_iops: m.target_iops,
            target_volume_type: m.target_volume_type,
            target_throughput: m.target_throughput,
            target_multi_attach_enabled: m.target_multi_attach_enabled,
            original_size: m.original_size,
            original_iops: m.original_iops,
            original_volume_type: m.original_volume_type,
            original_throughput: m.original_throughput,
            original_multi_attach_enabled: m.original_multi_attach_enabled,
            progress: m.progress,
            start_time: m.start_time,
            end_time: non_empty(m.end_time),
        }
    }
}

/// `modify-volume`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ModifiedVolume {
    pub volume_modification: VolumeModification,
}

/// `describe-volumes-modifications`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VolumesModifications {
    pub volumes_modifications: Vec<VolumeModification>,
}

/// One volume's metrics under their CloudWatch names (`AWS/EBS` namespace), plus the limits in force
/// and the time spent in the throttle.
/// Counters are cumulative since the volume was opened; `VolumeThroughputPercentage` (io1/io2) and
/// `BurstBalance` (gp2, st1, sc1, standard) are left out where they do not apply.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeMetrics {
    pub volume_id: String,
    pub volume_read_ops: u64,
    pub volume_write_ops: u64,
    pub volume_read_bytes: u64,
    pub volume_write_bytes: u64,
    pub volume_total_read_time: f64,
    pub volume_total_write_time: f64,
    pub volume_idle_time: f64,
    pub volume_queue_length: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_throughput_percentage: Option<f64>,
    pub volume_consumed_read_write_ops: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burst_balance: Option<f64>,
    #[serde(rename = "VolumeIOPSExceededCheck")]
    pub volume_iops_exceeded_check: u32,
    pub volume_throughput_exceeded_check: u32,
    pub provisioned_iops: u64,
    pub provisioned_throughput_bytes: u64,
    /// Seconds requests spent held by the throttle (summed over requests); not a CloudWatch metric.
    pub throttle_wait_time: f64,
}

impl From<pb::VolumeMetrics> for VolumeMetrics {
    fn from(m: pb::VolumeMetrics) -> Self {
        Self {
            volume_id: m.volume_id,
            volume_read_ops: m.volume_read_ops,
            volume_write_ops: m.volume_write_ops,
            volume_read_bytes: m.volume_read_bytes,
            volume_write_bytes: m.volume_write_bytes,
            volume_total_read_time: m.volume_total_read_time,
            volume_total_write_time: m.volume_total_write_time,
            volume_idle_time: m.volume_idle_time,
            volume_queue_length: m.volume_queue_length,
            volume_throughput_percentage: m.volume_throughput_percentage,
            volume_consumed_read_write_ops: m.volume_consumed_read_write_ops,
            burst_balance: m.burst_balance,
            volume_iops_exceeded_check: m.volume_iops_exceeded_check,
            volume_throughput_exceeded_check: m.volume_throughput_exceeded_check,
            provisioned_iops: m.provisioned_iops,
            provisioned_throughput_bytes: m.provisioned_throughput_bytes,
            throttle_wait_time: m.throttle_wait_time,
        }
    }
}

/// `get-volume-metrics`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Metrics {
    pub metrics: Vec<VolumeMetrics>,
}

/// `describe-volume-status`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeStatuses {
    pub volume_statuses: Vec<VolumeStatusItem>,
}

/// One volume's status checks.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeStatusItem {
    pub volume_id: String,
    pub availability_zone: String,
    pub volume_status: VolumeStatusInfo,
    pub actions: Vec<serde_json::Value>,
    pub events: Vec<serde_json::Value>,
}

/// `ok` or `impaired`, with the checks behind it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeStatusInfo {
    pub status: String,
    pub details: Vec<VolumeStatusDetail>,
}

/// One check (`io-enabled`, `io-performance`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeStatusDetail {
    pub name: String,
    pub status: String,
}

impl From<pb::VolumeStatusItem> for VolumeStatusItem {
    fn from(i: pb::VolumeStatusItem) -> Self {
        let s = i.volume_status.unwrap_or_default();
        VolumeStatusItem {
            volume_id: i.volume_id,
            availability_zone: i.availability_zone,
            volume_status: VolumeStatusInfo {
                status: s.status,
                details: s
                    .details
                    .into_iter()
                    .map(|d| VolumeStatusDetail {
                        name: d.name,
                        status: d.status,
                    })
                    .collect(),
            },
            actions: vec![],
            events: vec![],
        }
    }
}

/// A volume's NVMe-style reservation, as every `resv-*` command prints it. `Type` and `Holder` are
/// `null` when no reservation is held; `Key`s are numbers.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReservationReport {
    pub volume_id: String,
    pub generation: u32,
    pub r#type: Option<String>,
    pub holder: Option<String>,
    pub registrants: Vec<Registrant>,
}

/// A registered host and its key.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Registrant {
    pub instance_id: String,
    pub key: u64,
    pub holder: bool,
}

/// A reservation type's name, as `--type` spells it; `None` for unspecified (no reservation).
pub fn reservation_type_name(t: pb::ReservationType) -> Option<&'static str> {
    match t {
        pb::ReservationType::Unspecified => None,
        pb::ReservationType::WriteExclusive => Some("write-exclusive"),
        pb::ReservationType::ExclusiveAccess => Some("exclusive-access"),
        pb::ReservationType::WriteExclusiveRegistrantsOnly => {
            Some("write-exclusive-registrants-only")
        }
        pb::ReservationType::ExclusiveAccessRegistrantsOnly => {
            Some("exclusive-access-registrants-only")
        }
        pb::ReservationType::WriteExclusiveAllRegistrants => {
            Some("write-exclusive-all-registrants")
        }
        pb::ReservationType::ExclusiveAccessAllRegistrants => {
            Some("exclusive-access-all-registrants")
        }
    }
}

impl From<pb::ReservationStatus> for ReservationReport {
    fn from(r: pb::ReservationStatus) -> Self {
        // A type this client does not know (a newer server) prints as its number.
        let r#type = match pb::ReservationType::try_from(r.r#type) {
            Ok(t) => reservation_type_name(t).map(str::to_owned),
            Err(_) => Some(r.r#type.to_string()),
        };
        Self {
            volume_id: r.volume_id,
            generation: r.generation,
            r#type,
            holder: non_empty(r.holder_instance_id),
            registrants: r
                .registrants
                .into_iter()
                .map(|g| Registrant {
                    instance_id: g.instance_id,
                    key: g.key,
                    holder: g.holder,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn attachment() -> pb::VolumeAttachment {
        pb::VolumeAttachment {
            volume_id: "vol-0123456789abcdef0".into(),
            instance_id: "i-0123456789abcdef0".into(),
            device: "/dev/sdf".into(),
            state: "attached".into(),
            attach_time: "2024-05-01T12:00:01.000Z".into(),
            delete_on_termination: false,
            nbd_uri: "nbd://127.0.0.1:10809/tok".into(),
            generation: 3,
        }
    }

    pub(crate) fn volume() -> pb::Volume {
        pb::Volume {
            volume_id: "vol-0123456789abcdef0".into(),
            size: 8,
            snapshot_id: String::new(),
            availability_zone: "us-east-1a".into(),
            state: "in-use".into(),
            create_time: "2024-05-01T12:00:00.000Z".into(),
            attachments: vec![attachment()],
            volume_type: "gp3".into(),
            iops: Some(3000),
            throughput: Some(125),
            encrypted: false,
            multi_attach_enabled: false,
            fast_restored: false,
            tags: vec![pb::Tag {
                key: "Name".into(),
                value: "db".into(),
            }],
            initialization_progress: None,
        }
    }

    /// A completed snapshot of [`volume`], tagged, with every optional field empty.
    pub(crate) fn snapshot() -> pb::Snapshot {
        pb::Snapshot {
            snapshot_id: "snap-0123456789abcdef0".into(),
            volume_id: "vol-0123456789abcdef0".into(),
            state: "completed".into(),
            state_message: String::new(),
            start_time: "2024-05-01T12:00:03.000Z".into(),
            progress: "100%".into(),
            volume_size: 8,
            description: "nightly".into(),
            encrypted: false,
            owner_id: "self".into(),
            tags: vec![pb::Tag {
                key: "Name".into(),
                value: "db".into(),
            }],
            completion_time: "2024-05-01T12:00:05.000Z".into(),
            full_snapshot_size_in_bytes: 1_048_576,
            block_count: 12,
            blocks_written: 4,
            source_region: String::new(),
            source_snapshot_id: String::new(),
        }
    }

    /// [`snapshot`]'s fast snapshot restore in us-east-1a, `enabled`: not disabling or disabled.
    pub(crate) fn fast_snapshot_restore() -> pb::FastSnapshotRestore {
        pb::FastSnapshotRestore {
            snapshot_id: "snap-0123456789abcdef0".into(),
            availability_zone: "us-east-1a".into(),
            state: "enabled".into(),
            state_transition_reason: "Client.UserInitiated".into(),
            owner_id: "000000000000".into(),
            enabling_time: "2024-05-01T12:00:06.000Z".into(),
            optimizing_time: "2024-05-01T12:00:06.000Z".into(),
            enabled_time: "2024-05-01T12:01:06.000Z".into(),
            disabling_time: String::new(),
            disabled_time: String::new(),
        }
    }

    /// A failed (snapshot, zone) pair.
    pub(crate) fn fast_snapshot_restore_error(
        snapshot_id: &str,
        availability_zone: &str,
        code: &str,
    ) -> pb::FastSnapshotRestoreError {
        pb::FastSnapshotRestoreError {
            snapshot_id: snapshot_id.into(),
            availability_zone: availability_zone.into(),
            code: code.into(),
            message: format!("{snapshot_id} in {availability_zone}: {code}"),
        }
    }

    pub(crate) fn modification() -> pb::VolumeModification {
        pb::VolumeModification {
            volume_id: "vol-0123456789abcdef0".into(),
            modification_state: "modifying".into(),
            status_message: String::new(),
            target_size: 16,
            target_iops: Some(4000),
            target_volume_type: "io2".into(),
            target_throughput: None,
            target_multi_attach_enabled: true,
            original_size: 8,
            original_iops: Some(3000),
            original_volume_type: "gp3".into(),
            original_throughput: Some(125),
            original_multi_attach_enabled: false,
            progress: 0,
            start_time: "2024-05-01T12:00:02.000Z".into(),
            end_time: String::new(),
        }
    }

    /// An io2 volume's metrics: with `VolumeThroughputPercentage`, without `BurstBalance`.
    pub(crate) fn metrics() -> pb::VolumeMetrics {
        pb::VolumeMetrics {
            volume_id: "vol-0123456789abcdef0".into(),
            volume_read_ops: 100,
            volume_write_ops: 50,
            volume_read_bytes: 409_600,
            volume_write_bytes: 3_276_800,
            volume_total_read_time: 0.25,
            volume_total_write_time: 0.5,
            volume_idle_time: 12.5,
            volume_queue_length: 2,
            volume_throughput_percentage: Some(99.5),
            volume_consumed_read_write_ops: 150,
            burst_balance: None,
            volume_iops_exceeded_check: 1,
            volume_throughput_exceeded_check: 0,
            provisioned_iops: 4000,
            provisioned_throughput_bytes: 1_048_576_000,
            throttle_wait_time: 0.125,
        }
    }

    /// An all-registrants reservation of two hosts, one key over 2^53.
    pub(crate) fn reservation_report() -> pb::ReservationStatus {
        pb::ReservationStatus {
            volume_id: "vol-0123456789abcdef0".into(),
            generation: 4,
            r#type: pb::ReservationType::WriteExclusiveAllRegistrants.into(),
            holder_instance_id: "i-0123456789abcdef0".into(),
            registrants: vec![
                pb::Registrant {
                    instance_id: "i-0123456789abcdef0".into(),
                    key: 0xdead_beef,
                    holder: true,
                },
                pb::Registrant {
                    instance_id: "i-0fedcba9876543210".into(),
                    key: u64::MAX,
                    holder: true,
                },
            ],
        }
    }

    /// m5d.large as the server describes it: one 75 GB NVMe SSD, bursting EBS.
    pub(crate) fn m5d_large() -> pb::InstanceTypeInfo {
        pb::InstanceTypeInfo {
            instance_type: "m5d.large".into(),
            current_generation: true,
            default_vcpus: 2,
            memory_size_in_mib: 8192,
            instance_storage_supported: true,
            instance_storage_info: Some(pb::InstanceStorageInfo {
                total_size_in_gb: 75,
                disks: vec![pb::DiskInfo {
                    size_in_gb: 75,
                    count: 1,
                    r#type: "ssd".into(),
                }],
                nvme_support: "required".into(),
            }),
            ebs_info: Some(pb::EbsInfo {
                ebs_optimized_support: "default".into(),
                ebs_optimized_info: Some(pb::EbsOptimizedInfo {
                    baseline_bandwidth_in_mbps: 650,
                    baseline_throughput_in_mb_ps: 81.25,
                    baseline_iops: 3600,
                    maximum_bandwidth_in_mbps: 4750,
                    maximum_throughput_in_mb_ps: 593.75,
                    maximum_iops: 18750,
                }),
                nvme_support: "required".into(),
            }),
            supported_architectures: vec!["x86_64".into()],
            gpus: vec![],
            network_performance: "Up to 10 Gigabit".into(),
            burstable_performance_supported: false,
            hypervisor: "nitro".into(),
        }
    }

    /// p3.8xlarge: EBS only, four 16 GiB V100s, Xen.
    pub(crate) fn p3_8xlarge() -> pb::InstanceTypeInfo {
        pb::InstanceTypeInfo {
            instance_type: "p3.8xlarge".into(),
            default_vcpus: 32,
            memory_size_in_mib: 249_856,
            instance_storage_supported: false,
            instance_storage_info: None,
            gpus: vec![pb::GpuDeviceInfo {
                name: "V100".into(),
                manufacturer: "NVIDIA".into(),
                count: 4,
                memory_size_in_mib: 16384,
            }],
            network_performance: "10 Gigabit".into(),
            hypervisor: "xen".into(),
            ..m5d_large()
        }
    }

    /// An AMI as the server describes it: an EBS root from a snapshot, a blank EBS data volume,
    /// an instance store volume and a suppressed device; tagged.
    pub(crate) fn image() -> pb::Image {
        pb::Image {
            image_id: "ami-0123456789abcdef0".into(),
            name: "web-1".into(),
            description: "web server".into(),
            state: "available".into(),
            creation_date: "2024-05-01T12:00:07.000Z".into(),
            root_device_name: "/dev/xvda".into(),
            root_device_type: "ebs".into(),
            architecture: "x86_64".into(),
            virtualization_type: "hvm".into(),
            block_device_mappings: vec![
                pb::BlockDeviceMapping {
                    device_name: "/dev/xvda".into(),
                    ebs: Some(pb::EbsBlockDevice {
                        snapshot_id: Some("snap-0123456789abcdef0".into()),
                        volume_size: Some(8),
                        volume_type: Some("gp3".into()),
                        iops: Some(3000),
                        throughput: Some(125),
                        delete_on_termination: Some(true),
                        encrypted: Some(false),
                    }),
                    virtual_name: None,
                    no_device: None,
                },
                pb::BlockDeviceMapping {
                    device_name: "/dev/sdf".into(),
                    ebs: Some(pb::EbsBlockDevice {
                        volume_size: Some(100),
                        delete_on_termination: Some(false),
                        encrypted: Some(false),
                        ..pb::EbsBlockDevice::default()
                    }),
                    virtual_name: None,
                    no_device: None,
                },
                pb::BlockDeviceMapping {
                    device_name: "/dev/sdb".into(),
                    ebs: None,
                    virtual_name: Some("ephemeral0".into()),
                    no_device: None,
                },
                pb::BlockDeviceMapping {
                    device_name: "/dev/sdc".into(),
                    ebs: None,
                    virtual_name: None,
                    no_device: Some(String::new()),
                },
            ],
            owner_id: "000000000000".into(),
            public: false,
            image_type: "machine".into(),
            tags: vec![pb::Tag {
                key: "Name".into(),
                value: "web".into(),
            }],
        }
    }

    /// A running m5d.large from [`image`] with its EBS root and instance store, tagged, with a
    /// workload.
    pub(crate) fn instance() -> pb::Instance {
        pb::Instance {
            instance_id: "i-0123456789abcdef0".into(),
            image_id: "ami-0123456789abcdef0".into(),
            instance_type: "m5d.large".into(),
            state: Some(pb::InstanceState {
                code: 16,
                name: "running".into(),
            }),
            placement: Some(pb::Placement {
                availability_zone: "us-east-1a".into(),
            }),
            launch_time: "2024-05-01T12:00:08.000Z".into(),
            root_device_name: "/dev/xvda".into(),
            root_device_type: "ebs".into(),
            block_device_mappings: vec![pb::InstanceBlockDeviceMapping {
                device_name: "/dev/xvda".into(),
                ebs: Some(pb::EbsInstanceBlockDevice {
                    volume_id: "vol-0123456789abcdef0".into(),
                    status: "attached".into(),
                    attach_time: "2024-05-01T12:00:09.000Z".into(),
                    delete_on_termination: true,
                }),
            }],
            state_reason: None,
            state_transition_reason: String::new(),
            tags: vec![pb::Tag {
                key: "Name".into(),
                value: "web".into(),
            }],
            ami_launch_index: 0,
            architecture: "x86_64".into(),
            virtualization_type: "hvm".into(),
            ebs_optimized: true,
            instance_initiated_shutdown_behavior: "stop".into(),
            instance_store_devices: vec![pb::InstanceStoreDevice {
                device_name: "/dev/sdb".into(),
                virtual_name: "ephemeral0".into(),
                size_bytes: 75_000_000_000,
            }],
            workload_pid: Some(4242),
            devices_file: "/data/instances/i-0123456789abcdef0/devices.json".into(),
            device_uris: [
                ("/dev/xvda", "nbd://127.0.0.1:10809/tok-a"),
                ("/dev/sdb", "nbd://127.0.0.1:10809/tok-b"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            cpu_core_count: 1,
        }
    }

    fn pretty(value: &impl Serialize) -> String {
        match crate::output::json(value) {
            Ok(text) => text,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn volume_json_uses_aws_names_and_order() {
        let want = r#"{
    "Attachments": [
        {
            "AttachTime": "2024-05-01T12:00:01.000Z",
            "Device": "/dev/sdf",
            "InstanceId": "i-0123456789abcdef0",
            "State": "attached",
            "VolumeId": "vol-0123456789abcdef0",
            "DeleteOnTermination": false,
            "NbdUri": "nbd://127.0.0.1:10809/tok",
            "Generation": 3
        }
    ],
    "AvailabilityZone": "us-east-1a",
    "CreateTime": "2024-05-01T12:00:00.000Z",
    "Encrypted": false,
    "Size": 8,
    "SnapshotId": "",
    "State": "in-use",
    "VolumeId": "vol-0123456789abcdef0",
    "Iops": 3000,
    "Tags": [
        {
            "Key": "Name",
            "Value": "db"
        }
    ],
    "VolumeType": "gp3",
    "MultiAttachEnabled": false,
    "Throughput": 125,
    "FastRestored": false
}
"#;
        assert_eq!(pretty(&Volume::from(volume())), want);
    }

    #[test]
    fn volume_json_omits_absent_numbers_and_empty_tags() {
        let v = pb::Volume {
            iops: None,
            throughput: None,
            tags: vec![],
            attachments: vec![],
            ..volume()
        };
        let json: serde_json::Value = match serde_json::to_value(Volume::from(v)) {
            Ok(json) => json,
            Err(e) => panic!("{e}"),
        };
        let keys: Vec<&str> = json
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        for absent in ["Iops", "Throughput", "Tags"] {
            assert!(!keys.contains(&absent), "{absent} in {keys:?}");
        }
        assert_eq!(json["Attachments"], serde_json::json!([]));
        assert_eq!(json["SnapshotId"], "");
    }

    #[test]
    fn attach_reply_has_no_delete_on_termination() {
        let want = r#"{
    "AttachTime": "2024-05-01T12:00:01.000Z",
    "Device": "/dev/sdf",
    "InstanceId": "i-0123456789abcdef0",
    "State": "attached",
    "VolumeId": "vol-0123456789abcdef0",
    "NbdUri": "nbd://127.0.0.1:10809/tok",
    "Generation": 3
}
"#;
        assert_eq!(pretty(&Attachment::reply(attachment())), want);
    }

    #[test]
    fn next_token_only_when_present() {
        let page = Volumes {
            volumes: vec![],
            next_token: None,
        };
        assert_eq!(pretty(&page), "{\n    \"Volumes\": []\n}\n");
        let page = Volumes {
            volumes: vec![],
            next_token: Some("t".into()),
        };
        assert_eq!(
            pretty(&page),
            "{\n    \"Volumes\": [],\n    \"NextToken\": \"t\"\n}\n"
        );
    }

    #[test]
    fn modification_json_uses_aws_names_and_order() {
        let want = r#"{
    "VolumeModification": {
        "VolumeId": "vol-0123456789abcdef0",
        "ModificationState": "modifying",
        "TargetSize": 16,
        "TargetIops": 4000,
        "TargetVolumeType": "io2",
        "TargetMultiAttachEnabled": true,
        "OriginalSize": 8,
        "OriginalIops": 3000,
        "OriginalVolumeType": "gp3",
        "OriginalThroughput": 125,
        "OriginalMultiAttachEnabled": false,
        "Progress": 0,
        "StartTime": "2024-05-01T12:00:02.000Z"
    }
}
"#;
        let reply = ModifiedVolume {
            volume_modification: VolumeModification::from(modification()),
        };
        assert_eq!(pretty(&reply), want);
    }

    #[test]
    fn completed_modification_has_a_status_message_and_end_time() {
        let m = pb::VolumeModification {
            modification_state: "completed".into(),
            status_message: "done".into(),
            progress: 100,
            end_time: "2024-05-01T12:00:09.000Z".into(),
            target_throughput: Some(500),
            ..modification()
        };
        let want = r#"{
    "VolumesModifications": [
        {
            "VolumeId": "vol-0123456789abcdef0",
            "ModificationState": "completed",
            "StatusMessage": "done",
            "TargetSize": 16,
            "TargetIops": 4000,
            "TargetVolumeType": "io2",
            "TargetThroughput": 500,
            "TargetMultiAttachEnabled": true,
            "OriginalSize": 8,
            "OriginalIops": 3000,
            "OriginalVolumeType": "gp3",
            "OriginalThroughput": 125,
            "OriginalMultiAttachEnabled": false,
            "Progress": 100,
            "StartTime": "2024-05-01T12:00:02.000Z",
            "EndTime": "2024-05-01T12:00:09.000Z"
        }
    ]
}
"#;
        let reply = VolumesModifications {
            volumes_modifications: vec![VolumeModification::from(m)],
        };
        assert_eq!(pretty(&reply), want);
    }

    #[test]
    fn metrics_json_uses_cloudwatch_names() {
        let want = r#"{
    "Metrics": [
        {
            "VolumeId": "vol-0123456789abcdef0",
            "VolumeReadOps": 100,
            "VolumeWriteOps": 50,
            "VolumeReadBytes": 409600,
            "VolumeWriteBytes": 3276800,
            "VolumeTotalReadTime": 0.25,
            "VolumeTotalWriteTime": 0.5,
            "VolumeIdleTime": 12.5,
            "VolumeQueueLength": 2,
            "VolumeThroughputPercentage": 99.5,
            "VolumeConsumedReadWriteOps": 150,
            "VolumeIOPSExceededCheck": 1,
            "VolumeThroughputExceededCheck": 0,
            "ProvisionedIops": 4000,
            "ProvisionedThroughputBytes": 1048576000,
            "ThrottleWaitTime": 0.125
        }
    ]
}
"#;
        let reply = Metrics {
            metrics: vec![VolumeMetrics::from(metrics())],
        };
        assert_eq!(pretty(&reply), want);

        let gp2 = pb::VolumeMetrics {
            volume_throughput_percentage: None,
            burst_balance: Some(100.0),
            ..metrics()
        };
        let json = pretty(&VolumeMetrics::from(gp2));
        assert!(!json.contains("VolumeThroughputPercentage"), "{json}");
        assert!(
            json.contains("\"VolumeConsumedReadWriteOps\": 150,\n    \"BurstBalance\": 100.0,\n"),
            "{json}"
        );
    }

    #[test]
    fn reservation_report_json() {
        let want = r#"{
    "VolumeId": "vol-0123456789abcdef0",
    "Generation": 4,
    "Type": "write-exclusive-all-registrants",
    "Holder": "i-0123456789abcdef0",
    "Registrants": [
        {
            "InstanceId": "i-0123456789abcdef0",
            "Key": 3735928559,
            "Holder": true
        },
        {
            "InstanceId": "i-0fedcba9876543210",
            "Key": 18446744073709551615,
            "Holder": true
        }
    ]
}
"#;
        assert_eq!(pretty(&ReservationReport::from(reservation_report())), want);
    }

    #[test]
    fn reservation_report_json_without_a_reservation() {
        let none = pb::ReservationStatus {
            volume_id: "vol-1".into(),
            generation: 0,
            r#type: pb::ReservationType::Unspecified.into(),
            holder_instance_id: String::new(),
            registrants: vec![],
        };
        let want = r#"{
    "VolumeId": "vol-1",
    "Generation": 0,
    "Type": null,
    "Holder": null,
    "Registrants": []
}
"#;
        assert_eq!(pretty(&ReservationReport::from(none)), want);

        let newer = pb::ReservationStatus {
            r#type: 9,
            ..reservation_report()
        };
        let json = pretty(&ReservationReport::from(newer));
        assert!(json.contains("\"Type\": \"9\","), "{json}");
    }

    #[test]
    fn snapshot_json_uses_aws_names_and_keeps_ebsemu_apart() {
        let want = r#"{
    "SnapshotId": "snap-0123456789abcdef0",
    "VolumeId": "vol-0123456789abcdef0",
    "State": "completed",
    "StartTime": "2024-05-01T12:00:03.000Z",
    "Progress": "100%",
    "VolumeSize": 8,
    "Description": "nightly",
    "Encrypted": false,
    "OwnerId": "self",
    "Tags": [
        {
            "Key": "Name",
            "Value": "db"
        }
    ],
    "CompletionTime": "2024-05-01T12:00:05.000Z",
    "FullSnapshotSizeInBytes": 1048576,
    "Ebsemu": {
        "BlockCount": 12,
        "BlocksWritten": 4
    }
}
"#;
        assert_eq!(pretty(&Snapshot::from(snapshot())), want);
    }

    #[test]
    fn snapshot_json_of_a_failed_copy() {
        let copy = pb::Snapshot {
            state: "error".into(),
            state_message: "source block 3 is corrupt".into(),
            progress: "40%".into(),
            tags: vec![],
            completion_time: String::new(),
            source_region: "us-west-2".into(),
            source_snapshot_id: "snap-0fedcba9876543210".into(),
            ..snapshot()
        };
        let want = r#"{
    "SnapshotId": "snap-0123456789abcdef0",
    "VolumeId": "vol-0123456789abcdef0",
    "State": "error",
    "StateMessage": "source block 3 is corrupt",
    "StartTime": "2024-05-01T12:00:03.000Z",
    "Progress": "40%",
    "VolumeSize": 8,
    "Description": "nightly",
    "Encrypted": false,
    "OwnerId": "self",
    "FullSnapshotSizeInBytes": 1048576,
    "SourceRegion": "us-west-2",
    "SourceSnapshotId": "snap-0fedcba9876543210",
    "Ebsemu": {
        "BlockCount": 12,
        "BlocksWritten": 4
    }
}
"#;
        assert_eq!(pretty(&Snapshot::from(copy)), want);
    }

    #[test]
    fn snapshots_page_and_copy_reply() {
        let page = Snapshots {
            snapshots: vec![],
            next_token: Some("t".into()),
        };
        assert_eq!(
            pretty(&page),
            "{\n    \"Snapshots\": [],\n    \"NextToken\": \"t\"\n}\n"
        );
        let copied = CopiedSnapshot {
            snapshot_id: "snap-1".into(),
        };
        assert_eq!(pretty(&copied), "{\n    \"SnapshotId\": \"snap-1\"\n}\n");
    }

    #[test]
    fn volume_initialization_progress_only_when_set() {
        let json = pretty(&Volume::from(volume()));
        assert!(!json.contains("InitializationProgress"), "{json}");
        let restoring = pb::Volume {
            snapshot_id: "snap-0123456789abcdef0".into(),
            initialization_progress: Some(40),
            ..volume()
        };
        let json = pretty(&Volume::from(restoring));
        assert!(
            json.ends_with("\"FastRestored\": false,\n    \"InitializationProgress\": 40\n}\n"),
            "{json}"
        );
    }

    #[test]
    fn fast_snapshot_restores_result_json_uses_aws_names_and_omits_unreached_times() {
        let disabled = pb::FastSnapshotRestore {
            availability_zone: "us-east-1b".into(),
            state: "disabled".into(),
            state_transition_reason: "Client.UserInitiated - Lifecycle state transition".into(),
            disabling_time: "2024-05-01T12:02:00.000Z".into(),
            disabled_time: "2024-05-01T12:02:01.000Z".into(),
            ..fast_snapshot_restore()
        };
        let result = pb::FastSnapshotRestoresResult {
            successful: vec![fast_snapshot_restore(), disabled],
            unsuccessful: vec![fast_snapshot_restore_error(
                "snap-gone",
                "us-east-1a",
                "InvalidSnapshot.NotFound",
            )],
        };
        let want = r#"{
    "Successful": [
        {
            "SnapshotId": "snap-0123456789abcdef0",
            "AvailabilityZone": "us-east-1a",
            "State": "enabled",
            "StateTransitionReason": "Client.UserInitiated",
            "OwnerId": "000000000000",
            "EnablingTime": "2024-05-01T12:00:06.000Z",
            "OptimizingTime": "2024-05-01T12:00:06.000Z",
            "EnabledTime": "2024-05-01T12:01:06.000Z"
        },
        {
            "SnapshotId": "snap-0123456789abcdef0",
            "AvailabilityZone": "us-east-1b",
            "State": "disabled",
            "StateTransitionReason": "Client.UserInitiated - Lifecycle state transition",
            "OwnerId": "000000000000",
            "EnablingTime": "2024-05-01T12:00:06.000Z",
            "OptimizingTime": "2024-05-01T12:00:06.000Z",
            "EnabledTime": "2024-05-01T12:01:06.000Z",
            "DisablingTime": "2024-05-01T12:02:00.000Z",
            "DisabledTime": "2024-05-01T12:02:01.000Z"
        }
    ],
    "Unsuccessful": [
        {
            "SnapshotId": "snap-gone",
            "FastSnapshotRestoreStateErrors": [
                {
                    "AvailabilityZone": "us-east-1a",
                    "Error": {
                        "Code": "InvalidSnapshot.NotFound",
                        "Message": "snap-gone in us-east-1a: InvalidSnapshot.NotFound"
                    }
                }
            ]
        }
    ]
}
"#;
        assert_eq!(pretty(&FastSnapshotRestoresResult::from(result)), want);

        let enabling = pb::FastSnapshotRestore {
            state: "enabling".into(),
            optimizing_time: String::new(),
            enabled_time: String::new(),
            ..fast_snapshot_restore()
        };
        let json = pretty(&FastSnapshotRestore::from(enabling));
        assert!(
            json.ends_with("\"EnablingTime\": \"2024-05-01T12:00:06.000Z\"\n}\n"),
            "{json}"
        );
    }

    #[test]
    fn unsuccessful_pairs_are_grouped_by_snapshot() {
        // Zone by zone, as a server may list them: the snapshots' errors interleave.
        let result = pb::FastSnapshotRestoresResult {
            successful: vec![],
            unsuccessful: vec![
                fast_snapshot_restore_error("snap-b", "us-east-1a", "InvalidSnapshot.NotFound"),
                fast_snapshot_restore_error("snap-a", "us-east-1a", "IncorrectState"),
                fast_snapshot_restore_error("snap-b", "us-east-1z", "InvalidParameterValue"),
                fast_snapshot_restore_error("snap-a", "us-east-1z", "InvalidParameterValue"),
                fast_snapshot_restore_error("snap-b", "us-east-1c", "InvalidSnapshot.NotFound"),
            ],
        };
        let json = match serde_json::to_value(FastSnapshotRestoresResult::from(result)) {
            Ok(json) => json,
            Err(e) => panic!("{e}"),
        };
        let error = |az: &str, snapshot_id: &str, code: &str| {
            serde_json::json!({
                "AvailabilityZone": az,
                "Error": {"Code": code, "Message": format!("{snapshot_id} in {az}: {code}")},
            })
        };
        let want = serde_json::json!({
            "Successful": [],
            "Unsuccessful": [
                {
                    "SnapshotId": "snap-b",
                    "FastSnapshotRestoreStateErrors": [
                        error("us-east-1a", "snap-b", "InvalidSnapshot.NotFound"),
                        error("us-east-1z", "snap-b", "InvalidParameterValue"),
                        error("us-east-1c", "snap-b", "InvalidSnapshot.NotFound"),
                    ],
                },
                {
                    "SnapshotId": "snap-a",
                    "FastSnapshotRestoreStateErrors": [
                        error("us-east-1a", "snap-a", "IncorrectState"),
                        error("us-east-1z", "snap-a", "InvalidParameterValue"),
                    ],
                },
            ],
        });
        assert_eq!(json, want);

        let empty = FastSnapshotRestoresResult::from(pb::FastSnapshotRestoresResult::default());
        assert_eq!(
            pretty(&empty),
            "{\n    \"Successful\": [],\n    \"Unsuccessful\": []\n}\n"
        );
    }

    #[test]
    fn fast_snapshot_restores_page() {
        let page = FastSnapshotRestores {
            fast_snapshot_restores: vec![],
            next_token: Some("t".into()),
        };
        assert_eq!(
            pretty(&page),
            "{\n    \"FastSnapshotRestores\": [],\n    \"NextToken\": \"t\"\n}\n"
        );
        let all = FastSnapshotRestores {
            fast_snapshot_restores: vec![FastSnapshotRestore::from(fast_snapshot_restore())],
            next_token: None,
        };
        let json = pretty(&all);
        assert!(
            json.starts_with("{\n    \"FastSnapshotRestores\": [\n"),
            "{json}"
        );
        assert!(!json.contains("NextToken"), "{json}");
    }

    #[test]
    fn instance_type_json_uses_aws_names_and_order() {
        let want = r#"{
    "InstanceType": "m5d.large",
    "CurrentGeneration": true,
    "VCpuInfo": {
        "DefaultVCpus": 2
    },
    "MemoryInfo": {
        "SizeInMiB": 8192
    },
    "InstanceStorageSupported": true,
    "InstanceStorageInfo": {
        "TotalSizeInGB": 75,
        "Disks": [
            {
                "SizeInGB": 75,
                "Count": 1,
                "Type": "ssd"
            }
        ],
        "NvmeSupport": "required"
    },
    "EbsInfo": {
        "EbsOptimizedSupport": "default",
        "EbsOptimizedInfo": {
            "BaselineBandwidthInMbps": 650,
            "BaselineThroughputInMBps": 81.25,
            "BaselineIops": 3600,
            "MaximumBandwidthInMbps": 4750,
            "MaximumThroughputInMBps": 593.75,
            "MaximumIops": 18750
        },
        "NvmeSupport": "required"
    },
    "ProcessorInfo": {
        "SupportedArchitectures": [
            "x86_64"
        ]
    },
    "NetworkInfo": {
        "NetworkPerformance": "Up to 10 Gigabit"
    },
    "BurstablePerformanceSupported": false,
    "Hypervisor": "nitro"
}
"#;
        assert_eq!(pretty(&InstanceType::from(m5d_large())), want);
    }

    #[test]
    fn gpu_info_totals_the_gpu_memory_and_ebs_only_types_have_no_storage_info() {
        let json = match serde_json::to_value(InstanceType::from(p3_8xlarge())) {
            Ok(json) => json,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            json["GpuInfo"],
            serde_json::json!({
                "Gpus": [{
                    "Name": "V100",
                    "Manufacturer": "NVIDIA",
                    "Count": 4,
                    "MemoryInfo": {"SizeInMiB": 16384}
                }],
                "TotalGpuMemoryInMiB": 65536
            })
        );
        assert_eq!(json["InstanceStorageSupported"], false);
        assert!(json.get("InstanceStorageInfo").is_none(), "{json}");
        assert_eq!(json["Hypervisor"], "xen");

        // Bare metal runs on no hypervisor: the field is left out, as EC2 does.
        let metal = pb::InstanceTypeInfo {
            instance_type: "m5d.metal".into(),
            hypervisor: String::new(),
            ..m5d_large()
        };
        let json = pretty(&InstanceType::from(metal));
        assert!(!json.contains("Hypervisor"), "{json}");
        assert!(!json.contains("GpuInfo"), "{json}");
    }

    #[test]
    fn instance_types_page() {
        let page = InstanceTypes {
            instance_types: vec![],
            next_token: Some("t".into()),
        };
        assert_eq!(
            pretty(&page),
            "{\n    \"InstanceTypes\": [],\n    \"NextToken\": \"t\"\n}\n"
        );
    }

    #[test]
    fn image_json_uses_aws_names_and_leaves_unset_members_out() {
        let want = r#"{
    "ImageId": "ami-0123456789abcdef0",
    "Name": "web-1",
    "Description": "web server",
    "State": "available",
    "CreationDate": "2024-05-01T12:00:07.000Z",
    "RootDeviceName": "/dev/xvda",
    "RootDeviceType": "ebs",
    "Architecture": "x86_64",
    "VirtualizationType": "hvm",
    "BlockDeviceMappings": [
        {
            "DeviceName": "/dev/xvda",
            "Ebs": {
                "SnapshotId": "snap-0123456789abcdef0",
                "VolumeSize": 8,
                "VolumeType": "gp3",
                "Iops": 3000,
                "Throughput": 125,
                "DeleteOnTermination": true,
                "Encrypted": false
            }
        },
        {
            "DeviceName": "/dev/sdf",
            "Ebs": {
                "VolumeSize": 100,
                "DeleteOnTermination": false,
                "Encrypted": false
            }
        },
        {
            "DeviceName": "/dev/sdb",
            "VirtualName": "ephemeral0"
        },
        {
            "DeviceName": "/dev/sdc",
            "NoDevice": ""
        }
    ],
    "OwnerId": "000000000000",
    "Public": false,
    "ImageType": "machine",
    "Tags": [
        {
            "Key": "Name",
            "Value": "web"
        }
    ]
}
"#;
        assert_eq!(pretty(&Image::from(image())), want);
    }

    #[test]
    fn image_without_description_tags_or_snapshot_id() {
        let mut bare = pb::Image {
            description: String::new(),
            tags: vec![],
            ..image()
        };
        if let Some(ebs) = bare.block_device_mappings[1].ebs.as_mut() {
            ebs.snapshot_id = Some(String::new());
        }
        let json = match serde_json::to_value(Image::from(bare)) {
            Ok(json) => json,
            Err(e) => panic!("{e}"),
        };
        assert!(json.get("Description").is_none(), "{json}");
        assert!(json.get("Tags").is_none(), "{json}");
        assert_eq!(json["Public"], false);
        let blank = &json["BlockDeviceMappings"][1]["Ebs"];
        assert!(blank.get("SnapshotId").is_none(), "{blank}");
    }

    #[test]
    fn images_page_and_register_reply() {
        let page = Images {
            images: vec![],
            next_token: Some("t".into()),
        };
        assert_eq!(
            pretty(&page),
            "{\n    \"Images\": [],\n    \"NextToken\": \"t\"\n}\n"
        );
        let all = Images {
            images: vec![],
            next_token: None,
        };
        assert_eq!(pretty(&all), "{\n    \"Images\": []\n}\n");
        let registered = RegisteredImage {
            image_id: "ami-1".into(),
        };
        assert_eq!(pretty(&registered), "{\n    \"ImageId\": \"ami-1\"\n}\n");
    }

    #[test]
    fn instance_json_uses_aws_names_and_order_then_the_extensions() {
        let want = r#"{
    "AmiLaunchIndex": 0,
    "ImageId": "ami-0123456789abcdef0",
    "InstanceId": "i-0123456789abcdef0",
    "InstanceType": "m5d.large",
    "LaunchTime": "2024-05-01T12:00:08.000Z",
    "Placement": {
        "AvailabilityZone": "us-east-1a"
    },
    "State": {
        "Code": 16,
        "Name": "running"
    },
    "StateTransitionReason": "",
    "Architecture": "x86_64",
    "BlockDeviceMappings": [
        {
            "DeviceName": "/dev/xvda",
            "Ebs": {
                "AttachTime": "2024-05-01T12:00:09.000Z",
                "DeleteOnTermination": true,
                "Status": "attached",
                "VolumeId": "vol-0123456789abcdef0"
            }
        }
    ],
    "EbsOptimized": true,
    "RootDeviceName": "/dev/xvda",
    "RootDeviceType": "ebs",
    "Tags": [
        {
            "Key": "Name",
            "Value": "web"
        }
    ],
    "VirtualizationType": "hvm",
    "CpuOptions": {
        "CoreCount": 1
    },
    "InstanceInitiatedShutdownBehavior": "stop",
    "InstanceStoreDevices": [
        {
            "DeviceName": "/dev/sdb",
            "VirtualName": "ephemeral0",
            "SizeBytes": 75000000000
        }
    ],
    "WorkloadPid": 4242,
    "DevicesFile": "/data/instances/i-0123456789abcdef0/devices.json",
    "DeviceUris": {
        "/dev/sdb": "nbd://127.0.0.1:10809/tok-b",
        "/dev/xvda": "nbd://127.0.0.1:10809/tok-a"
    }
}
"#;
        assert_eq!(pretty(&Instance::from(instance())), want);
    }

    #[test]
    fn stopped_instance_has_a_state_reason_and_no_workload_or_tags() {
        let stopped = pb::Instance {
            state: Some(pb::InstanceState {
                code: 80,
                name: "stopped".into(),
            }),
            state_reason: Some(pb::StateReason {
                code: "Client.UserInitiatedShutdown".into(),
                message: "Client.UserInitiatedShutdown: User initiated shutdown".into(),
            }),
            state_transition_reason: "User initiated (2024-05-01 12:05:00 GMT)".into(),
            tags: vec![],
            workload_pid: None,
            device_uris: Default::default(),
            ..instance()
        };
        let json = match serde_json::to_value(Instance::from(stopped)) {
            Ok(json) => json,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            json["State"],
            serde_json::json!({"Code": 80, "Name": "stopped"})
        );
        assert_eq!(
            json["StateReason"],
            serde_json::json!({
                "Code": "Client.UserInitiatedShutdown",
                "Message": "Client.UserInitiatedShutdown: User initiated shutdown"
            })
        );
        assert_eq!(
            json["StateTransitionReason"],
            "User initiated (2024-05-01 12:05:00 GMT)"
        );
        for absent in ["Tags", "WorkloadPid"] {
            assert!(json.get(absent).is_none(), "{absent} in {json}");
        }
        assert_eq!(json["DeviceUris"], serde_json::json!({}));
        assert_eq!(json["InstanceStoreDevices"][0]["VirtualName"], "ephemeral0");

        // StateReason comes before Tags, as in EC2's answer.
        let json = pretty(&Instance::from(pb::Instance {
            state_reason: Some(pb::StateReason {
                code: "pending".into(),
                message: "pending".into(),
            }),
            ..instance()
        }));
        assert!(
            json.contains(
                "\"RootDeviceType\": \"ebs\",\n    \"StateReason\": {\n        \"Code\": \"pending\",\n        \"Message\": \"pending\"\n    },\n    \"Tags\": ["
            ),
            "{json}"
        );

        // An empty reason, or none at all, is left out; so is a detached volume's Ebs.
        let bare = pb::Instance {
            state_reason: Some(pb::StateReason::default()),
            state: None,
            placement: None,
            block_device_mappings: vec![pb::InstanceBlockDeviceMapping {
                device_name: "/dev/sdf".into(),
                ebs: None,
            }],
            ..instance()
        };
        let json = match serde_json::to_value(Instance::from(bare)) {
            Ok(json) => json,
            Err(e) => panic!("{e}"),
        };
        assert!(json.get("StateReason").is_none(), "{json}");
        assert_eq!(json["State"], serde_json::json!({"Code": 0, "Name": ""}));
        assert_eq!(
            json["Placement"],
            serde_json::json!({"AvailabilityZone": ""})
        );
        assert_eq!(
            json["BlockDeviceMappings"],
            serde_json::json!([{"DeviceName": "/dev/sdf"}])
        );
    }

    #[test]
    fn reservation_and_describe_instances_pages() {
        let reservation = pb::Reservation {
            reservation_id: "r-0123456789abcdef0".into(),
            owner_id: "000000000000".into(),
            instances: vec![instance()],
        };
        let json = match serde_json::to_value(Reservation::from(reservation.clone())) {
            Ok(json) => json,
            Err(e) => panic!("{e}"),
        };
        let keys: Vec<&str> = json
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(keys, ["Instances", "OwnerId", "ReservationId"]);
        assert_eq!(json["ReservationId"], "r-0123456789abcdef0");
        assert_eq!(json["Instances"][0]["InstanceId"], "i-0123456789abcdef0");

        let page = Reservations {
            reservations: vec![],
            next_token: Some("t".into()),
        };
        assert_eq!(
            pretty(&page),
            "{\n    \"Reservations\": [],\n    \"NextToken\": \"t\"\n}\n"
        );
        let all = Reservations {
            reservations: vec![Reservation::from(reservation)],
            next_token: None,
        };
        let json = pretty(&all);
        assert!(json.starts_with("{\n    \"Reservations\": [\n"), "{json}");
        assert!(!json.contains("NextToken"), "{json}");
    }

    #[test]
    fn state_changes_use_aws_names_and_order() {
        let state = |code: i32, name: &str| {
            Some(pb::InstanceState {
                code,
                name: name.into(),
            })
        };
        let changes = pb::InstanceStateChanges {
            instances: vec![
                pb::InstanceStateChange {
                    instance_id: "i-1".into(),
                    current_state: state(64, "stopping"),
                    previous_state: state(16, "running"),
                },
                pb::InstanceStateChange {
                    instance_id: "i-2".into(),
                    current_state: state(80, "stopped"),
                    previous_state: state(80, "stopped"),
                },
            ],
        };
        let want = r#"{
    "StoppingInstances": [
        {
            "CurrentState": {
                "Code": 64,
                "Name": "stopping"
            },
            "InstanceId": "i-1",
            "PreviousState": {
                "Code": 16,
                "Name": "running"
            }
        },
        {
            "CurrentState": {
                "Code": 80,
                "Name": "stopped"
            },
            "InstanceId": "i-2",
            "PreviousState": {
                "Code": 80,
                "Name": "stopped"
            }
        }
    ]
}
"#;
        let reply = StoppingInstances {
            stopping_instances: InstanceStateChange::all(changes),
        };
        assert_eq!(pretty(&reply), want);

        let starting = StartingInstances {
            starting_instances: vec![],
        };
        assert_eq!(pretty(&starting), "{\n    \"StartingInstances\": []\n}\n");
        let terminating = TerminatingInstances {
            terminating_instances: vec![],
        };
        assert_eq!(
            pretty(&terminating),
            "{\n    \"TerminatingInstances\": []\n}\n"
        );
    }

    #[test]
    fn console_output_is_decoded() {
        let reply = pb::GetConsoleOutputResponse {
            instance_id: "i-1".into(),
            // "booting\nhello \xff\n": the byte that is not UTF-8 becomes U+FFFD.
            output: "Ym9vdGluZwpoZWxsbyD/Cg==".into(),
            timestamp: "2024-05-01T12:00:10.000Z".into(),
        };
        let want = "{\n    \"InstanceId\": \"i-1\",\n    \"Timestamp\": \"2024-05-01T12:00:10.000Z\",\n    \"Output\": \"booting\\nhello \u{fffd}\\n\"\n}\n";
        assert_eq!(pretty(&ConsoleOutput::from(reply)), want);

        // Nothing yet is an empty output; what is not base64 is printed as received.
        let empty = ConsoleOutput::from(pb::GetConsoleOutputResponse {
            instance_id: "i-1".into(),
            output: String::new(),
            timestamp: String::new(),
        });
        assert_eq!(empty.output, "");
        let raw = ConsoleOutput::from(pb::GetConsoleOutputResponse {
            instance_id: "i-1".into(),
            output: "not base64!".into(),
            timestamp: String::new(),
        });
        assert_eq!(raw.output, "not base64!");
    }
}

/// `describe-volume-attribute`: the volume and the attribute asked for.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeAttribute {
    pub volume_id: String,
    #[serde(rename = "AutoEnableIO", skip_serializing_if = "Option::is_none")]
    pub auto_enable_io: Option<AttributeBooleanValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_codes: Option<Vec<String>>,
}

/// EC2's `AttributeBooleanValue`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttributeBooleanValue {
    pub value: bool,
}

impl From<pb::DescribeVolumeAttributeResponse> for VolumeAttribute {
    fn from(r: pb::DescribeVolumeAttributeResponse) -> Self {
        let auto = r
            .auto_enable_io
            .map(|value| AttributeBooleanValue { value });
        VolumeAttribute {
            volume_id: r.volume_id,
            product_codes: auto.is_none().then_some(r.product_codes),
            auto_enable_io: auto,
        }
    }
}
