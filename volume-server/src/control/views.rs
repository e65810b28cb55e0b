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
    /// Its Elastic IP, if one is associated.
    pub public_ip: Option<String>,
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
    /// (check, result): `io-enabled` passed or failed; `io-performance` normal on io1, io2 and
    /// gp3 (the types with a performance EC2 checks), not-applicable on the others; and on a
    /// volume created from a snapshot, `initialization-state` initializing or completed.
    pub details: Vec<(&'static str, &'static str)>,
    /// A volume created from a snapshot: how far its blocks have come from the store.
    pub initialization: Option<Initialization>,
}

/// EC2's `InitializationStatusDetails`: the hydration of a volume created from a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Initialization {
    /// `provisioned-rate` when the volume was created with a `VolumeInitializationRate`,
    /// `default` otherwise.
    pub initialization_type: &'static str,
    /// Percent of its blocks local.
    pub progress: u64,
    /// While some blocks are still in the store: seconds left at the hydration rate.
    pub estimated_seconds_left: Option<u64>,
}

impl VolumeStatus {
    /// The status of `v`, open as `open` (if it is); `default_rate_mib` is the server's
    /// hydration rate for volumes created without one (0: unthrottled).
    pub fn of(
        v: &crate::catalog::VolumeRecord,
        open: Option<&crate::exports::OpenVolume>,
        default_rate_mib: u32,
    ) -> Self {
        use crate::catalog::VolumeType;
        let failed = open.is_some_and(|o| o.volume.is_failed());
        let mut details = vec![("io-enabled", if failed { "failed" } else { "passed" })];
        let checked = matches!(
            v.volume_type,
            VolumeType::Io1 | VolumeType::Io2 | VolumeType::Gp3
        );
        details.push((
            "io-performance",
            if checked { "normal" } else { "not-applicable" },
        ));
        let initialization = v.snapshot_id.as_ref().map(|_| {
            // A volume whose hydration is not running has every block local: it finished (a
            // restoring volume stays open for its hydration, across restarts too).
            let (local, all) = open
                .and_then(|o| o.hydration.as_ref())
                .map_or((1, 1), |h| h.progress());
            let all = all.max(1);
            let left_bytes =
                (all - local.min(all)) as f64 / all as f64 * (u64::from(v.size_gib) << 30) as f64;
            let rate = v.initialization_rate_mib.unwrap_or(default_rate_mib);
            Initialization {
                initialization_type: if v.initialization_rate_mib.is_some() {
                    "provisioned-rate"
                } else {
                    "default"
                },
                progress: local * 100 / all,
                estimated_seconds_left: (local < all).then(|| {
                    if rate == 0 {
                        0
                    } else {
                        (left_bytes / (f64::from(rate) * 1048576.0)).ceil() as u64
                    }
                }),
            }
        });
        if let Some(i) = &initialization {
            details.push((
                "initialization-state",
                if i.estimated_seconds_left.is_some() {
                    "initializing"
                } else {
                    "completed"
                },
            ));
        }
        VolumeStatus {
            status: if failed { "impaired" } else { "ok" },
            details,
            initialization,
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
