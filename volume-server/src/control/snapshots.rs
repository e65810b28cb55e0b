//! Snapshots in the control plane: CreateSnapshot, DescribeSnapshots, DeleteSnapshot,
//! CopySnapshot, restoring a volume from a snapshot, and the background work behind them.
//!
//! # CreateSnapshot
//! Under the state lock: validate and commit a `pending` record, with the volume's tracking base
//! moved to the new snapshot. Then, with writes paused for an instant (the capture lock): take
//! the changed blocks from tracking, reset it, and install a [`Capture`]: that instant is the
//! point in time. The call returns; a job reads the captured blocks into the store, composes the
//! manifest over the parent's, and marks the record `completed` (or `error`).
//!
//! Jobs of one volume finish in order: a job needs its parent's manifest, and the parent may be
//! the previous job. A failed job invalidates the volume's tracking, so the next snapshot
//! compares every block rather than miss the failed one's changes.
//!
//! # Restore
//! CreateVolume with a snapshot makes a sparse volume, a hydration sidecar (every block cold)
//! and a pin of the manifest in the store (so deleting the snapshot cannot strand the volume).
//! The volume is `available` at once; the data path fetches cold blocks on first touch and a
//! background task hydrates the rest, then drops the pin.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use snapshot::block::BlockSeal;
use snapshot::create::{self, CreateStats};
use snapshot::gc::{self, GcConfig, GcOutcome};
use snapshot::{BLOCK_SIZE, Capture, Hydration, Manifest, Store, copy};
use storage_engine::ChangedSince;
use tokio::sync::watch;

use super::filter::glob;
use super::model;
use super::{
    Account, ControlPlane, Ec2Error, ErrorCode, GIB, State, check_id, internal, now_ms, validate,
};
use crate::catalog::{
    Change, SnapshotRecord, SnapshotState, VolumeRecord, VolumeState, VolumeType,
};
use crate::exports::OpenVolume;
use crate::ids;

/// Pending snapshots per volume: st1/sc1.
const MAX_PENDING_HDD: usize = 1;
/// Pending snapshots per volume: every other type.
const MAX_PENDING: usize = 5;
/// How long start-up waits for the snapshot store to be tidied (stale markers, lease, pins).
const STORE_TIDY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Snapshot settings of the control plane.
#[derive(Debug, Clone)]
pub struct SnapshotConfig {
    /// Snapshot stores by region; this region's first.
    pub stores: Vec<(String, Store)>,
    /// Minimum time between CreateSnapshot calls on one volume.
    pub min_interval: Duration,
    /// Hydration rate of restored volumes without VolumeInitializationRate, MiB/s (0: no limit).
    pub default_initialization_rate_mib: u32,
    /// How much faster than the wall clock fast-snapshot-restore time runs (optimizing, credit
    /// fill); 1 in production.
    pub fsr_time_scale: f64,
}

/// How a finished job ended: the manifest, or why not.
type Outcome = Result<Arc<Manifest>, String>;

/// Progress of a running job: blocks done of blocks to do.
#[derive(Debug, Default)]
pub struct Progress {
    done: AtomicU64,
    total: AtomicU64,
}

impl Progress {
    fn percent(&self) -> u64 {
        let total = self.total.load(Ordering::Relaxed);
        if total == 0 {
            return 0;
        }
        // Never 100% while pending: the manifest is not written yet.
        (self.done.load(Ordering::Relaxed) * 100 / total).min(99)
    }
}

/// In-memory state of snapshot work (not persisted: a restart fails pending snapshots).
#[derive(Debug, Default)]
pub(super) struct SnapshotWork {
    /// Running jobs' progress, by snapshot id.
    progress: BTreeMap<String, Arc<Progress>>,
    /// Per volume: the outcome channel of its latest job (the next job's parent may be it).
    last_job: BTreeMap<String, watch::Receiver<Option<Outcome>>>,
    /// Per volume: the time of its last CreateSnapshot call.
    last_call_ms: BTreeMap<String, u64>,
    /// Jobs and hydration tasks, awaited at shutdown.
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// A snapshot as DescribeSnapshots reports it.
#[derive(Debug, Clone)]
pub struct SnapshotView {
    /// The record.
    pub record: SnapshotRecord,
    /// Percent done.
    pub progress: u64,
}

impl SnapshotView {
    /// A snapshot just started: nothing read yet.
    pub fn pending(record: SnapshotRecord) -> SnapshotView {
        SnapshotView {
            record,
            progress: 0,
        }
    }
}

fn snapshot_not_found(id: &str) -> Ec2Error {
    Ec2Error::new(
        ErrorCode::InvalidSnapshotNotFound,
        format!("The snapshot '{id}' does not exist."),
    )
}

impl State {
    /// Snapshot `id` if `who` owns it; another account's is `InvalidSnapshot.NotFound`.
    pub(super) fn snapshot(&self, who: Account, id: &str) -> Result<&SnapshotRecord, Ec2Error> {
        self.snapshots
            .get(id)
            .filter(|s| who.owns(&s.owner_id))
            .ok_or_else(|| snapshot_not_found(id))
    }
}

/// The record of snapshot `id` if it is `completed`: else `InvalidSnapshot.NotFound` or
/// `IncorrectState`.
fn completed(st: &State, who: Account, id: &str) -> Result<SnapshotRecord, Ec2Error> {
    let s = st.snapshot(who, id)?;
    if s.state != SnapshotState::Completed {
        return Err(Ec2Error::new(
            ErrorCode::IncorrectState,
            format!(
                "Snapshot {id} is in the '{}' state; it must be completed.",
                s.state.as_str()
            ),
        ));
    }
    Ok(s.clone())
}

fn check_snapshot_id(id: &str, param: &str) -> Result<(), Ec2Error> {
    check_id(id, "snap", param, ErrorCode::InvalidSnapshotIdMalformed)
}

fn side_path(volume_path: &std::path::Path, snapshot_id: &str) -> PathBuf {
    let mut p = volume_path.as_os_str().to_owned();
    p.push(format!(".{snapshot_id}.capture"));
    PathBuf::from(p)
}

/// The hydration sidecar of a volume file.
pub(super) fn hydrate_path(volume_path: &std::path::Path) -> PathBuf {
    let mut p = volume_path.as_os_str().to_owned();
    p.push(".hydrate");
    PathBuf::from(p)
}

impl ControlPlane {
    /// This region's snapshot store.
    pub fn own_store(&self) -> &Store {
        // `SnapshotConfig::stores` always starts with this region's store (see `Config::stores`).
        &self.cfg.snapshots.stores[0].1
    }

    fn store_of(&self, region: &str) -> Option<&Store> {
        self.cfg
            .snapshots
            .stores
            .iter()
            .find(|(r, _)| r == region)
            .map(|(_, s)| s)
    }

    pub(super) fn spawn(&self, st: &mut State, fut: impl Future<Output = ()> + Send + 'static) {
        st.work.tasks.retain(|t| !t.is_finished());
        st.work.tasks.push(self.runtime.spawn(fut));
    }

    // ------------------------------------------------------------ create

    /// CreateSnapshot. Returns once the point in time is fixed; the snapshot is `pending`.
    pub fn create_snapshot(
        &self,
        who: Account,
        req: model::CreateSnapshotRequest,
    ) -> Result<SnapshotRecord, Ec2Error> {
        self.snapshot_volume(who, req, true)
    }

    /// A snapshot of a volume; `limited`: CreateSnapshot's per-volume rate and pending limits
    /// apply. CreateImage's snapshots are not limited so: a caller of CreateImage never gets an
    /// error named after an operation it did not call (EC2 queues them).
    pub(super) fn snapshot_volume(
        &self,
        who: Account,
        req: model::CreateSnapshotRequest,
        limited: bool,
    ) -> Result<SnapshotRecord, Ec2Error> {
        super::check_volume_id(&req.volume_id)?;
        let tags = validate::tag_specifications("snapshot", &req.tag_specifications)?;
        let description = req.description.unwrap_or_default();
        if description.len() > 255 {
            return Err(Ec2Error::invalid_value(
                "The description is longer than 255 characters.",
            ));
        }
        let me = self.arc()?;
        let mut st = self.lock();
        let v = st.volume(who, &req.volume_id)?.clone();
        super::check_usable(&v)?;
        let pending = st
            .snapshots
            .values()
            .filter(|s| s.volume_id == v.volume_id && s.state == SnapshotState::Pending)
            .filter(|s| s.source.is_none())
            .count();
        let limit = if matches!(v.volume_type, VolumeType::St1 | VolumeType::Sc1) {
            MAX_PENDING_HDD
        } else {
            MAX_PENDING
        };
        if limited && pending >= limit {
            return Err(Ec2Error::new(
                ErrorCode::ConcurrentSnapshotLimitExceeded,
                format!(
                    "Volume {} already has {pending} pending snapshots (the limit for {} is {limit}).",
                    v.volume_id,
                    v.volume_type.as_str()
                ),
            ));
        }
        let now = now_ms();
        if limited
            && let Some(last) = st.work.last_call_ms.get(&v.volume_id)
            && now.saturating_sub(*last) < self.cfg.snapshots.min_interval.as_millis() as u64
        {
            return Err(Ec2Error::new(
                ErrorCode::SnapshotCreationPerVolumeRateExceeded,
                format!(
                    "The maximum per volume CreateSnapshot request rate has been exceeded. Wait at least {} seconds between snapshots of {}.",
                    self.cfg.snapshots.min_interval.as_secs(),
                    v.volume_id
                ),
            ));
        }
        let volume_key = v.encryption.as_ref().map(|e| e.kms_key_id.clone());
        // An encrypted volume's snapshot is sealed under the volume's key: refused while the
        // key is not usable, as EC2 fails it.
        let seal = self.snapshot_seal(&st, volume_key.as_deref())?;
        // A parent stored otherwise (another key, or plain) cannot lend its blocks.
        let parent = self.resolve_base(&st, v.cbt_base.as_deref()).filter(|p| {
            st.snapshots
                .get(p)
                .is_some_and(|s| s.kms_key_id == volume_key)
        });
        // Tracking counts from `cbt_base`. When that snapshot failed (or was left pending by a
        // stop) the parent is an older one, and the changes between the two are not in the
        // bitmap, even if it reads exact: only an unskipped base makes an incremental capture.
        let incremental = parent.is_some() && parent.as_deref() == v.cbt_base.as_deref();
        let rec = SnapshotRecord {
            snapshot_id: ids::new_id("snap"),
            owner_id: v.owner_id.clone(),
            volume_id: v.volume_id.clone(),
            volume_size_gib: v.size_gib,
            state: SnapshotState::Pending,
            state_message: String::new(),
            start_ms: now,
            complete_ms: None,
            description,
            tags,
            parent_id: parent.clone(),
            source: None,
            block_count: 0,
            blocks_written: 0,
            bytes_written: 0,
            delete_requested: false,
            kms_key_id: volume_key.clone(),
        };
        let mut nv = v.clone();
        nv.cbt_base = Some(rec.snapshot_id.clone());
        self.commit(&[
            Change::PutSnapshot(rec.clone()),
            Change::PutVolume(nv.clone()),
        ])?;
        st.volumes.insert(nv.volume_id.clone(), nv);
        st.snapshots.insert(rec.snapshot_id.clone(), rec.clone());
        if limited {
            st.work.last_call_ms.insert(v.volume_id.clone(), now);
        }

        let started = self.open_volume(&mut st, &v).and_then(|open| {
            let capture =
                self.runtime
                    .block_on(self.install_capture(&open, &v, &rec, incremental))?;
            Ok((open, capture))
        });
        let (open, (capture, full)) = match started {
            Ok(x) => x,
            Err(e) => {
                let mut failed = rec.clone();
                failed.state = SnapshotState::Error;
                failed.state_message = e.message.clone();
                let _ = self.commit(&[Change::PutSnapshot(failed.clone())]);
                st.snapshots.insert(failed.snapshot_id.clone(), failed);
                let closing = self.release_volume(&mut st, &v.volume_id);
                self.close_now(closing);
                drop(st);
                return Err(e);
            }
        };
        let progress = Arc::new(Progress::default());
        progress
            .total
            .store(capture.wanted().len() as u64, Ordering::Relaxed);
        st.work
            .progress
            .insert(rec.snapshot_id.clone(), progress.clone());
        let (tx, rx) = watch::channel(None);
        let prev = st.work.last_job.insert(v.volume_id.clone(), rx);
        let header = Manifest {
            snapshot_id: rec.snapshot_id.clone(),
            volume_id: v.volume_id.clone(),
            parent_id: parent.clone(),
            owner_id: v.owner_id.clone(),
            kms_key_id: seal.as_ref().map(|s| s.key_id().to_string()),
            volume_size: u64::from(v.size_gib) * GIB,
            start_ms: now,
            complete_ms: 0,
            blocks: BTreeMap::new(),
        };
        let job = SnapJob {
            cp: me,
            open,
            seal,
            capture,
            full,
            header,
            progress,
            prev,
            done: tx,
        };
        self.spawn(&mut st, job.run());
        tracing::info!(snapshot_id = %rec.snapshot_id, volume_id = %v.volume_id, parent = ?parent, "snapshot started");
        Ok(rec)
    }

    /// The snapshot the volume's tracking counts from, if its manifest can serve as a parent:
    /// failed snapshots are skipped for their own parent; a deleted one means no parent.
    fn resolve_base(&self, st: &State, base: Option<&str>) -> Option<String> {
        let mut cur = base?.to_string();
        for _ in 0..64 {
            match st.snapshots.get(&cur) {
                Some(s) if s.state == SnapshotState::Error => cur = s.parent_id.clone()?,
                Some(_) => return Some(cur),
                // Not in this catalog: a restore source deleted since (its manifest may be
                // gone), or a snapshot of another region. Read every block.
                None => return None,
            }
        }
        None
    }

    /// Fixes the point in time: pauses writes, takes the changed blocks, resets tracking and
    /// installs the capture. Also says whether the capture is *full*: when tracking is not
    /// exact (an unclean stop, a failed snapshot, no usable parent) the capture reads every
    /// block that may hold data, and a block it does not read is a hole, so zeros, never "the
    /// same as the parent": a trimmed block must not inherit the parent's old content.
    async fn install_capture(
        &self,
        open: &OpenVolume,
        v: &VolumeRecord,
        rec: &SnapshotRecord,
        incremental: bool,
    ) -> Result<(Arc<Capture>, bool), Ec2Error> {
        let mut captures = open.captures.install().await;
        let vol = &open.volume;
        let nblocks = vol.size().div_ceil(BLOCK_SIZE);
        let path = self.volume_path(&v.availability_zone, &v.volume_id);
        let made = (|| {
            let (wanted, full) = match (incremental, vol.changed_blocks().changed()) {
                (true, ChangedSince::Exact(changed)) => (changed, false),
                // No usable parent or tracking gap: every block that may hold data.
                _ => match &open.hydration {
                    Some(h) if !h.is_complete() => ((0..nblocks).collect(), true),
                    _ => (
                        allocated_blocks(vol, nblocks).map_err(internal("reading allocation"))?,
                        true,
                    ),
                },
            };
            Capture::new(
                &rec.snapshot_id,
                vol.clone(),
                open.hydration.clone(),
                wanted,
                &side_path(&path, &rec.snapshot_id),
            )
            .map(|c| (c, full))
            .map_err(internal("creating the capture file"))
        })();
        let (capture, full) = match made {
            Ok((c, full)) => (Arc::new(c), full),
            Err(e) => {
                drop(captures);
                open.captures.abandoned();
                return Err(e);
            }
        };
        // Only once the capture exists: a failure before this leaves tracking untouched.
        vol.changed_blocks().reset();
        captures.push(capture.clone());
        Ok((capture, full))
    }

    /// Ends a snapshot job: records the outcome, honours a delete requested meanwhile, and
    /// lets go of the volume.
    fn finish_snapshot(
        &self,
        id: &str,
        volume_id: &str,
        r: Result<(Arc<Manifest>, CreateStats), String>,
    ) {
        let mut st = self.lock();
        st.work.progress.remove(id);
        let Some(mut rec) = st.snapshots.get(id).cloned() else {
            return;
        };
        match &r {
            Ok((m, stats)) => {
                rec.state = SnapshotState::Completed;
                rec.complete_ms = Some(m.complete_ms);
                rec.block_count = m.blocks.len() as u64;
                rec.blocks_written = stats.blocks_stored;
                rec.bytes_written = stats.bytes_stored;
                tracing::info!(
                    snapshot_id = id,
                    blocks = rec.block_count,
                    read = stats.blocks_read,
                    stored = stats.blocks_stored,
                    bytes = stats.bytes_stored,
                    "snapshot completed"
                );
            }
            Err(e) => {
                rec.state = SnapshotState::Error;
                rec.state_message = e.clone();
                tracing::error!(snapshot_id = id, error = %e, "snapshot failed");
            }
        }
        self.settle(&mut st, rec);
        let closing = self.release_volume(&mut st, volume_id);
        self.close_now(closing);
        drop(st);
    }

    /// Commits a finished snapshot or copy, deleting it at once if that was asked meanwhile,
    /// and deletes parents whose records went while this snapshot still needed them.
    pub(super) fn settle(&self, st: &mut State, rec: SnapshotRecord) {
        let mut changes = vec![];
        let mut doomed = vec![];
        if rec.delete_requested {
            // A pending child composing over this one deletes the manifest when it ends.
            if !self.needed_as_parent(st, &rec.snapshot_id, &rec.snapshot_id) {
                doomed.push(rec.snapshot_id.clone());
            }
            changes.push(Change::DeleteSnapshot(rec.snapshot_id.clone()));
        } else {
            changes.push(Change::PutSnapshot(rec.clone()));
        }
        if let Some(p) = &rec.parent_id
            && !st.snapshots.contains_key(p)
            && !self.needed_as_parent(st, p, &rec.snapshot_id)
        {
            doomed.push(p.clone());
        }
        if let Err(e) = self.commit(&changes) {
            tracing::error!(snapshot_id = %rec.snapshot_id, error = %e.message, "recording a finished snapshot");
            return;
        }
        if rec.delete_requested {
            st.snapshots.remove(&rec.snapshot_id);
        } else {
            st.snapshots.insert(rec.snapshot_id.clone(), rec);
        }
        if !doomed.is_empty() {
            let store = self.own_store().clone();
            let gc = self.gc_wake.clone();
            self.spawn(st, async move {
                for id in doomed {
                    if let Err(e) = store.delete_manifest(&id).await {
                        tracing::error!(snapshot_id = %id, error = %e, "deleting a manifest");
                    }
                }
                gc.notify_one();
            });
        }
    }

    /// Whether a pending snapshot other than `except` still needs `id`'s manifest.
    fn needed_as_parent(&self, st: &State, id: &str, except: &str) -> bool {
        st.snapshots.values().any(|s| {
            s.state == SnapshotState::Pending
                && s.snapshot_id != except
                && s.parent_id.as_deref() == Some(id)
        })
    }

    // ---------------------------------------------------------- describe

    /// DescribeSnapshots: ids and/or filters, paginated in snapshot-id order.
    pub fn describe_snapshots(
        &self,
        who: Account,
        req: model::DescribeSnapshotsRequest,
    ) -> Result<(Vec<SnapshotView>, Option<String>), Ec2Error> {
        for id in &req.snapshot_ids {
            check_snapshot_id(id, "SnapshotId")?;
        }
        // Without sharing, a caller sees its own snapshots only: an `Owner` list shows them
        // when it names the caller (`self` or its id), and nothing otherwise (`amazon`, others).
        let owner_ok = req.owner_ids.is_empty() || req.owner_ids.iter().any(|o| who.is_named_by(o));
        let filters = req
            .filters
            .into_iter()
            .map(|f| SnapshotFilter::parse(&f.name, f.values))
            .collect::<Result<Vec<_>, _>>()?;
        let max = super::filter::page_size(
            req.max_results,
            !req.snapshot_ids.is_empty(),
            "SnapshotIds",
            1000,
        )?;
        let after = super::decode_token_opt(req.next_token.as_deref(), "snap")?;
        let st = self.lock();
        let view = |s: &SnapshotRecord| SnapshotView {
            progress: match s.state {
                SnapshotState::Completed => 100,
                _ => st
                    .work
                    .progress
                    .get(&s.snapshot_id)
                    .map_or(0, |p| p.percent()),
            },
            record: s.clone(),
        };
        if !req.snapshot_ids.is_empty() {
            let mut out: Vec<SnapshotView> = Vec::new();
            for id in &req.snapshot_ids {
                let s = st.snapshot(who, id)?;
                if owner_ok
                    && filters.iter().all(|f| f.matches(s))
                    && !out.iter().any(|o| o.record.snapshot_id == *id)
                {
                    out.push(view(s));
                }
            }
            return Ok((out, None));
        }
        if !owner_ok {
            return Ok((vec![], None));
        }
        let range = match &after {
            Some(a) => st
                .snapshots
                .range::<String, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
            None => st.snapshots.range::<String, _>(..),
        };
        let mut out = Vec::new();
        let mut next = None;
        for (_, s) in range {
            if !who.owns(&s.owner_id) || !filters.iter().all(|f| f.matches(s)) {
                continue;
            }
            if out.len() == max {
                next = out
                    .last()
                    .map(|l: &SnapshotView| super::encode_token(&l.record.snapshot_id));
                break;
            }
            out.push(view(s));
        }
        Ok((out, next))
    }

    // ------------------------------------------------------------ delete

    /// DeleteSnapshot. A pending snapshot is deleted when its job ends. Blocks no other
    /// snapshot references are reclaimed by garbage collection in the background.
    pub fn delete_snapshot(&self, who: Account, id: &str) -> Result<(), Ec2Error> {
        check_snapshot_id(id, "SnapshotId")?;
        let mut st = self.lock();
        let mut rec = st.snapshot(who, id)?.clone();
        if let Some(image) = st.images.values().find(|i| {
            i.mappings
                .iter()
                .any(|m| m.ebs.as_ref().and_then(|e| e.snapshot_id.as_deref()) == Some(id))
        }) {
            return Err(Ec2Error::new(
                ErrorCode::InvalidSnapshotInUse,
                format!(
                    "The snapshot {id} is currently in use by {}",
                    image.image_id
                ),
            ));
        }
        if rec.state == SnapshotState::Pending {
            rec.delete_requested = true;
            self.commit(&[Change::PutSnapshot(rec.clone())])?;
            st.snapshots.insert(id.to_string(), rec);
            tracing::info!(
                snapshot_id = id,
                "delete of a pending snapshot: deleted when it ends"
            );
            return Ok(());
        }
        let mut changes = vec![Change::DeleteSnapshot(id.to_string())];
        let saved_fsr = st.fsr.clone();
        changes.extend(self.forget_fsr(&mut st, id));
        if let Err(e) = self.commit(&changes) {
            st.fsr = saved_fsr;
            return Err(e);
        }
        st.snapshots.remove(id);
        // A pending snapshot composing over this one still needs its manifest; it deletes it.
        if !self.needed_as_parent(&st, id, "") {
            let store = self.own_store().clone();
            let gc = self.gc_wake.clone();
            let id = id.to_string();
            self.spawn(&mut st, async move {
                if let Err(e) = store.delete_manifest(&id).await {
                    tracing::error!(snapshot_id = %id, error = %e, "deleting a manifest");
                }
                gc.notify_one();
            });
        }
        tracing::info!(snapshot_id = id, "snapshot deleted");
        Ok(())
    }

    // -------------------------------------------------------------- copy

    /// CopySnapshot from `source_region`'s store (or this one) into this region.
    pub fn copy_snapshot(
        &self,
        who: Account,
        req: model::CopySnapshotRequest,
    ) -> Result<SnapshotRecord, Ec2Error> {
        check_snapshot_id(&req.source_snapshot_id, "SourceSnapshotId")?;
        if req.kms_key_id.is_some() && req.encrypted != Some(true) {
            return Err(Ec2Error::invalid_combination(
                "KmsKeyId requires Encrypted=true.",
            ));
        }
        if let Some(d) = req.destination_region.as_deref().filter(|d| !d.is_empty())
            && d != self.cfg.region
        {
            return Err(Ec2Error::invalid_value(format!(
                "DestinationRegion {d} is not this server's region ({}); send CopySnapshot to the destination region's server.",
                self.cfg.region
            )));
        }
        let region = if req.source_region.is_empty() {
            self.cfg.region.clone()
        } else {
            req.source_region.clone()
        };
        let src = self.store_of(&region).cloned().ok_or_else(|| {
            Ec2Error::invalid_value(format!(
                "No snapshot store is configured for source region {region} (start the server with --snapshot-store {region}=URL)."
            ))
        })?;
        let tags = validate::tag_specifications("snapshot", &req.tag_specifications)?;
        let me = self.arc()?;
        let src_id = req.source_snapshot_id.clone();
        if region == self.cfg.region {
            completed(&self.lock(), who, &src_id)?;
        }
        let manifest = self
            .runtime
            .block_on(copy::source_manifest(&src, &src_id))
            .map_err(|e| match e {
                copy::CopyError::SourceNotFound(_) => snapshot_not_found(&src_id),
                e => internal("reading the source manifest")(e),
            })?;
        // Another region's catalog is not at hand: its store's manifest names the owner (one
        // written before owners were recorded belongs to the local account).
        let owner = Some(manifest.owner_id.as_str())
            .filter(|o| !o.is_empty())
            .unwrap_or(crate::catalog::LOCAL_ACCOUNT_ID);
        if !who.owns(owner) {
            return Err(snapshot_not_found(&src_id));
        }
        // The copy of an encrypted snapshot is encrypted: under the key asked for (re-sealed),
        // else the source's. A plain snapshot's copy is encrypted when asked or by default.
        let (seals, dst_key) = {
            let mut st = self.lock();
            let src_seal = self.manifest_seal(&st, &manifest)?;
            let src_key = src_seal.as_ref().map(|s| s.key_id().to_string());
            let arn = |k: crate::catalog::KmsKeyRecord| self.kms_key_arn(&k.owner_id, &k.key_id);
            let dst_key = match (req.kms_key_id.as_deref(), src_key) {
                (Some(k), _) => Some(arn(self.resolve_ebs_key(&mut st, who, k)?)),
                (None, Some(k)) => Some(k),
                (None, None)
                    if req.encrypted == Some(true) || Self::encrypts_by_default(&st, who) =>
                {
                    Some(arn(self.default_ebs_key(&mut st, who)?))
                }
                (None, None) => None,
            };
            let dst_seal = self.snapshot_seal(&st, dst_key.as_deref())?;
            (
                copy::CopySeals {
                    src: src_seal,
                    dst: dst_seal,
                },
                dst_key,
            )
        };
        let rec = SnapshotRecord {
            snapshot_id: ids::new_id("snap"),
            owner_id: who.id().to_string(),
            volume_id: manifest.volume_id.clone(),
            volume_size_gib: manifest.volume_size.div_ceil(GIB) as u32,
            state: SnapshotState::Pending,
            state_message: String::new(),
            start_ms: now_ms(),
            complete_ms: None,
            description: req.description.unwrap_or_else(|| {
                format!("Copied for DestinationSnapshot from SourceSnapshot {src_id} in {region}")
            }),
            tags,
            parent_id: None,
            source: Some((region.clone(), src_id.clone())),
            block_count: 0,
            blocks_written: 0,
            bytes_written: 0,
            delete_requested: false,
            kms_key_id: dst_key,
        };
        let mut st = self.lock();
        self.commit(&[Change::PutSnapshot(rec.clone())])?;
        st.snapshots.insert(rec.snapshot_id.clone(), rec.clone());
        let progress = Arc::new(Progress::default());
        progress.total.store(
            manifest
                .blocks
                .values()
                .collect::<std::collections::BTreeSet<_>>()
                .len() as u64,
            Ordering::Relaxed,
        );
        st.work
            .progress
            .insert(rec.snapshot_id.clone(), progress.clone());
        let dst = self.own_store().clone();
        let id = rec.snapshot_id.clone();
        self.spawn(&mut st, async move {
            let r = async {
                gc::begin_write(&dst, &id).await.map_err(|e| e.to_string())?;
                let (m, stats) = copy::copy(
                    &src,
                    &dst,
                    &manifest,
                    &seals,
                    &id,
                    who.id(),
                    now_ms(),
                    &progress.done,
                )
                .await
                .map_err(|e| e.to_string())?;
                dst.put_manifest(&m).await.map_err(|e| e.to_string())?;
                Ok::<_, String>((Arc::new(m), stats))
            }
            .await;
            if let Err(e) = gc::end_write(&dst, &id).await {
                tracing::warn!(snapshot_id = %id, error = %e, "clearing a pending marker");
            }
            let cp = me.clone();
            let _ = tokio::task::spawn_blocking(move || {
                let r = r.map(|(m, s)| {
                    tracing::info!(snapshot_id = %id, blocks = s.blocks, copied = s.blocks_copied, bytes = s.bytes_copied, "snapshot copied");
                    let stats = CreateStats {
                        blocks_read: s.blocks,
                        zero_blocks: 0,
                        blocks_stored: s.blocks_copied,
                        bytes_stored: s.bytes_copied,
                    };
                    (m, stats)
                });
                cp.finish_copy(&id, r);
            })
            .await;
        });
        tracing::info!(snapshot_id = %rec.snapshot_id, source = %src_id, %region, "snapshot copy started");
        Ok(rec)
    }

    fn finish_copy(&self, id: &str, r: Result<(Arc<Manifest>, CreateStats), String>) {
        let mut st = self.lock();
        st.work.progress.remove(id);
        let Some(mut rec) = st.snapshots.get(id).cloned() else {
            return;
        };
        match r {
            Ok((m, stats)) => {
                rec.state = SnapshotState::Completed;
                rec.complete_ms = Some(m.complete_ms);
                rec.block_count = m.blocks.len() as u64;
                rec.blocks_written = stats.blocks_stored;
                rec.bytes_written = stats.bytes_stored;
            }
            Err(e) => {
                tracing::error!(snapshot_id = id, error = %e, "snapshot copy failed");
                rec.state = SnapshotState::Error;
                rec.state_message = e;
            }
        }
        self.settle(&mut st, rec);
    }

    // ----------------------------------------------------------- restore

    /// The completed snapshot `id` of this region and its manifest, for CreateVolume.
    pub(super) fn restore_source(
        &self,
        who: Account,
        id: &str,
    ) -> Result<(SnapshotRecord, Arc<Manifest>), Ec2Error> {
        check_snapshot_id(id, "SnapshotId")?;
        let rec = completed(&self.lock(), who, id)?;
        let m = self
            .runtime
            .block_on(self.own_store().get_manifest(id))
            .map_err(internal("reading the snapshot manifest"))?
            .ok_or_else(|| snapshot_not_found(id))?;
        Ok((rec, Arc::new(m)))
    }

    /// Makes the files of a volume restored from `m`: sparse image, hydration sidecar, and the
    /// pin that keeps the snapshot's blocks alive until hydration ends.
    pub(super) fn create_restored_files(
        &self,
        path: &std::path::Path,
        size: u64,
        volume_id: &str,
        m: &Manifest,
    ) -> Result<(), Ec2Error> {
        storage_engine::Volume::create(path, size).map_err(internal("creating the volume file"))?;
        Hydration::create(&hydrate_path(path), size)
            .map_err(internal("creating the hydration state"))?;
        self.runtime
            .block_on(self.own_store().pin(volume_id, m))
            .map_err(internal("pinning the snapshot"))
    }

    /// Fast snapshot restore: hydrates a just-created restored volume completely, before it is
    /// `available`.
    pub(super) fn hydrate_now(
        &self,
        v: &VolumeRecord,
        m: &Arc<Manifest>,
        cipher: Option<storage_engine::SectorCipher>,
        seal: Option<Arc<BlockSeal>>,
    ) -> Result<(), Ec2Error> {
        let path = self.volume_path(&v.availability_zone, &v.volume_id);
        let volume = Arc::new(
            storage_engine::Volume::open_encrypted(
                &path,
                self.engine.clone(),
                storage_engine::InlinePolicy::DEFAULT,
                cipher,
            )
            .map_err(internal("opening the volume"))?,
        );
        let pin = self.restore_manifest(v, Some(m.clone()))?;
        if let Some(h) = self.open_hydration(v, &volume, pin, seal)? {
            let done = self
                .runtime
                .block_on(h.run_background(0))
                .map_err(internal("fast snapshot restore"))?;
            if !done {
                return Err(Ec2Error::internal("fast snapshot restore did not complete"));
            }
            std::fs::remove_file(h.path()).map_err(internal("removing the hydration state"))?;
        }
        self.runtime
            .block_on(volume.close())
            .map_err(internal("closing the volume"))?;
        if let Err(e) = self.runtime.block_on(self.own_store().unpin(&v.volume_id)) {
            tracing::warn!(volume_id = %v.volume_id, error = %e, "dropping a restore pin");
        }
        tracing::info!(volume_id = %v.volume_id, "fast snapshot restore: volume fully initialized");
        Ok(())
    }

    /// The manifest `v` is restoring from, if it is still restoring: `pin` if the caller has
    /// it, else the store's pin.
    pub(super) fn restore_manifest(
        &self,
        v: &VolumeRecord,
        pin: Option<Arc<Manifest>>,
    ) -> Result<Option<Arc<Manifest>>, Ec2Error> {
        let path = hydrate_path(&self.volume_path(&v.availability_zone, &v.volume_id));
        if !path.exists() {
            return Ok(None);
        }
        match pin {
            Some(m) => Ok(Some(m)),
            None => Ok(Some(Arc::new(
                self.runtime
                    .block_on(self.own_store().get_pin(&v.volume_id))
                    .map_err(internal("reading the restore pin"))?
                    .ok_or_else(|| {
                        Ec2Error::internal(format!(
                            "volume {} is restoring but its snapshot pin is gone",
                            v.volume_id
                        ))
                    })?,
            ))),
        }
    }

    /// The seal of the snapshot manifest `m` (`None`: not encrypted); fails while its key is
    /// not usable.
    pub(super) fn manifest_seal(
        &self,
        st: &State,
        m: &Manifest,
    ) -> Result<Option<Arc<BlockSeal>>, Ec2Error> {
        self.snapshot_seal(st, m.kms_key_id.as_deref())
    }

    /// Opens `v`'s hydration from `m` (from [`ControlPlane::restore_manifest`]), sealed under
    /// `seal`; `None` when `v` is not restoring.
    pub(super) fn open_hydration(
        &self,
        v: &VolumeRecord,
        volume: &Arc<storage_engine::Volume>,
        m: Option<Arc<Manifest>>,
        seal: Option<Arc<BlockSeal>>,
    ) -> Result<Option<Arc<Hydration>>, Ec2Error> {
        let Some(m) = m else {
            return Ok(None);
        };
        let path = hydrate_path(&self.volume_path(&v.availability_zone, &v.volume_id));
        let h = Hydration::open(&path, self.own_store().clone(), seal, m, volume.clone())
            .map_err(internal("opening the hydration state"))?;
        Ok(Some(Arc::new(h)))
    }

    /// Starts background hydration of every restoring volume without it (at start, and when a
    /// KMS key is enabled again). One whose key (or its snapshot's) is unusable waits, with a
    /// warning, until the key is enabled.
    ///
    /// `strict` (at start): any other failure is returned; otherwise it is logged and the
    /// others still start. Only settled volumes: one being created or deleted is left to the
    /// call doing that.
    pub(super) fn resume_hydrations(&self, st: &mut State, strict: bool) -> Result<(), Ec2Error> {
        let restoring: Vec<VolumeRecord> = st
            .volumes
            .values()
            .filter(|v| matches!(v.state, VolumeState::Available | VolumeState::InUse))
            .filter(|v| !st.holds.contains_key(&v.volume_id))
            .filter(|v| {
                hydrate_path(&self.volume_path(&v.availability_zone, &v.volume_id)).exists()
            })
            .cloned()
            .collect();
        for v in restoring {
            match self.start_hydration(st, &v) {
                Ok(()) => {}
                Err(e) if e.code == ErrorCode::InvalidKmsKeyInvalidState => {
                    tracing::warn!(volume_id = %v.volume_id, error = %e.message, "not restoring a volume until its KMS keys are usable");
                }
                Err(e) if strict => return Err(e),
                Err(e) => {
                    tracing::error!(volume_id = %v.volume_id, error = %e, "resuming a restore");
                }
            }
        }
        Ok(())
    }

    /// Starts background hydration of an open restoring volume; the volume stays open (held)
    /// until it is done.
    pub(super) fn start_hydration(&self, st: &mut State, v: &VolumeRecord) -> Result<(), Ec2Error> {
        let open = self.open_volume(st, v)?;
        let Some(h) = open.hydration.clone() else {
            let closing = self.release_volume(st, &v.volume_id);
            if let Some(o) = closing {
                st.open.insert(v.volume_id.clone(), o);
            }
            return Ok(());
        };
        let me = self.arc()?;
        let rate = u64::from(
            v.initialization_rate_mib
                .unwrap_or(self.cfg.snapshots.default_initialization_rate_mib),
        ) << 20;
        let volume_id = v.volume_id.clone();
        self.spawn(st, async move {
            let done = match h.run_background(rate).await {
                Ok(done) => done,
                Err(e) => {
                    tracing::error!(volume_id = %volume_id, error = %e, "background hydration stopped; cold blocks are fetched on read");
                    false
                }
            };
            if done {
                if let Err(e) = open.volume.flush().await {
                    tracing::error!(volume_id = %volume_id, error = %e, "flush after hydration");
                } else {
                    let _ = std::fs::remove_file(h.path());
                    if let Err(e) = me.own_store().unpin(&volume_id).await {
                        tracing::warn!(volume_id = %volume_id, error = %e, "dropping a restore pin");
                    }
                    me.gc_wake.notify_one();
                    tracing::info!(volume_id = %volume_id, snapshot_id = h.snapshot_id(), "volume fully initialized");
                }
            }
            let cp = me.clone();
            let _ = tokio::task::spawn_blocking(move || {
                let mut st = cp.lock();
                if done {
                    st.pins.remove(&volume_id);
                }
                let closing = cp.release_volume(&mut st, &volume_id);
                cp.close_now(closing);
                drop(st);
            })
            .await;
        });
        Ok(())
    }

    /// (percent initialized) of a restoring open volume; `None` when not restoring.
    pub fn initialization_progress(&self, volume_id: &str) -> Option<u64> {
        let st = self.lock();
        let h = st.open.get(volume_id)?.hydration.as_ref()?;
        let (done, all) = h.progress();
        Some((done * 100).checked_div(all).unwrap_or(100))
    }

    // ---------------------------------------------------------------- gc

    /// Runs garbage collection whenever woken, retrying while writers defer it. Holds the
    /// control plane only while collecting, so dropping it ends the loop.
    async fn gc_loop(me: std::sync::Weak<ControlPlane>, wake: Arc<tokio::sync::Notify>) {
        let owner = format!("volume-server-{}", std::process::id());
        loop {
            wake.notified().await;
            loop {
                let Some(cp) = me.upgrade() else {
                    return;
                };
                if cp.stopping.load(Ordering::Acquire) {
                    return;
                }
                match gc::collect(cp.own_store(), &owner, now_ms(), GcConfig::default()).await {
                    Ok(GcOutcome::Done(_)) => break,
                    Ok(GcOutcome::Deferred) => {
                        drop(cp);
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "snapshot garbage collection failed");
                        break;
                    }
                }
            }
        }
    }

    /// Fails direct-API snapshots left uncompleted past their timeout, every 30 s.
    async fn reap_loop(me: std::sync::Weak<ControlPlane>) {
        loop {
            for _ in 0..300 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                match me.upgrade() {
                    Some(cp) if !cp.stopping.load(Ordering::Acquire) => {}
                    _ => return,
                }
            }
            let Some(cp) = me.upgrade() else {
                return;
            };
            let _ = tokio::task::spawn_blocking(move || cp.reap_direct()).await;
        }
    }

    /// Start-up: snapshots left pending by a crash or shutdown become `error`; leftover capture
    /// files go; restoring volumes resume hydration; garbage collection starts.
    pub(super) fn recover_snapshots(&self, st: &mut State) -> Result<(), Ec2Error> {
        let mut fixes = vec![];
        for s in st.snapshots.values_mut() {
            if s.state == SnapshotState::Pending {
                s.state = SnapshotState::Error;
                s.state_message = "The server stopped while the snapshot was pending.".into();
                fixes.push(Change::PutSnapshot(s.clone()));
            }
        }
        let dropped: Vec<String> = st
            .snapshots
            .values()
            .filter(|s| s.delete_requested)
            .map(|s| s.snapshot_id.clone())
            .collect();
        for id in &dropped {
            fixes.push(Change::DeleteSnapshot(id.clone()));
            st.snapshots.remove(id);
        }
        if !fixes.is_empty() {
            self.commit(&fixes)?;
        }
        for az in &self.cfg.availability_zones {
            let dir = self.cfg.data_dir.join(az).join("volumes");
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().ends_with(".capture") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let store = self.own_store().clone();
        // Tidying the store is bounded in time: an unreachable or hanging store must not hold
        // up start-up. What is left undone errs on the safe side: a stale marker or pin only
        // keeps blocks from collection, and a stale lease expires.
        let tidy = async {
            // Only this server writes its region's store: its markers and a lease left by a
            // collector that died with it are all stale now.
            for (id, _) in store.pending().await.unwrap_or_default() {
                let _ = store.clear_pending(&id).await;
            }
            let _ = store.release_lease().await;
            for id in &dropped {
                let _ = store.delete_manifest(id).await;
            }
            // Pins outlive their volume's hydration only if a crash fell between the two: drop
            // the pins of volumes that are gone or no longer restoring.
            for vol in store.pinned_volumes().await.unwrap_or_default() {
                let restoring = st.volumes.get(&vol).is_some_and(|v| {
                    hydrate_path(&self.volume_path(&v.availability_zone, &v.volume_id)).exists()
                });
                if !restoring {
                    let _ = store.unpin(&vol).await;
                }
            }
        };
        // The timer is made inside `block_on`: this may run on a thread outside the runtime.
        let tidied = self
            .runtime
            .block_on(async { tokio::time::timeout(STORE_TIDY_TIMEOUT, tidy).await });
        if tidied.is_err() {
            tracing::warn!(store = %store.url(), "the snapshot store did not answer at start-up; stale markers, pins or a lease may stay until it does");
        }
        self.resume_hydrations(st, true)?;
        let gc = self
            .runtime
            .spawn(Self::gc_loop(self.me.clone(), self.gc_wake.clone()));
        st.work.tasks.push(gc);
        let reaper = self.runtime.spawn(Self::reap_loop(self.me.clone()));
        st.work.tasks.push(reaper);
        self.gc_wake.notify_one();
        Ok(())
    }

    /// Shutdown, before volumes close: cancels captures (their snapshots end in `error`) and
    /// stops hydration, then waits for every job to end.
    pub(super) async fn stop_snapshot_work(&self) {
        self.stopping.store(true, Ordering::Release);
        self.gc_wake.notify_one();
        let (opens, tasks) = {
            let mut st = self.lock();
            let opens: Vec<OpenVolume> = st.open.values().cloned().collect();
            (opens, std::mem::take(&mut st.work.tasks))
        };
        for o in &opens {
            for c in o.captures.all().await.iter() {
                c.cancel("the server is shutting down");
            }
            if let Some(h) = &o.hydration {
                h.stop();
            }
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}

/// Blocks of `vol` with any allocated data (holes read as zeros and need no reading).
fn allocated_blocks(
    vol: &storage_engine::Volume,
    nblocks: u64,
) -> Result<Vec<u64>, storage_engine::VolumeError> {
    let mut out: Vec<u64> = Vec::new();
    let size = vol.size();
    let mut pos = 0;
    while pos < size {
        let extents = vol.block_status(pos, size - pos, 1024)?;
        for e in &extents {
            if !e.hole && e.length > 0 {
                let first = pos / BLOCK_SIZE;
                let last = ((pos + e.length - 1) / BLOCK_SIZE).min(nblocks - 1);
                for b in first..=last {
                    if out.last() != Some(&b) {
                        out.push(b);
                    }
                }
            }
            pos += e.length;
        }
        if extents.is_empty() {
            break;
        }
    }
    Ok(out)
}

/// One snapshot being taken.
struct SnapJob {
    cp: Arc<ControlPlane>,
    open: OpenVolume,
    /// The seal of an encrypted volume's snapshot.
    seal: Option<Arc<BlockSeal>>,
    capture: Arc<Capture>,
    /// The capture read every block that may hold data: compose over nothing, not the parent.
    full: bool,
    header: Manifest,
    progress: Arc<Progress>,
    /// The previous job of this volume, if any (possibly this one's parent).
    prev: Option<watch::Receiver<Option<Outcome>>>,
    done: watch::Sender<Option<Outcome>>,
}

impl SnapJob {
    async fn run(self) {
        let store = self.cp.own_store().clone();
        let id = self.header.snapshot_id.clone();
        let r = self.take(&store).await;
        if r.is_err() {
            self.capture.cancel("the snapshot failed");
            // The reset tracking lost this snapshot's changes: the next one reads everything.
            self.open.volume.changed_blocks().invalidate();
        }
        self.open.captures.remove(&self.capture).await;
        self.capture.finish();
        if let Err(e) = gc::end_write(&store, &id).await {
            tracing::warn!(snapshot_id = %id, error = %e, "clearing a pending marker");
        }
        let _ = self.done.send(Some(
            r.as_ref().map(|(m, _)| m.clone()).map_err(Clone::clone),
        ));
        let cp = self.cp.clone();
        let volume_id = self.header.volume_id.clone();
        let _ = tokio::task::spawn_blocking(move || cp.finish_snapshot(&id, &volume_id, r)).await;
    }

    async fn take(&self, store: &Store) -> Result<(Arc<Manifest>, CreateStats), String> {
        let id = &self.header.snapshot_id;
        gc::begin_write(store, id)
            .await
            .map_err(|e| e.to_string())?;
        let (delta, stats) = create::take(
            store,
            self.seal.clone(),
            self.capture.clone(),
            &self.progress.done,
        )
        .await
        .map_err(|e| e.to_string())?;
        let base = match &self.header.parent_id {
            Some(parent) if !self.full => Some(self.parent_manifest(store, parent).await?),
            _ => None,
        };
        let empty = BTreeMap::new();
        let mut m = create::compose(
            base.as_ref().map_or(&empty, |b| &b.blocks),
            &delta,
            self.header.clone(),
        );
        m.complete_ms = now_ms();
        store.put_manifest(&m).await.map_err(|e| e.to_string())?;
        Ok((Arc::new(m), stats))
    }

    /// The parent's manifest: from the previous job if that is the parent (waiting for it),
    /// else from the store.
    async fn parent_manifest(&self, store: &Store, parent: &str) -> Result<Arc<Manifest>, String> {
        if let Some(prev) = &self.prev {
            let mut prev = prev.clone();
            let outcome = prev
                .wait_for(|o| o.is_some())
                .await
                .map(|o| o.clone())
                .ok()
                .flatten();
            match outcome {
                Some(Ok(m)) if m.snapshot_id == parent => return Ok(m),
                Some(Err(e)) if self.header.parent_id.as_deref() == Some(parent) => {
                    // Only fatal if the failed job was the parent.
                    let prev_id = store
                        .get_manifest(parent)
                        .await
                        .map_err(|e| e.to_string())?;
                    if prev_id.is_none() {
                        return Err(format!("the parent snapshot {parent} failed: {e}"));
                    }
                }
                _ => {}
            }
        }
        store
            .get_manifest(parent)
            .await
            .map_err(|e| e.to_string())?
            .map(Arc::new)
            .ok_or_else(|| format!("the parent snapshot {parent} has no manifest"))
    }
}

/// DescribeSnapshots filters.
#[derive(Debug)]
struct SnapshotFilter {
    field: SnapField,
    values: Vec<String>,
}

#[derive(Debug)]
enum SnapField {
    SnapshotId,
    VolumeId,
    Status,
    Description,
    VolumeSize,
    OwnerId,
    Encrypted,
    TagKey,
    Tag(String),
}

impl SnapshotFilter {
    fn parse(name: &str, values: Vec<String>) -> Result<SnapshotFilter, Ec2Error> {
        let field = match name {
            "snapshot-id" => SnapField::SnapshotId,
            "volume-id" => SnapField::VolumeId,
            "status" => SnapField::Status,
            "description" => SnapField::Description,
            "volume-size" => SnapField::VolumeSize,
            "owner-id" => SnapField::OwnerId,
            "encrypted" => SnapField::Encrypted,
            "tag-key" => SnapField::TagKey,
            _ => SnapField::Tag(super::filter::tag_key(name)?),
        };
        super::filter::check_values(name, &values)?;
        Ok(SnapshotFilter { field, values })
    }

    fn matches(&self, s: &SnapshotRecord) -> bool {
        let any = |candidate: &str| self.values.iter().any(|p| glob(p, candidate));
        match &self.field {
            SnapField::SnapshotId => any(&s.snapshot_id),
            SnapField::VolumeId => any(&s.volume_id),
            SnapField::Status => any(s.state.as_str()),
            SnapField::Description => any(&s.description),
            SnapField::VolumeSize => any(&s.volume_size_gib.to_string()),
            SnapField::OwnerId => any(&s.owner_id),
            SnapField::Encrypted => any(if s.kms_key_id.is_some() {
                "true"
            } else {
                "false"
            }),
            SnapField::TagKey => s.tags.keys().any(|k| any(k)),
            SnapField::Tag(key) => s.tags.get(key).is_some_and(|v| any(v)),
        }
    }
}
