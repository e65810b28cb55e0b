//! The control plane: volumes, hosts and attachments, their states and rules.
//!
//! # Control path
//! gRPC handler → `spawn_blocking` → a method here: validate against the in-memory state →
//! [`Catalog::commit`] (one transaction, durable) → apply to memory → effect on the engine
//! (create/open/close/remove a volume file) and on the [`Exports`] registry.
//!
//! # Design
//! Methods are synchronous and run on blocking threads: they do file and catalog I/O. Live state
//! sits behind one `std::sync::Mutex`; it is held for validation, the commit and metadata-sized
//! I/O (opening a volume, a capture's sidecar), milliseconds, never for I/O that grows with a
//! volume or goes to a remote store. The NBD data path never takes it: sessions only read
//! [`Exports`]. An operation with such I/O commits an intermediate state under the lock, lets it
//! go for the I/O, and finishes under the lock again; the intermediate state makes every other
//! call on the resource refuse or wait:
//! - CreateVolume: `creating` while the file is made (and, with fast snapshot restore, filled);
//! - DeleteVolume: `deleting` while the files are removed;
//! - DetachVolume: the attachment `detaching` while its I/O is fenced and the volume flushed;
//! - CompleteSnapshot (EBS direct): out of staging, `pending`, while the manifest is stored.

pub mod account;
pub mod addresses;
mod booted;
pub mod commitments;
pub mod crashpoint;
pub mod direct;
pub mod error;
pub mod filter;
pub mod fsr;
pub mod images;
pub mod instances;
pub mod keypairs;
pub mod kms;
pub mod metadata;
pub mod metering;
pub mod model;
pub mod modify;
pub mod network;
pub mod perf;
pub mod region;
pub mod reserve;
pub mod snapshots;
pub mod status;
pub mod tags;
mod transition;
pub mod validate;
pub mod views;
pub mod volume_io;
pub mod vpcs;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use storage_engine::{Engine, Throttle, Volume};

use crate::catalog::{
    AttachmentRecord, AttachmentState, Catalog, Change, FsrRecord, HostRecord, SnapshotRecord,
    VolumeRecord, VolumeState,
};
use crate::exports::{Export, Exports, IoStats, OpenVolume};
use crate::ids;
pub use account::Account;
pub use error::{Ec2Error, ErrorCode};
use filter::Filter;
pub use snapshots::SnapshotConfig;

/// Attachments as (volume id, attachment) pairs.
pub type Attachments = Vec<(String, AttachmentRecord)>;

/// Attachments per Multi-Attach volume.
pub const MAX_MULTI_ATTACH: usize = 16;
/// EBS attachments per instance (Nitro: 28 slots less the root and a network interface).
pub const MAX_ATTACHMENTS_PER_INSTANCE: usize = 26;
const GIB: u64 = 1 << 30;

/// Where and what this control plane serves.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// Region emulated.
    pub region: String,
    /// Availability zones served.
    pub availability_zones: Vec<String>,
    /// Root of everything on disk.
    pub data_dir: PathBuf,
    /// Address put in `nbd://` URIs.
    pub nbd_addr: SocketAddr,
    /// The NBD Unix socket, if served: what the host's own NBD clients (a booted instance's
    /// disks) connect to.
    pub nbd_socket: Option<PathBuf>,
    /// Whether NBD over TCP requires TLS (the host's own clients then need the Unix socket).
    pub nbd_tls_required: bool,
    /// How long a modification stays `optimizing` before it is `completed`.
    pub optimization_time: std::time::Duration,
    /// Snapshot stores and limits.
    pub snapshots: SnapshotConfig,
    /// How long a stopping workload has after SIGTERM before it is killed.
    pub instance_stop_timeout: std::time::Duration,
    /// Factor on every throttle limit (1: EBS; see [`perf::scaled`]).
    pub throttle_scale: f64,
    /// How long the short transitional states last (fast snapshot restore's `enabling` and
    /// `disabling`).
    pub transition_time: std::time::Duration,
    /// Where Elastic IPs come from (`--eip-pool`).
    pub eip_pool: instance_manager::network::Block,
    /// The instance metadata service's listeners, if served.
    pub metadata: Option<Arc<dyn metadata::MetadataEndpoints>>,
    /// The root of the KMS key hierarchy (`--kms-root-key-file`).
    pub kms_root: Arc<crate::kms::RootKey>,
    /// Prices and the billing clock.
    pub billing: metering::BillingConfig,
}

#[derive(Debug, Default)]
struct State {
    volumes: BTreeMap<String, VolumeRecord>,
    hosts: BTreeMap<String, HostRecord>,
    /// Open volumes: those with an attachment or a hold, shared by all of them.
    open: HashMap<String, OpenVolume>,
    /// Background work keeping a volume open without an attachment (snapshots, hydration).
    holds: HashMap<String, usize>,
    snapshots: BTreeMap<String, SnapshotRecord>,
    /// Fast snapshot restore settings by `<snapshot>/<zone>`.
    fsr: BTreeMap<String, FsrRecord>,
    /// Snapshots being written through the EBS direct APIs.
    direct: BTreeMap<String, direct::Staging>,
    /// Registered AMIs.
    images: BTreeMap<String, crate::catalog::ImageRecord>,
    /// VPCs and subnets made by CreateVpc and CreateSubnet.
    vpcs: BTreeMap<String, crate::catalog::VpcRecord>,
    subnets: BTreeMap<String, crate::catalog::SubnetRecord>,
    /// Key pairs by id.
    key_pairs: BTreeMap<String, crate::catalog::KeyPairRecord>,
    /// Elastic IPs by allocation id.
    addresses: BTreeMap<String, crate::catalog::AddressRecord>,
    /// KMS keys by id.
    kms_keys: BTreeMap<String, crate::catalog::KmsKeyRecord>,
    /// KMS aliases by `<account>/<alias name>`.
    kms_aliases: BTreeMap<String, crate::catalog::KmsAliasRecord>,
    /// EBS encryption defaults by account.
    ebs_defaults: BTreeMap<String, crate::catalog::EbsDefaultsRecord>,
    work: snapshots::SnapshotWork,
    /// The snapshot manifests of restoring volumes, by volume id (see `ensure_open`).
    pins: HashMap<String, Arc<snapshot::Manifest>>,
    /// Live parts of launched instances: workloads, EBS caps, instance store disks.
    instances: instances::InstanceRuntime,
    /// Detached attachments still shown `detaching` (see `transition`).
    recent_detaches: transition::RecentDetaches,
}

/// A RunInstances client token: tokens are per account.
type LaunchToken = (Account, String);

/// The control plane. Share it behind an `Arc`.
#[derive(Debug)]
pub struct ControlPlane {
    cfg: ControlConfig,
    catalog: Arc<dyn Catalog>,
    engine: Engine,
    exports: Arc<Exports>,
    state: Mutex<State>,
    runtime: tokio::runtime::Handle,
    /// This control plane, for background jobs.
    me: Weak<ControlPlane>,
    /// Wakes garbage collection of the snapshot store.
    gc_wake: Arc<tokio::sync::Notify>,
    /// Shutdown has begun: background work winds down.
    stopping: AtomicBool,
    /// The host's Elastic IP wiring.
    wiring: addresses::Wiring,
    /// Usage, metered as the catalog changes.
    meters: metering::Meters,
    /// RunInstances calls in progress, by client token: a call holds its token's lock from the
    /// idempotency check to the end of the launch, so concurrent calls with one token launch
    /// once and the others answer with that launch.
    launch_tokens: Mutex<HashMap<LaunchToken, Arc<Mutex<()>>>>,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The most record bytes one page of a Describe call carries (gRPC's default message limit is
/// 4 MiB; the encoding adds field names and framing).
const PAGE_BYTES: usize = 1 << 20;

/// A generous estimate of a volume's size in a reply: its strings plus room for the fixed
/// fields and each attachment.
fn reply_size(v: &VolumeRecord) -> usize {
    let tags: usize = v.tags.iter().map(|(k, v)| k.len() + v.len() + 32).sum();
    512 + tags + v.attachments.len() * 256
}

fn internal<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> Ec2Error + '_ {
    move |e| {
        tracing::error!(error = %e, "{what}");
        Ec2Error::internal(format!("{what}: {e}"))
    }
}

impl ControlPlane {
    /// Loads the catalog, finishes any state change a crash interrupted, and re-opens attached
    /// volumes so their exports serve again. Must run on a blocking-capable thread.
    pub fn open(
        cfg: ControlConfig,
        catalog: Arc<dyn Catalog>,
        engine: Engine,
        exports: Arc<Exports>,
        runtime: tokio::runtime::Handle,
    ) -> Result<Arc<ControlPlane>, Ec2Error> {
        let meters = metering::Meters::new(cfg.billing.clone(), &cfg.region);
        let cp = Arc::new_cyclic(|me| ControlPlane {
            meters,
            cfg,
            catalog,
            engine,
            exports,
            state: Mutex::new(State::default()),
            runtime,
            me: me.clone(),
            gc_wake: Arc::default(),
            stopping: AtomicBool::new(false),
            launch_tokens: Mutex::default(),
            wiring: addresses::Wiring::default(),
        });
        let mut contents = cp.catalog.load().map_err(internal("loading the catalog"))?;
        if let Some(anchor) = cp.meters.load(
            std::mem::take(&mut contents.usage),
            contents.billing_clock,
            std::mem::take(&mut contents.reservations),
            std::mem::take(&mut contents.savings_plans),
        ) {
            cp.catalog
                .commit(&[Change::PutBillingClock(anchor)])
                .map_err(internal("keeping the billing clock"))?;
        }
        let mut fixes = Vec::new();
        let mut st = cp.lock();
        for mut v in contents.volumes {
            let path = cp.volume_path(&v.availability_zone, &v.volume_id);
            match v.state {
                VolumeState::Creating if v.snapshot_id.is_some() => {
                    // Never reported available: finish by removing it.
                    Volume::remove(&path).map_err(internal("removing an interrupted restore"))?;
                    let _ = std::fs::remove_file(snapshots::hydrate_path(&path));
                    fixes.push(Change::DeleteVolume(v.volume_id.clone()));
                    continue;
                }
                VolumeState::Creating => {
                    if !path.exists() {
                        Volume::create(&path, u64::from(v.size_gib) * GIB)
                            .map_err(internal("re-creating an interrupted volume"))?;
                    }
                    v.state = VolumeState::Available;
                    fixes.push(Change::PutVolume(v.clone()));
                }
                VolumeState::Deleting | VolumeState::Deleted => {
                    Volume::remove(&path).map_err(internal("finishing an interrupted delete"))?;
                    fixes.push(Change::DeleteVolume(v.volume_id.clone()));
                    continue;
                }
                _ => {}
            }
            // A detach interrupted by a crash: nothing of it can be in flight any more.
            let before = v.attachments.len();
            v.attachments
                .retain(|a| a.state != AttachmentState::Detaching);
            for a in &mut v.attachments {
                a.state = AttachmentState::Attached;
            }
            if v.attachments.len() != before
                || (v.attachments.is_empty() && v.state == VolumeState::InUse)
            {
                v.state = if v.attachments.is_empty() {
                    VolumeState::Available
                } else {
                    VolumeState::InUse
                };
                fixes.push(Change::PutVolume(v.clone()));
            }
            st.volumes.insert(v.volume_id.clone(), v);
        }
        for h in contents.hosts {
            st.hosts.insert(h.instance_id.clone(), h);
        }
        for s in contents.snapshots {
            st.snapshots.insert(s.snapshot_id.clone(), s);
        }
        for f in contents.fsr {
            st.fsr.insert(f.key(), f);
        }
        for i in contents.images {
            st.images.insert(i.image_id.clone(), i);
        }
        for v in contents.vpcs {
            st.vpcs.insert(v.vpc_id.clone(), v);
        }
        for s in contents.subnets {
            st.subnets.insert(s.subnet_id.clone(), s);
        }
        for k in contents.key_pairs {
            st.key_pairs.insert(k.key_pair_id.clone(), k);
        }
        for a in contents.addresses {
            st.addresses.insert(a.allocation_id.clone(), a);
        }
        // The root key must be the one the catalog's keys were wrapped under: a wrong or newly
        // made key file (a typo in --kms-root-key-file, a secrets volume not mounted) would
        // otherwise serve nothing encrypted and wrap new keys under a key nobody kept.
        if let Some(k) = contents.kms_keys.first()
            && cp
                .cfg
                .kms_root
                .unwrap_material(&k.key_id, &k.wrapped_material)
                .is_err()
        {
            return Err(Ec2Error::internal(
                "the KMS root key does not unwrap the catalog's KMS keys: start with the --kms-root-key-file they were made under (a new key file was made if the path named none; remove it)",
            ));
        }
        for k in contents.kms_keys {
            st.kms_keys.insert(k.key_id.clone(), k);
        }
        for a in contents.kms_aliases {
            st.kms_aliases.insert(a.key(), a);
        }
        for d in contents.ebs_defaults {
            st.ebs_defaults.insert(d.owner_id.clone(), d);
        }
        if !fixes.is_empty() {
            cp.catalog
                .commit(&fixes)
                .map_err(internal("committing recovery"))?;
        }
        // Instances first: only those whose workload is still running serve their volumes.
        cp.discard_interrupted_launches(&mut st)?;
        let adopted = cp.recover_instances(&mut st)?;
        cp.export_attached(&mut st, true)?;
        cp.recover_addresses(&mut st)?;
        cp.recover_snapshots(&mut st)?;
        cp.reconcile_meters(&st)?;
        drop(st);
        cp.resume_instances(adopted);
        Ok(cp)
    }

    /// Serves every attachment that should serve I/O and does not (at start, and when a KMS
    /// key is enabled again). An encrypted volume whose key (or whose restore snapshot's key)
    /// is not usable stays unserved, with a warning, until the key is enabled.
    ///
    /// `strict` (at start): any other failure is returned. Otherwise (EnableKey, with the
    /// server running) it is logged and the others still get served.
    fn export_attached(&self, st: &mut State, strict: bool) -> Result<(), Ec2Error> {
        let attached: Vec<VolumeRecord> = st
            .volumes
            .values()
            .filter(|v| !v.attachments.is_empty())
            .filter(|v| matches!(v.state, VolumeState::Available | VolumeState::InUse))
            .cloned()
            .collect();
        for v in attached {
            // Only attachments that stand: one being detached was fenced and must stay so.
            for a in v
                .attachments
                .iter()
                .filter(|a| a.state == AttachmentState::Attached)
            {
                if instances::serves_io(st, &a.instance_id) && self.exports.get(&a.token).is_none()
                {
                    match self.export(st, &v, a) {
                        Ok(()) => {}
                        Err(e) if e.code == ErrorCode::InvalidKmsKeyInvalidState => {
                            tracing::warn!(volume_id = %v.volume_id, error = %e.message, "not serving an attachment until its KMS key is usable");
                        }
                        Err(e) if strict => return Err(e),
                        Err(e) => {
                            tracing::error!(volume_id = %v.volume_id, error = %e, "serving an attachment again");
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// This control plane as an `Arc`, for background jobs.
    fn arc(&self) -> Result<Arc<ControlPlane>, Ec2Error> {
        self.me
            .upgrade()
            .ok_or_else(|| Ec2Error::internal("the control plane is shutting down"))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every mutation commits to the catalog before touching memory, so a panic mid-way leaves
        // memory at the last committed state: a poisoned lock is safe to keep using.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn commit(&self, changes: &[Change]) -> Result<(), Ec2Error> {
        self.meters
            .commit(changes, |all| self.catalog.commit(all))
            .map_err(internal("catalog commit failed"))?;
        crashpoint::after_commit();
        Ok(())
    }

    /// The throttle limits of `v`, times `--throttle-scale`.
    fn volume_limits(&self, v: &VolumeRecord) -> storage_engine::Limits {
        perf::scaled(perf::limits(v), self.cfg.throttle_scale)
    }

    /// A throttle for the EBS cap of instance type `ty`, times `--throttle-scale`.
    fn instance_throttle(&self, ty: &instance_manager::InstanceType) -> Arc<Throttle> {
        Arc::new(Throttle::new(perf::scaled(
            perf::instance_limits(ty),
            self.cfg.throttle_scale,
        )))
    }

    fn volume_path(&self, az: &str, volume_id: &str) -> PathBuf {
        self.cfg
            .data_dir
            .join(az)
            .join("volumes")
            .join(format!("{volume_id}.img"))
    }

    /// The `nbd://` URI of an attachment token.
    pub fn nbd_uri(&self, token: &str) -> String {
        let mut addr = self.cfg.nbd_addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        format!("nbd://{addr}/{token}")
    }

    /// The region served.
    pub fn region(&self) -> &str {
        &self.cfg.region
    }

    /// The availability zones served.
    pub fn availability_zones(&self) -> &[String] {
        &self.cfg.availability_zones
    }

    fn check_az(&self, az: &str) -> Result<(), Ec2Error> {
        if az.is_empty() {
            return Err(Ec2Error::missing("AvailabilityZone"));
        }
        if !self.cfg.availability_zones.iter().any(|z| z == az) {
            return Err(Ec2Error::invalid_value(format!(
                "Invalid availability zone: [{az}]. Zones served in {}: {}",
                self.cfg.region,
                self.cfg.availability_zones.join(", ")
            )));
        }
        Ok(())
    }

    // ---------------------------------------------------------------- volumes

    /// CreateVolume. The volume is `available` when this returns.
    pub fn create_volume(
        &self,
        who: Account,
        req: model::CreateVolumeRequest,
    ) -> Result<VolumeRecord, Ec2Error> {
        self.create_volume_for(who, req, None)
    }

    /// CreateVolume; `launched_for`: the instance a RunInstances in progress makes it for.
    fn create_volume_for(
        &self,
        who: Account,
        req: model::CreateVolumeRequest,
        launched_for: Option<&str>,
    ) -> Result<VolumeRecord, Ec2Error> {
        self.check_az(&req.availability_zone)?;
        let vtype = validate::parse_volume_type(req.volume_type.as_deref())?;
        let restore = match req.snapshot_id.as_deref().filter(|s| !s.is_empty()) {
            Some(snap) => Some(self.restore_source(who, snap)?),
            None => None,
        };
        let size = match (&restore, req.size) {
            (Some((rec, _)), None) => Some(rec.volume_size_gib as i32),
            (Some((rec, _)), Some(n)) if i64::from(n) < i64::from(rec.volume_size_gib) => {
                return Err(Ec2Error::invalid_value(format!(
                    "Volume of {n}GiB is smaller than snapshot '{}', expect size >= {}GiB",
                    rec.snapshot_id, rec.volume_size_gib
                )));
            }
            (_, n) => n,
        };
        let init_rate = match (req.volume_initialization_rate, &restore) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(Ec2Error::invalid_combination(
                    "VolumeInitializationRate can only be given with a SnapshotId.",
                ));
            }
            (Some(r), Some(_)) if !(100..=300).contains(&r) => {
                return Err(Ec2Error::invalid_value(format!(
                    "Value ({r}) for parameter VolumeInitializationRate is invalid. Expecting a value between 100 and 300 MiB/s."
                )));
            }
            (Some(r), Some(_)) => Some(r as u32),
        };
        let spec = validate::volume_spec(
            size,
            vtype,
            req.iops,
            req.throughput,
            req.multi_attach_enabled.unwrap_or(false),
        )?;
        let tags = validate::tag_specifications("volume", &req.tag_specifications)?;
        let mut st = self.lock();
        // Read without the lock: the snapshot may have been deleted since. While it is in the
        // catalog its manifest stays, and the pin is put before the lock is let go.
        if let Some((rec, _)) = &restore
            && st
                .snapshots
                .get(&rec.snapshot_id)
                .is_none_or(|s| s.state != crate::catalog::SnapshotState::Completed)
        {
            return Err(Ec2Error::new(
                ErrorCode::InvalidSnapshotNotFound,
                format!("The snapshot '{}' does not exist.", rec.snapshot_id),
            ));
        }
        if let Some(token) = req.client_token.as_deref().filter(|t| !t.is_empty())
            && let Some(existing) = st
                .volumes
                .values()
                .find(|v| who.owns(&v.owner_id) && v.client_token.as_deref() == Some(token))
        {
            let same = existing.size_gib == spec.size_gib
                && existing.volume_type == spec.volume_type
                && existing.iops == spec.iops
                && existing.throughput == spec.throughput
                && existing.availability_zone == req.availability_zone
                && existing.multi_attach_enabled == spec.multi_attach
                && existing.snapshot_id.as_deref()
                    == restore.as_ref().map(|(r, _)| r.snapshot_id.as_str())
                && existing.initialization_rate_mib == init_rate
                && (req.encrypted != Some(true) || existing.encryption.is_some());
            return if same {
                Ok(existing.clone())
            } else {
                Err(Ec2Error::new(
                    ErrorCode::IdempotentParameterMismatch,
                    format!(
                        "The client token '{token}' was already used with different parameters."
                    ),
                ))
            };
        }
        let mut v = VolumeRecord {
            volume_id: ids::new_id("vol"),
            owner_id: who.id().to_string(),
            size_gib: spec.size_gib,
            availability_zone: req.availability_zone.clone(),
            state: VolumeState::Creating,
            volume_type: spec.volume_type,
            iops: spec.iops,
            throughput: spec.throughput,
            multi_attach_enabled: spec.multi_attach,
            snapshot_id: None,
            create_time_ms: now_ms(),
            tags,
            attachments: vec![],
            client_token: req.client_token.filter(|t| !t.is_empty()),
            next_generation: 1,
            modifications: vec![],
            reservation: Default::default(),
            cbt_base: None,
            initialization_rate_mib: init_rate,
            fast_restored: false,
            launched_for: launched_for.map(str::to_string),
            auto_enable_io: false,
            encryption: None,
        };
        let source_key = restore
            .as_ref()
            .and_then(|(rec, _)| st.snapshots.get(&rec.snapshot_id))
            .and_then(|s| s.kms_key_id.clone());
        let encryption = self.new_volume_encryption(
            &mut st,
            who,
            req.encrypted,
            req.kms_key_id.as_deref(),
            source_key.as_deref(),
        )?;
        let cipher = encryption.as_ref().map(|(_, c)| c.clone());
        v.encryption = encryption.map(|(e, _)| e);
        let restore_seal = match &source_key {
            Some(k) => self.snapshot_seal(&st, Some(k))?,
            None => None,
        };
        if let Some((rec, _)) = &restore {
            // A restored volume is unchanged since its snapshot: the next one is incremental,
            // if it is stored as that snapshot was (same key, or both unencrypted).
            v.snapshot_id = Some(rec.snapshot_id.clone());
            if v.encryption.as_ref().map(|e| e.kms_key_id.as_str()) == source_key.as_deref() {
                v.cbt_base = Some(rec.snapshot_id.clone());
            }
            v.fast_restored = self.take_fsr_credit(&mut st, &rec.snapshot_id, &v.availability_zone);
        }
        // creating → (file) → available, each step durable: a crash in between is finished at
        // start. The files are made without the lock (a fast-snapshot-restore copy takes as
        // long as the volume is large): meanwhile the volume is listed `creating`, which every
        // other call on it refuses.
        self.commit(&[Change::PutVolume(v.clone())])?;
        st.volumes.insert(v.volume_id.clone(), v.clone());
        drop(st);
        let path = self.volume_path(&v.availability_zone, &v.volume_id);
        let created = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .map_err(storage_engine::VolumeError::Io)
            .and_then(|()| match &restore {
                Some((_, m)) => self
                    .create_restored_files(&path, u64::from(v.size_gib) * GIB, &v.volume_id, m)
                    .and_then(|()| {
                        if v.fast_restored {
                            self.hydrate_now(&v, m, cipher.clone(), restore_seal.clone())
                        } else {
                            Ok(())
                        }
                    })
                    .map_err(|e| storage_engine::VolumeError::Io(std::io::Error::other(e.message))),
                None => Volume::create(&path, u64::from(v.size_gib) * GIB),
            });
        let mut st = self.lock();
        // Tags may have been added meanwhile: only the state changes.
        let mut done = st.volumes.get(&v.volume_id).cloned().unwrap_or(v);
        done.state = VolumeState::Available;
        let committed = match created {
            Ok(()) => self.commit(&[Change::PutVolume(done.clone())]),
            Err(e) if e.kind() == storage_engine::VolumeErrorKind::NoSpace => Err(Ec2Error::new(
                ErrorCode::InsufficientVolumeCapacity,
                "There is not enough disk space for this volume.",
            )),
            Err(e) => Err(internal("creating the volume file")(e)),
        };
        if let Err(e) = committed {
            // Gone from the catalog first: a crash before the files go leaves only files no
            // record names. If even that commit fails, start-up finishes the `creating` record.
            let _ = self.commit(&[Change::DeleteVolume(done.volume_id.clone())]);
            st.volumes.remove(&done.volume_id);
            drop(st);
            let _ = Volume::remove(&path);
            if restore.is_some() {
                let _ = std::fs::remove_file(snapshots::hydrate_path(&path));
                let _ = self
                    .runtime
                    .block_on(self.own_store().unpin(&done.volume_id));
            }
            return Err(e);
        }
        let v = done;
        st.volumes.insert(v.volume_id.clone(), v.clone());
        if let Some((_, m)) = &restore
            && !v.fast_restored
        {
            st.pins.insert(v.volume_id.clone(), m.clone());
        }
        if restore.is_some()
            && let Err(e) = self.start_hydration(&mut st, &v)
        {
            tracing::error!(volume_id = %v.volume_id, error = %e.message, "background hydration did not start; cold blocks are fetched on first read");
        }
        tracing::info!(volume_id = %v.volume_id, size_gib = v.size_gib, volume_type = v.volume_type.as_str(), "volume created");
        // EC2's answer to CreateVolume: `creating` (see `transition`), however long the work.
        let mut answer = self.presented(&st, &v);
        if !self.cfg.transition_time.is_zero() {
            answer.state = VolumeState::Creating;
        }
        Ok(answer)
    }

    /// DescribeVolumes: ids and/or filters, paginated in volume-id order.
    pub fn describe_volumes(
        &self,
        who: Account,
        req: model::DescribeVolumesRequest,
    ) -> Result<(Vec<VolumeRecord>, Option<String>), Ec2Error> {
        for id in &req.volume_ids {
            check_volume_id(id)?;
        }
        let filters = req
            .filters
            .into_iter()
            .map(|f| Filter::parse(&f.name, f.values))
            .collect::<Result<Vec<_>, _>>()?;
        let max = filter::page_size(
            req.max_results,
            !req.volume_ids.is_empty(),
            "VolumeIds",
            500,
        )?;
        let after = decode_token_opt(req.next_token.as_deref(), "vol")?;
        let st = self.lock();
        let mut out = Vec::new();
        if !req.volume_ids.is_empty() {
            for id in &req.volume_ids {
                let v = self.presented(&st, st.volume(who, id)?);
                if filters.iter().all(|f| f.matches(&v))
                    && !out.iter().any(|o: &VolumeRecord| o.volume_id == *id)
                {
                    out.push(v);
                }
            }
            return Ok((out, None));
        }
        let range = match &after {
            Some(a) => st
                .volumes
                .range::<String, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
            None => st.volumes.range::<String, _>(..),
        };
        let mut next = None;
        let mut bytes = 0;
        for v in range.map(|(_, v)| v) {
            if !who.owns(&v.owner_id) {
                continue;
            }
            let v = self.presented(&st, v);
            if !filters.iter().all(|f| f.matches(&v)) {
                continue;
            }
            // A page ends at MaxResults, and also once it holds PAGE_BYTES of records (what a
            // gRPC reply or an XML page may carry), so that no answer outgrows a message.
            let size = reply_size(&v);
            if out.len() == max || (!out.is_empty() && bytes + size > PAGE_BYTES) {
                next = out
                    .last()
                    .map(|l: &VolumeRecord| encode_token(&l.volume_id));
                break;
            }
            bytes += size;
            out.push(v);
        }
        Ok((out, next))
    }

    /// DeleteVolume: only `available` volumes.
    pub fn delete_volume(&self, who: Account, volume_id: &str) -> Result<(), Ec2Error> {
        self.remove_volume(Some(who), volume_id)
    }

    /// DeleteVolume for `who`, or for the server's own work (`None`: a failed launch, a
    /// termination's DeleteOnTermination), which acts on any account's volume.
    fn remove_volume(&self, who: Option<Account>, volume_id: &str) -> Result<(), Ec2Error> {
        check_volume_id(volume_id)?;
        let mut st = self.lock();
        let v = match who {
            Some(who) => st.volume(who, volume_id)?,
            None => st
                .volumes
                .get(volume_id)
                .ok_or_else(|| volume_not_found(volume_id))?,
        }
        .clone();
        match v.state {
            // Deleting: an earlier DeleteVolume failed to remove the files; this one retries.
            VolumeState::Available | VolumeState::Deleting => {}
            VolumeState::InUse => {
                return Err(Ec2Error::new(
                    ErrorCode::VolumeInUse,
                    format!(
                        "Volume {volume_id} is currently attached to {}",
                        attached_to(&v)
                    ),
                ));
            }
            s => {
                return Err(Ec2Error::new(
                    ErrorCode::IncorrectState,
                    format!("The volume '{volume_id}' is in the '{}' state.", s.as_str()),
                ));
            }
        }
        if st.snapshots.values().any(|s| {
            s.volume_id == volume_id
                && s.source.is_none()
                && s.state == crate::catalog::SnapshotState::Pending
        }) {
            return Err(Ec2Error::new(
                ErrorCode::IncorrectState,
                format!(
                    "The volume '{volume_id}' has a pending snapshot; delete it when the snapshot completes."
                ),
            ));
        }
        // A restoring volume is open for its hydration: stop that and wait for it to let go.
        if let Some(h) = st.open.get(volume_id).and_then(|o| o.hydration.clone()) {
            h.stop();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while st.holds.contains_key(volume_id) {
            if std::time::Instant::now() > deadline {
                return Err(Ec2Error::new(
                    ErrorCode::IncorrectState,
                    format!("The volume '{volume_id}' is busy; try again."),
                ));
            }
            drop(st);
            std::thread::sleep(std::time::Duration::from_millis(10));
            st = self.lock();
        }
        // The lock was let go while waiting: the volume may have been attached or deleted.
        let v = st
            .volumes
            .get(volume_id)
            .ok_or_else(|| volume_not_found(volume_id))?
            .clone();
        if !matches!(v.state, VolumeState::Available | VolumeState::Deleting) {
            return Err(Ec2Error::new(
                ErrorCode::IncorrectState,
                format!(
                    "The volume '{volume_id}' is in the '{}' state.",
                    v.state.as_str()
                ),
            ));
        }
        // available → deleting → (files) → gone, each step durable. The files go without the
        // lock (unlinking a large file takes seconds); meanwhile the volume is listed
        // `deleting`, which every other call on it refuses. A removal that fails leaves it
        // `deleting`: DeleteVolume again, or a restart, finishes it.
        let mut deleting = v.clone();
        deleting.state = VolumeState::Deleting;
        self.commit(&[Change::PutVolume(deleting.clone())])?;
        st.volumes.insert(volume_id.to_string(), deleting);
        self.forget_detached(&mut st, volume_id);
        drop(st);
        let path = self.volume_path(&v.availability_zone, volume_id);
        Volume::remove(&path).map_err(internal("removing the volume file"))?;
        match std::fs::remove_file(snapshots::hydrate_path(&path)) {
            Ok(()) => {
                if let Err(e) = self.runtime.block_on(self.own_store().unpin(volume_id)) {
                    tracing::warn!(volume_id, error = %e, "dropping a restore pin");
                }
                self.gc_wake.notify_one();
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(internal("removing the hydration state")(e)),
        }
        let mut st = self.lock();
        self.commit(&[Change::DeleteVolume(volume_id.to_string())])?;
        st.volumes.remove(volume_id);
        st.pins.remove(volume_id);
        tracing::info!(volume_id, "volume deleted");
        Ok(())
    }

    // ------------------------------------------------------------ attachments

    /// The open volume of `v`, opening it if needed.
    fn ensure_open(&self, st: &mut State, v: &VolumeRecord) -> Result<OpenVolume, Ec2Error> {
        if let Some(o) = st.open.get(&v.volume_id) {
            return Ok(o.clone());
        }
        let path = self.volume_path(&v.availability_zone, &v.volume_id);
        let cipher = self.volume_cipher(st, v.encryption.as_ref())?;
        let volume = Arc::new(
            Volume::open_encrypted(
                &path,
                self.engine.clone(),
                storage_engine::InlinePolicy::DEFAULT,
                cipher,
            )
            .map_err(internal("opening the volume"))?,
        );
        // The catalog decides the size: a grow that was committed but did not reach the file
        // (it failed, and so did taking the decision back) is finished here.
        let size = u64::from(v.size_gib) * GIB;
        if volume.size() < size {
            tracing::warn!(volume_id = %v.volume_id, file = volume.size(), catalog = size, "volume file smaller than its catalog size; growing it");
            volume
                .grow(size)
                .map_err(internal("growing the volume to its catalog size"))?;
        }
        // A restoring volume's manifest is kept from its creation (or its first opening after
        // a start), so opening it again reads nothing from the store under the lock.
        volume.set_auto_enable_io(v.auto_enable_io);
        let pin = self.restore_manifest(v, st.pins.get(&v.volume_id).cloned())?;
        let seal = match &pin {
            Some(m) => self.manifest_seal(st, m)?,
            None => None,
        };
        let hydration = self.open_hydration(v, &volume, pin, seal)?;
        match &hydration {
            Some(h) => {
                st.pins.insert(v.volume_id.clone(), h.manifest().clone());
            }
            None => {
                st.pins.remove(&v.volume_id);
            }
        }
        let o = OpenVolume {
            volume,
            stats: Arc::new(IoStats::default()),
            throttle: Arc::new(Throttle::new(self.volume_limits(v))),
            reservation: (v.volume_type == crate::catalog::VolumeType::Io2)
                .then(|| Arc::new(tokio::sync::RwLock::new(v.reservation.clone()))),
            captures: Arc::default(),
            hydration,
        };
        st.open.insert(v.volume_id.clone(), o.clone());
        Ok(o)
    }

    /// Opens `v` for background work: it stays open until [`ControlPlane::release_volume`].
    fn open_volume(&self, st: &mut State, v: &VolumeRecord) -> Result<OpenVolume, Ec2Error> {
        let o = self.ensure_open(st, v)?;
        *st.holds.entry(v.volume_id.clone()).or_default() += 1;
        Ok(o)
    }

    /// Ends one hold of `volume_id`; returns the open volume for the caller to close if nothing
    /// uses it any more.
    fn release_volume(&self, st: &mut State, volume_id: &str) -> Option<OpenVolume> {
        if let Some(n) = st.holds.get_mut(volume_id) {
            *n -= 1;
            if *n == 0 {
                st.holds.remove(volume_id);
            }
        }
        self.take_if_unused(st, volume_id)
    }

    /// Removes `volume_id` from the open set if no attachment or hold uses it.
    fn take_if_unused(&self, st: &mut State, volume_id: &str) -> Option<OpenVolume> {
        let attached = st
            .volumes
            .get(volume_id)
            .is_some_and(|v| !v.attachments.is_empty());
        if attached || st.holds.contains_key(volume_id) {
            return None;
        }
        st.open.remove(volume_id)
    }

    /// Closes a volume taken out of the open set (flush, tracking persisted). Call with the
    /// state lock held, so a concurrent open of the same volume waits for the close to finish
    /// (two open instances would race on the tracking sidecar).
    fn close_now(&self, closing: Option<OpenVolume>) {
        if let Some(open) = closing
            && let Err(e) = self.runtime.block_on(open.volume.close())
        {
            tracing::error!(path = %open.volume.path().display(), error = %e, "clean close failed");
        }
    }

    /// Opens (or reuses) the volume of `v` and serves `a` over NBD.
    fn export(
        &self,
        st: &mut State,
        v: &VolumeRecord,
        a: &AttachmentRecord,
    ) -> Result<(), Ec2Error> {
        let open = self.ensure_open(st, v)?;
        let export = Export::new(
            v.volume_id.clone(),
            a.instance_id.clone(),
            a.generation,
            open,
            v.volume_type.is_hdd(),
        )
        .with_instance_throttle(st.instances.throttles.get(&a.instance_id).cloned());
        self.exports.insert(a.token.clone(), Arc::new(export));
        Ok(())
    }

    /// AttachVolume. The attachment serves NBD when this returns (on a stopped instance, when
    /// it starts).
    pub fn attach_volume(
        &self,
        who: Account,
        req: model::AttachVolumeRequest,
    ) -> Result<(String, AttachmentRecord), Ec2Error> {
        self.attach(who, req, false)
    }

    /// AttachVolume with the attachment's DeleteOnTermination.
    fn attach(
        &self,
        who: Account,
        req: model::AttachVolumeRequest,
        delete_on_termination: bool,
    ) -> Result<(String, AttachmentRecord), Ec2Error> {
        check_volume_id(&req.volume_id)?;
        check_instance_id(&req.instance_id)?;
        if req.device.is_empty() {
            return Err(Ec2Error::missing("Device"));
        }
        validate::device_name(&req.device)?;
        let mut st = self.lock();
        let host = st.host(who, &req.instance_id)?.clone();
        let v = st.volume(who, &req.volume_id)?.clone();
        check_usable(&v)?;
        self.check_key_usable(&st, v.encryption.as_ref().map(|e| e.kms_key_id.as_str()))?;
        instances::check_attachable(&host)?;
        if v.availability_zone != host.availability_zone {
            return Err(Ec2Error::new(
                ErrorCode::InvalidVolumeZoneMismatch,
                format!(
                    "The volume '{}' is not in the same availability zone as instance '{}'",
                    v.volume_id, host.instance_id
                ),
            ));
        }
        if v.attachments
            .iter()
            .any(|a| a.instance_id == host.instance_id)
        {
            return Err(Ec2Error::new(
                ErrorCode::VolumeInUse,
                format!(
                    "{} is already attached to instance {}",
                    v.volume_id, host.instance_id
                ),
            ));
        }
        if !v.attachments.is_empty() && !v.multi_attach_enabled {
            return Err(Ec2Error::new(
                ErrorCode::VolumeInUse,
                format!(
                    "{} is already attached to an instance ({})",
                    v.volume_id,
                    attached_to(&v)
                ),
            ));
        }
        if v.attachments.len() >= MAX_MULTI_ATTACH {
            return Err(Ec2Error::new(
                ErrorCode::AttachmentLimitExceeded,
                format!(
                    "Volume {} already has the maximum of {MAX_MULTI_ATTACH} attachments.",
                    v.volume_id
                ),
            ));
        }
        let on_instance: Vec<&AttachmentRecord> = st
            .volumes
            .values()
            .flat_map(|o| o.attachments.iter())
            .filter(|a| a.instance_id == host.instance_id)
            .collect();
        if on_instance.iter().any(|a| a.device == req.device) {
            return Err(Ec2Error::new(
                ErrorCode::InvalidDeviceInUse,
                format!(
                    "Attachment point {} is already in use on instance {}",
                    req.device, host.instance_id
                ),
            ));
        }
        if on_instance.len() >= MAX_ATTACHMENTS_PER_INSTANCE {
            return Err(Ec2Error::new(
                ErrorCode::AttachmentLimitExceeded,
                format!(
                    "Instance {} already has {MAX_ATTACHMENTS_PER_INSTANCE} volumes attached.",
                    host.instance_id
                ),
            ));
        }
        let a = AttachmentRecord {
            instance_id: host.instance_id.clone(),
            device: req.device.clone(),
            state: AttachmentState::Attached,
            attach_time_ms: now_ms(),
            delete_on_termination,
            token: ids::new_export_token(),
            generation: v.next_generation,
        };
        let mut nv = v.clone();
        nv.next_generation += 1;
        nv.attachments.push(a.clone());
        nv.state = VolumeState::InUse;
        // Open the volume first: if that fails, nothing was committed. A stopped instance's
        // volumes are exported when it starts.
        let serve = instances::serves_io(&st, &host.instance_id);
        if serve {
            self.export(&mut st, &nv, &a)?;
        }
        if let Err(e) = self.commit(&[Change::PutVolume(nv.clone())]) {
            self.exports.remove(&a.token);
            let closing = self.take_if_unused(&mut st, &v.volume_id);
            self.close_now(closing);
            drop(st);
            return Err(e);
        }
        st.volumes.insert(nv.volume_id.clone(), nv);
        self.forget_detached(&mut st, &req.volume_id);
        tracing::info!(volume_id = %req.volume_id, instance_id = %a.instance_id, generation = a.generation, "volume attached");
        if serve {
            self.hotplug_attach(&mut st, &a.instance_id, &a.device, &a.token);
        }
        // EC2's answer to AttachVolume: `attaching` (see `transition`), however long the work.
        let mut shown = a;
        if !self.cfg.transition_time.is_zero() {
            shown.state = AttachmentState::Attaching;
        }
        Ok((req.volume_id, shown))
    }

    /// DetachVolume. When this returns, no I/O of the attachment can reach the disk.
    pub fn detach_volume(
        &self,
        who: Account,
        req: model::DetachVolumeRequest,
    ) -> Result<(String, AttachmentRecord), Ec2Error> {
        self.detach(Some(who), req)
    }

    /// The server's own force-detach of `volume_id` from `instance_id` (a failed launch, a
    /// termination, a deregistered host): root volumes included.
    pub(super) fn force_detach(
        &self,
        volume_id: &str,
        instance_id: &str,
    ) -> Result<(String, AttachmentRecord), Ec2Error> {
        self.detach(
            None,
            model::DetachVolumeRequest {
                volume_id: volume_id.to_string(),
                instance_id: Some(instance_id.to_string()),
                device: None,
                force: true,
            },
        )
    }

    /// DetachVolume; `who`: the caller, or `None` for the server's own work (a failed launch, a
    /// termination), which may also detach an instance's root volume (callers may only do that
    /// while it is stopped) and acts on any account's volume.
    fn detach(
        &self,
        who: Option<Account>,
        req: model::DetachVolumeRequest,
    ) -> Result<(String, AttachmentRecord), Ec2Error> {
        check_volume_id(&req.volume_id)?;
        let instance = req.instance_id.as_deref().filter(|s| !s.is_empty());
        if let Some(i) = instance {
            check_instance_id(i)?;
        }
        let device = req.device.as_deref().filter(|s| !s.is_empty());
        // Phase 1: mark detaching (durably) and stop new sessions.
        let (token, export, host_disk) = {
            let mut st = self.lock();
            let v = match who {
                Some(who) => st.volume(who, &req.volume_id)?,
                None => st
                    .volumes
                    .get(&req.volume_id)
                    .ok_or_else(|| volume_not_found(&req.volume_id))?,
            };
            if v.attachments.is_empty() {
                return Err(Ec2Error::new(
                    ErrorCode::IncorrectState,
                    format!(
                        "Volume '{}' is in the '{}' state.",
                        v.volume_id,
                        v.state.as_str()
                    ),
                ));
            }
            if instance.is_none() && v.attachments.len() > 1 {
                return Err(Ec2Error::new(
                    ErrorCode::MissingParameter,
                    format!(
                        "Volume {} has several attachments; the parameter InstanceId is required.",
                        v.volume_id
                    ),
                ));
            }
            let idx = v
                .attachments
                .iter()
                .position(|a| {
                    instance.is_none_or(|i| a.instance_id == i)
                        && device.is_none_or(|d| a.device == d)
                })
                .ok_or_else(|| {
                    Ec2Error::new(
                        ErrorCode::InvalidAttachmentNotFound,
                        format!(
                            "The volume '{}' is not attached to instance '{}'{}.",
                            v.volume_id,
                            instance.unwrap_or("?"),
                            device.map(|d| format!(" as {d}")).unwrap_or_default()
                        ),
                    )
                })?;
            let a = &v.attachments[idx];
            if who.is_some() && instances::is_live_root(&st, &a.instance_id, &a.device) {
                return Err(Ec2Error::new(
                    ErrorCode::OperationNotPermitted,
                    format!(
                        "Unable to detach root volume '{}' from instance '{}': stop the instance first.",
                        v.volume_id, a.instance_id
                    ),
                ));
            }
            if v.attachments[idx].state == AttachmentState::Detaching {
                return Err(Ec2Error::new(
                    ErrorCode::IncorrectState,
                    format!("The attachment of '{}' is already detaching.", v.volume_id),
                ));
            }
            let mut nv = v.clone();
            nv.attachments[idx].state = AttachmentState::Detaching;
            self.commit(&[Change::PutVolume(nv.clone())])?;
            let token = nv.attachments[idx].token.clone();
            let instance_id = nv.attachments[idx].instance_id.clone();
            st.volumes.insert(nv.volume_id.clone(), nv);
            let host_disk = self
                .take_host_disk(&mut st, &instance_id, &token)
                .map(|(leader, h)| (instance_id, leader, h));
            let export = self.exports.remove(&token);
            (token, export, host_disk)
        };
        // A running booted instance lets go of the disk first (its filesystem, if mounted inside,
        // is given a while to be unmounted), so what it wrote is flushed before the fence.
        if let Some((instance_id, leader, h)) = host_disk {
            self.hotplug_detach(&instance_id, leader, h);
        }
        // Phase 2: fence, without the lock: waits for in-flight I/O of this attachment only.
        // Then flush, still without the lock: if this was the volume's last user it is closed
        // under the lock below, and that close then finds little or nothing to write back (a
        // close after gigabytes of buffered writes would stall every control call).
        if let Some(e) = &export {
            self.runtime.block_on(e.fence());
            if let Err(err) = self.runtime.block_on(e.open.volume.flush()) {
                tracing::warn!(volume_id = %req.volume_id, error = %err, "flush after the fence");
            }
        }
        drop(export);
        // Phase 3: remove the attachment and, in the same transaction, the host's reservation
        // registration (a detached host keeps none, across a crash too); close the volume if
        // it was the last one. The live reservation state is locked first, as reservation
        // commands do (live, then state), so none of them can slip a registration in between.
        let live = {
            let st = self.lock();
            st.open
                .get(&req.volume_id)
                .and_then(|o| o.reservation.clone())
        };
        let mut live = live.map(|l| self.runtime.block_on(l.write_owned()));
        let mut st = self.lock();
        let Some(v) = st.volumes.get(&req.volume_id).cloned() else {
            return Err(volume_not_found(&req.volume_id));
        };
        let mut nv = v.clone();
        let Some(idx) = nv.attachments.iter().position(|a| a.token == token) else {
            return Err(Ec2Error::internal("attachment vanished during detach"));
        };
        let mut a = nv.attachments.remove(idx);
        if nv.attachments.is_empty() {
            nv.state = VolumeState::Available;
        }
        nv.reservation.remove_host(&a.instance_id);
        self.commit(&[Change::PutVolume(nv.clone())])?;
        if let Some(live) = live.as_mut() {
            **live = nv.reservation.clone();
        }
        drop(live);
        st.volumes.insert(nv.volume_id.clone(), nv.clone());
        let closing = self.take_if_unused(&mut st, &nv.volume_id);
        self.close_now(closing);
        // A caller's DetachVolume trails `detaching`; the server's own detaches (a
        // termination, a failed launch, a deregistered host) are over when they are done.
        a.state = match who {
            Some(_) => self.note_detached(&mut st, &nv.volume_id, &a),
            None => AttachmentState::Detached,
        };
        drop(st);
        tracing::info!(volume_id = %req.volume_id, instance_id = %a.instance_id, force = req.force, "volume detached and fenced");
        Ok((req.volume_id, a))
    }

    // ------------------------------------------------------------------ hosts

    /// RegisterHost: a host outside the instance manager gets an `i-` id in one AZ.
    pub fn register_host(
        &self,
        who: Account,
        req: model::RegisterHostRequest,
    ) -> Result<HostRecord, Ec2Error> {
        if req.name.trim().is_empty() {
            return Err(Ec2Error::missing("Name"));
        }
        self.check_az(&req.availability_zone)?;
        let tags = validate::tag_specifications("instance", &req.tag_specifications)?;
        let mut st = self.lock();
        let h = HostRecord {
            instance_id: ids::new_id("i"),
            owner_id: who.id().to_string(),
            name: req.name,
            private_ip: Some(self.free_address(&st, who, &req.availability_zone, None)?),
            subnet_id: None,
            availability_zone: req.availability_zone,
            launch_time_ms: now_ms(),
            tags,
            instance: None,
        };
        self.commit(&[Change::PutHost(Box::new(h.clone()))])?;
        st.hosts.insert(h.instance_id.clone(), h.clone());
        tracing::info!(instance_id = %h.instance_id, name = %h.name, "host registered");
        Ok(h)
    }

    /// DeregisterHost: detaches (and fences) its volumes, then forgets it.
    pub fn deregister_host(
        &self,
        who: Account,
        instance_id: &str,
    ) -> Result<Attachments, Ec2Error> {
        check_instance_id(instance_id)?;
        let attached: Vec<String> = {
            let st = self.lock();
            let host = st.host(who, instance_id)?;
            if host.instance.is_some() {
                return Err(Ec2Error::new(
                    ErrorCode::OperationNotPermitted,
                    format!(
                        "The instance '{instance_id}' was launched by RunInstances; terminate it instead."
                    ),
                ));
            }
            st.volumes
                .values()
                .filter(|v| v.attachments.iter().any(|a| a.instance_id == instance_id))
                .map(|v| v.volume_id.clone())
                .collect()
        };
        let mut detached = Vec::new();
        for volume_id in attached {
            detached.push(self.force_detach(&volume_id, instance_id)?);
        }
        let mut st = self.lock();
        if st
            .volumes
            .values()
            .any(|v| v.attachments.iter().any(|a| a.instance_id == instance_id))
        {
            return Err(Ec2Error::new(
                ErrorCode::IncorrectInstanceState,
                format!(
                    "Instance {instance_id} gained a new attachment while deregistering; try again."
                ),
            ));
        }
        self.commit(&[Change::DeleteHost(instance_id.to_string())])?;
        st.hosts.remove(instance_id);
        tracing::info!(instance_id, "host deregistered");
        Ok(detached)
    }

    /// DescribeHosts, with each host's attachments.
    pub fn describe_hosts(
        &self,
        who: Account,
        ids: &[String],
    ) -> Result<Vec<(HostRecord, Attachments)>, Ec2Error> {
        for id in ids {
            check_instance_id(id)?;
        }
        let st = self.lock();
        let hosts: Vec<&HostRecord> = if ids.is_empty() {
            st.hosts
                .values()
                .filter(|h| who.owns(&h.owner_id))
                .collect()
        } else {
            ids.iter()
                .map(|id| st.host(who, id))
                .collect::<Result<_, _>>()?
        };
        Ok(hosts
            .into_iter()
            .map(|h| {
                let atts = st
                    .volumes
                    .values()
                    .flat_map(|v| {
                        v.attachments
                            .iter()
                            .map(move |a| (v.volume_id.clone(), a.clone()))
                    })
                    .filter(|(_, a)| a.instance_id == h.instance_id)
                    .collect();
                (h.clone(), atts)
            })
            .collect())
    }

    /// Volumes with their live counters and throttle (for attached volumes): `ids`, or all.
    /// `who`: the caller, or `None` for every account's (the operator's `/metrics`).
    pub fn metrics_sources(
        &self,
        who: Option<Account>,
        ids: &[String],
    ) -> Result<Vec<(VolumeRecord, Option<OpenVolume>)>, Ec2Error> {
        for id in ids {
            check_volume_id(id)?;
        }
        let st = self.lock();
        let pick = |v: &VolumeRecord| (v.clone(), st.open.get(&v.volume_id).cloned());
        if ids.is_empty() {
            return Ok(st
                .volumes
                .values()
                .filter(|v| who.is_none_or(|w| w.owns(&v.owner_id)))
                .map(pick)
                .collect());
        }
        ids.iter()
            .map(|id| match who {
                Some(who) => st.volume(who, id).map(pick),
                None => st
                    .volumes
                    .get(id)
                    .map(pick)
                    .ok_or_else(|| volume_not_found(id)),
            })
            .collect()
    }

    /// Number of volumes and hosts in the catalog.
    pub fn counts(&self) -> (usize, usize) {
        let st = self.lock();
        (st.volumes.len(), st.hosts.len())
    }

    /// Shutdown: fences every export (in-flight I/O completes first), then closes every open
    /// volume cleanly (flush, changed-block tracking persisted). Attachments stay in the catalog.
    pub async fn shutdown(&self) {
        self.shut_down_booted().await;
        for export in self.exports.drain() {
            export.fence().await;
        }
        self.stop_snapshot_work().await;
        // Workloads run on: a restart adopts them.
        let ephemeral = self.lock().instances.let_go();
        for o in ephemeral {
            if let Err(e) = o.volume.close().await {
                tracing::error!(path = %o.volume.path().display(), error = %e, "clean close of an instance store disk failed");
            }
        }
        let open: Vec<(String, OpenVolume)> = self.lock().open.drain().collect();
        for (id, o) in open {
            if let Err(e) = o.volume.close().await {
                tracing::error!(volume_id = %id, error = %e, "clean close at shutdown failed");
            }
        }
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.cfg.data_dir
    }
}

fn apply(st: &mut State, changes: Vec<Change>) {
    for c in changes {
        match c {
            Change::PutVolume(v) => {
                st.volumes.insert(v.volume_id.clone(), v);
            }
            Change::PutHost(h) => {
                st.hosts.insert(h.instance_id.clone(), *h);
            }
            Change::DeleteVolume(id) => {
                st.volumes.remove(&id);
            }
            Change::DeleteHost(id) => {
                st.hosts.remove(&id);
            }
            Change::PutSnapshot(snap) => {
                st.snapshots.insert(snap.snapshot_id.clone(), snap);
            }
            Change::DeleteSnapshot(id) => {
                st.snapshots.remove(&id);
            }
            Change::PutFsr(f) => {
                st.fsr.insert(f.key(), f);
            }
            Change::DeleteFsr(key) => {
                st.fsr.remove(&key);
            }
            Change::PutImage(i) => {
                st.images.insert(i.image_id.clone(), i);
            }
            Change::DeleteImage(id) => {
                st.images.remove(&id);
            }
            Change::PutVpc(v) => {
                st.vpcs.insert(v.vpc_id.clone(), v);
            }
            Change::DeleteVpc(id) => {
                st.vpcs.remove(&id);
            }
            Change::PutSubnet(s) => {
                st.subnets.insert(s.subnet_id.clone(), s);
            }
            Change::DeleteSubnet(id) => {
                st.subnets.remove(&id);
            }
            Change::PutKeyPair(k) => {
                st.key_pairs.insert(k.key_pair_id.clone(), k);
            }
            Change::DeleteKeyPair(id) => {
                st.key_pairs.remove(&id);
            }
            Change::PutAddress(a) => {
                st.addresses.insert(a.allocation_id.clone(), a);
            }
            Change::DeleteAddress(id) => {
                st.addresses.remove(&id);
            }
            Change::PutKmsKey(k) => {
                st.kms_keys.insert(k.key_id.clone(), k);
            }
            Change::DeleteKmsKey(id) => {
                st.kms_keys.remove(&id);
            }
            Change::PutKmsAlias(a) => {
                st.kms_aliases.insert(a.key(), a);
            }
            Change::DeleteKmsAlias(key) => {
                st.kms_aliases.remove(&key);
            }
            Change::PutEbsDefaults(d) => {
                st.ebs_defaults.insert(d.owner_id.clone(), d);
            }
            // Kept by the meters, not the state.
            Change::PutUsage(_)
            | Change::PutBillingClock(_)
            | Change::PutReservation(_)
            | Change::PutSavingsPlan(_) => {}
        }
    }
}

/// `IncorrectState` unless the volume is `available` or `in-use`.
fn check_usable(v: &VolumeRecord) -> Result<(), Ec2Error> {
    if matches!(v.state, VolumeState::Available | VolumeState::InUse) {
        return Ok(());
    }
    Err(Ec2Error::new(
        ErrorCode::IncorrectState,
        format!(
            "The volume '{}' is in the '{}' state.",
            v.volume_id,
            v.state.as_str()
        ),
    ))
}

fn attached_to(v: &VolumeRecord) -> String {
    v.attachments
        .iter()
        .map(|a| a.instance_id.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks that `id` is present (`param`) and shaped `prefix-…` (else `malformed`).
fn check_id(id: &str, prefix: &str, param: &str, malformed: ErrorCode) -> Result<(), Ec2Error> {
    if id.is_empty() {
        return Err(Ec2Error::missing(param));
    }
    if !ids::is_valid_id(id, prefix) {
        return Err(Ec2Error::new(
            malformed,
            format!("Invalid id: \"{id}\" (expecting \"{prefix}-...\")"),
        ));
    }
    Ok(())
}

fn check_volume_id(id: &str) -> Result<(), Ec2Error> {
    check_id(id, "vol", "VolumeId", ErrorCode::InvalidVolumeIdMalformed)
}

pub(super) fn check_instance_id(id: &str) -> Result<(), Ec2Error> {
    check_id(id, "i", "InstanceId", ErrorCode::InvalidInstanceIdMalformed)
}

impl State {
    /// Volume `id` if `who` owns it. Another account's volume is `InvalidVolume.NotFound`, as
    /// if it did not exist: AWS does not reveal that an id is someone else's.
    fn volume(&self, who: Account, id: &str) -> Result<&VolumeRecord, Ec2Error> {
        self.volumes
            .get(id)
            .filter(|v| who.owns(&v.owner_id))
            .ok_or_else(|| volume_not_found(id))
    }

    /// Instance (or registered host) `id` if `who` owns it, else `InvalidInstanceID.NotFound`.
    fn host(&self, who: Account, id: &str) -> Result<&HostRecord, Ec2Error> {
        self.hosts
            .get(id)
            .filter(|h| who.owns(&h.owner_id))
            .ok_or_else(|| instance_not_found(id))
    }
}

fn volume_not_found(id: &str) -> Ec2Error {
    Ec2Error::new(
        ErrorCode::InvalidVolumeNotFound,
        format!("The volume '{id}' does not exist."),
    )
}

fn instance_not_found(id: &str) -> Ec2Error {
    Ec2Error::new(
        ErrorCode::InvalidInstanceIdNotFound,
        format!("The instance ID '{id}' does not exist"),
    )
}

/// Pagination tokens: opaque to clients, the hex of the last volume id returned.
fn encode_token(last: &str) -> String {
    hex_token(last)
}

/// A paging token's text: the hex of `s`.
fn hex_token(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The text of a [`hex_token`], if `t` is one.
fn unhex_token(t: &str) -> Option<String> {
    if !t.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..t.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(t.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// A paging token of `prefix` ids, if given: `InvalidParameterValue` when malformed.
fn decode_token_opt(t: Option<&str>, prefix: &str) -> Result<Option<String>, Ec2Error> {
    match t.filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(t) => decode_token(t, prefix)
            .map(Some)
            .ok_or_else(|| Ec2Error::invalid_value("The NextToken is invalid.")),
    }
}

fn decode_token(t: &str, prefix: &str) -> Option<String> {
    let s = unhex_token(t)?;
    ids::is_valid_id(&s, prefix).then_some(s)
}

#[cfg(test)]
mod tests;
