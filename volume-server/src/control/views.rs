//! What the control plane answers with where a catalog record alone does not say it: instances as
//! the Describe calls show them, instance state changes, console output, and the EBS direct APIs'
//! block listings. Each protocol encodes these in its own terms (timestamps included).

use std::collections::HashMap;

use instance_manager::lifecycle::InstanceState;

use super::ErrorCode;
use crate::catalog::{AttachmentRecord, HostRecord, InstanceRecord};

/// A launched instance with its attachments and where its disks are served.
#[derive(Debug, Clone)]
pub struct InstanceView {
    /// The host record (id, zone, launch time, tags) and, in it, the instance's.
    pub host: HostRecord,
    /// Its EBS attachments, as (volume id, attachment).
    pub attachments: Vec<(String, AttachmentRecord)>,
    /// NBD URI by device name, while it runs.
    pub device_uris: HashMap<String, String>,
    /// Where its devices file is written.
    pub devices_file: String,
    /// Cores of its type (vCPUs ÷ 2, rounded up); 0 for an unknown type.
    pub cpu_core_count: u32,
    /// Its place in the default VPC.
    pub network: super::network::InstanceNetwork,
}

impl InstanceView {
    /// The instance part of the host record.
    pub fn record(&self) -> &InstanceRecord {
        self.host
            .instance
            .as_ref()
            .expect("an InstanceView is made of a launched instance")
    }
}

impl InstanceView {
    /// Why and when a stopped or terminated instance left `running` (EC2's
    /// `StateTransitionReason`); `None` in other states.
    pub fn transition_reason(&self) -> Option<(&str, u64)> {
        let r = self.record();
        match (&r.state_reason, r.state) {
            (Some(s), InstanceState::Stopped | InstanceState::Terminated) => {
                Some((s.message.as_str(), r.transition_ms))
            }
            _ => None,
        }
    }
}

/// The instances one RunInstances call launched.
#[derive(Debug, Clone)]
pub struct ReservationView {
    /// `r-…`.
    pub reservation_id: String,
    /// The owning account.
    pub owner_id: String,
    /// In launch order.
    pub instances: Vec<InstanceView>,
}

/// A page of DescribeInstances.
#[derive(Debug, Clone)]
pub struct InstancesPage {
    /// One per RunInstances call, in the order first seen.
    pub reservations: Vec<ReservationView>,
    /// Where the next page starts.
    pub next_token: Option<String>,
}

/// An instance's state before and after a Start/Stop/Terminate call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceStateChange {
    /// The instance.
    pub instance_id: String,
    /// Its state now.
    pub current: InstanceState,
    /// Its state before the call.
    pub previous: InstanceState,
}

/// GetConsoleOutput's answer.
#[derive(Debug, Clone)]
pub struct ConsoleOutput {
    /// The instance.
    pub instance_id: String,
    /// The last bytes the workload wrote, Base64.
    pub output: String,
    /// When it was read, ms since the epoch.
    pub timestamp_ms: u64,
}

/// A block of a snapshot and the token to read it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockRef {
    /// Block index (offset ÷ block size).
    pub index: u64,
    /// Token for GetSnapshotBlock.
    pub token: String,
}

/// A block that differs between two snapshots, with a token for each side that has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedBlock {
    /// Block index.
    pub index: u64,
    /// Token of the first snapshot's block, if it has one.
    pub first_token: Option<String>,
    /// Token of the second snapshot's block, if it has one.
    pub second_token: Option<String>,
}

/// A page of ListSnapshotBlocks (`T` = [`BlockRef`]) or ListChangedBlocks (`T` =
/// [`ChangedBlock`]).
#[derive(Debug, Clone)]
pub struct BlockPage<T> {
    /// The blocks of this page.
    pub blocks: Vec<T>,
    /// When the tokens expire, ms since the epoch.
    pub expiry_ms: u64,
    /// The (second) snapshot's volume size, GiB.
    pub volume_size_gib: u64,
    /// Bytes per block.
    pub block_size: u64,
    /// Where the next page starts.
    pub next_token: Option<String>,
}

/// GetSnapshotBlock's answer.
#[derive(Debug, Clone)]
pub struct BlockData {
    /// The block's bytes.
    pub data: Vec<u8>,
    /// Base64 SHA-256 of `data`.
    pub checksum: String,
    /// Always `SHA256`.
    pub checksum_algorithm: &'static str,
}

/// One (snapshot, zone) pair a fast-snapshot-restore call could not change.
#[derive(Debug, Clone)]
pub struct FsrFailure {
    /// The snapshot.
    pub snapshot_id: String,
    /// The zone.
    pub availability_zone: String,
    /// Why.
    pub code: ErrorCode,
    /// For humans.
    pub message: String,
}

/// A volume's status checks (DescribeVolumeStatus).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeStatus {
    /// `ok`, or `impaired` once the volume's file failed an I/O (it then refuses all I/O
    /// until it is reopened: detached from every instance and attached again).
    pub status: &'static str,
    /// (check, result): `io-enabled` passed or failed, and `io-performance` on io1/io2.
    pub details: Vec<(&'static str, &'static str)>,
}

impl VolumeStatus {
    /// The status of `v`, open as `open` (if it is).
    pub fn of(v: &crate::catalog::VolumeRecord, open: Option<&crate::exports::OpenVolume>) -> Self {
        let failed = open.is_some_and(|o| o.volume.is_failed());
        let mut details = vec![("io-enabled", if failed { "failed" } else { "passed" })];
        if matches!(
            v.volume_type,
            crate::catalog::VolumeType::Io1 | crate::catalog::VolumeType::Io2
        ) {
            details.push(("io-performance", "normal"));
        }
        VolumeStatus {
            status: if failed { "impaired" } else { "ok" },
            details,
        }
    }
}

/// One tag of one resource, as DescribeTags lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagDescription {
    /// `vol-…`, `snap-…`, `ami-…` or `i-…`.
    pub resource_id: String,
    /// volume | snapshot | image | instance.
    pub resource_type: &'static str,
    pub key: String,
    pub value: String,
}
