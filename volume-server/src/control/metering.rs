//! Metering: usage segments (`billing::usage::Segment`) kept as resources change. Every catalog
//! commit that changes what a billed resource costs (a volume created, resized or retyped, an
//! instance entering or leaving `running`, a snapshot completing, an address associated or
//! released) ends that resource's segments whose meter changed and starts new ones, in the
//! same transaction: a crash loses no usage, and usage never outlives the record's change.
//!
//! The billing clock is real time times `--billing-clock-scale` from an anchor kept in the
//! catalog (`billing::clock`): it continues across restarts and never runs backwards.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use billing::clock::Clock;
use billing::commitments::{Reservation, SavingsPlan};
use billing::prices::PriceList;
use billing::usage::{Meter, Segment};

use super::now_ms;
use crate::catalog::{
    AddressRecord, Change, HostRecord, SnapshotRecord, SnapshotState, VolumeRecord, VolumeState,
    VolumeType,
};
use crate::ids;

/// Billing settings (`--price-list`, `--billing-clock-scale`).
#[derive(Debug, Clone)]
pub struct BillingConfig {
    pub prices: Arc<PriceList>,
    /// Billing-clock seconds per real second (1: real time).
    pub clock_scale: f64,
}

impl Default for BillingConfig {
    fn default() -> Self {
        BillingConfig {
            prices: Arc::new(PriceList::builtin()),
            clock_scale: 1.0,
        }
    }
}

/// The least billed for each start of an instance (Linux: per second, one minute minimum).
const INSTANCE_MINIMUM_MS: u64 = 60_000;
/// A snapshot block's bytes (what a block added to a lineage adds to the bill).
const SNAPSHOT_BLOCK_BYTES: u64 = snapshot::block::BLOCK_SIZE;
/// gp3's IOPS and throughput included in its storage price.
const GP3_FREE_IOPS: u64 = 3000;
const GP3_FREE_MIBPS: u64 = 125;

/// What one resource should be metered as now.
#[derive(Clone)]
struct Want {
    meter: Meter,
    account: String,
    az: Option<String>,
    tags: BTreeMap<String, String>,
    min_ms: u64,
}

/// Every segment, and each resource's open ones.
#[derive(Debug, Default)]
struct Book {
    segments: BTreeMap<String, Segment>,
    /// Resource id to the ids of its open segments.
    open: HashMap<String, Vec<String>>,
    /// The billing clock (until [`Meters::load`]: real time).
    clock: Option<Clock>,
    /// The latest time the clock has read: it never reads earlier (the real clock may step
    /// back).
    high: u64,
    /// Bought Reserved Instances and Savings Plans, by id.
    reservations: BTreeMap<String, Reservation>,
    plans: BTreeMap<String, SavingsPlan>,
}

/// The meters of one control plane.
#[derive(Debug)]
pub(super) struct Meters {
    cfg: BillingConfig,
    region: String,
    book: Mutex<Book>,
}

impl Book {
    /// Keeps the commitments among `changes` (after they are committed).
    fn absorb(&mut self, changes: impl Iterator<Item = Change>) {
        for c in changes {
            match c {
                Change::PutReservation(r) => {
                    self.reservations.insert(r.id.clone(), r);
                }
                Change::PutSavingsPlan(p) => {
                    self.plans.insert(p.id.clone(), p);
                }
                _ => {}
            }
        }
    }

    fn now(&mut self) -> u64 {
        let real = now_ms();
        let t = self.clock.map_or(real, |c| c.at(real));
        self.high = self.high.max(t);
        self.high
    }

    fn put(&mut self, s: Segment) {
        let open = self.open.entry(s.resource_id.clone()).or_default();
        open.retain(|id| *id != s.id);
        if s.end_ms.is_none() {
            open.push(s.id.clone());
        }
        if open.is_empty() {
            self.open.remove(&s.resource_id);
        }
        self.segments.insert(s.id.clone(), s);
    }
}

impl Meters {
    pub(super) fn new(cfg: BillingConfig, region: &str) -> Meters {
        Meters {
            cfg,
            region: region.to_string(),
            book: Mutex::default(),
        }
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        // Memory changes only after the catalog commit: a poisoned book is the committed one.
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the catalog's segments and clock anchor. Returns a new anchor to keep (the first
    /// start, or a changed scale).
    pub(super) fn load(
        &self,
        segments: Vec<Segment>,
        anchor: Option<Clock>,
        reservations: Vec<Reservation>,
        plans: Vec<SavingsPlan>,
    ) -> Option<Clock> {
        let mut book = self.book();
        let real = now_ms();
        let scale = self.cfg.clock_scale;
        let (clock, fresh) = match anchor {
            None => (Clock::new(real, scale), true),
            Some(a) => match a.resume(real, scale) {
                Some(b) => (b, true),
                None => (a, false),
            },
        };
        book.clock = Some(clock);
        // Nothing recorded is later than the clock, whatever the real clock did meanwhile.
        book.high = segments
            .iter()
            .map(|s| s.end_ms.unwrap_or(s.start_ms).max(s.start_ms))
            .max()
            .unwrap_or(0);
        for s in segments {
            book.put(s);
        }
        book.absorb(reservations.into_iter().map(Change::PutReservation));
        book.absorb(plans.into_iter().map(Change::PutSavingsPlan));
        fresh.then_some(clock)
    }

    /// The billing clock (ms since the Unix epoch).
    pub(super) fn now(&self) -> u64 {
        self.book().now()
    }

    /// The price list.
    pub(super) fn prices(&self) -> &PriceList {
        &self.cfg.prices
    }

    /// Every segment of `account`, and the billing clock.
    pub(super) fn segments_of(&self, account: &str) -> (Vec<Segment>, u64) {
        let mut book = self.book();
        let now = book.now();
        let mine = book
            .segments
            .values()
            .filter(|s| s.account == account)
            .cloned()
            .collect();
        (mine, now)
    }

    /// The Reserved Instances and Savings Plans `account` bought.
    pub(super) fn commitments_of(&self, account: &str) -> (Vec<Reservation>, Vec<SavingsPlan>) {
        let book = self.book();
        (
            book.reservations
                .values()
                .filter(|r| r.account == account)
                .cloned()
                .collect(),
            book.plans
                .values()
                .filter(|p| p.account == account)
                .cloned()
                .collect(),
        )
    }

    /// Commits `changes` with `commit`, adding the usage they change to the same transaction.
    pub(super) fn commit<E>(
        &self,
        changes: &[Change],
        commit: impl FnOnce(&[Change]) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut book = self.book();
        let now = book.now();
        let usage = self.usage_changes(&book, changes.iter().filter_map(wanted), now);
        if usage.is_empty() {
            commit(changes)?;
        } else {
            let mut all = changes.to_vec();
            all.extend(usage.iter().cloned().map(Change::PutUsage));
            commit(&all)?;
        }
        for s in usage {
            book.put(s);
        }
        book.absorb(
            changes
                .iter()
                .filter(|c| matches!(c, Change::PutReservation(_) | Change::PutSavingsPlan(_)))
                .cloned(),
        );
        Ok(())
    }

    /// At start-up, after recovery: every resource metered as its record says now (records
    /// from before metering, or changed by recovery), and open segments of resources that are
    /// gone ended. Returns the changes to commit with [`Meters::commit_usage`].
    pub(super) fn reconcile(&self, records: &[Change]) -> Vec<Segment> {
        let mut book = self.book();
        let now = book.now();
        let wants: Vec<(String, Vec<Want>)> = records.iter().filter_map(wanted).collect();
        let mut out = self.usage_changes(
            &book,
            wants.iter().map(|(r, w)| (r.clone(), w.clone())),
            now,
        );
        let live: std::collections::HashSet<&str> = wants.iter().map(|(r, _)| r.as_str()).collect();
        for (resource, ids) in &book.open {
            if live.contains(resource.as_str()) {
                continue;
            }
            for id in ids {
                let mut s = book.segments[id].clone();
                s.end_ms = Some(now.max(s.start_ms));
                out.push(s);
            }
        }
        out
    }

    /// Commits segments made by [`Meters::reconcile`].
    pub(super) fn commit_usage<E>(
        &self,
        usage: Vec<Segment>,
        commit: impl FnOnce(&[Change]) -> Result<(), E>,
    ) -> Result<(), E> {
        if usage.is_empty() {
            return Ok(());
        }
        let mut book = self.book();
        let changes: Vec<Change> = usage.iter().cloned().map(Change::PutUsage).collect();
        commit(&changes)?;
        for s in usage {
            book.put(s);
        }
        Ok(())
    }

    /// The segments to end and to start so that each resource of `wants` is metered as it
    /// wants (a resource named twice: its last change counts).
    fn usage_changes(
        &self,
        book: &Book,
        wants: impl Iterator<Item = (String, Vec<Want>)>,
        now: u64,
    ) -> Vec<Segment> {
        let mut last: BTreeMap<String, Vec<Want>> = BTreeMap::new();
        for (resource, w) in wants {
            last.insert(resource, w);
        }
        let mut out = Vec::new();
        for (resource, wants) in last {
            let open: Vec<&Segment> = book
                .open
                .get(&resource)
                .into_iter()
                .flatten()
                .map(|id| &book.segments[id])
                .collect();
            for s in &open {
                if !wants.iter().any(|w| w.meter == s.meter) {
                    let mut s = (*s).clone();
                    s.end_ms = Some(now.max(s.start_ms));
                    out.push(s);
                }
            }
            for w in wants {
                if !open.iter().any(|s| s.meter == w.meter) {
                    out.push(Segment {
                        id: ids::new_id("usage"),
                        account: w.account,
                        region: self.region.clone(),
                        az: w.az,
                        resource_id: resource.clone(),
                        meter: w.meter,
                        start_ms: now,
                        end_ms: None,
                        min_ms: w.min_ms,
                        tags: w.tags,
                    });
                }
            }
        }
        out
    }
}

/// The resource a change is about and how it should be metered after it (nothing, for a change
/// that is not about a billed resource).
fn wanted(change: &Change) -> Option<(String, Vec<Want>)> {
    Some(match change {
        Change::PutVolume(v) => (v.volume_id.clone(), volume(v)),
        Change::DeleteVolume(id) => (id.clone(), Vec::new()),
        Change::PutHost(h) => (h.instance_id.clone(), instance(h)),
        Change::DeleteHost(id) => (id.clone(), Vec::new()),
        Change::PutSnapshot(s) => (s.snapshot_id.clone(), snapshot(s)),
        Change::DeleteSnapshot(id) => (id.clone(), Vec::new()),
        Change::PutAddress(a) => (a.allocation_id.clone(), address(a)),
        Change::DeleteAddress(id) => (id.clone(), Vec::new()),
        _ => return None,
    })
}

fn want(meter: Meter, account: &str, az: Option<&str>, tags: &BTreeMap<String, String>) -> Want {
    Want {
        meter,
        account: account.to_string(),
        az: az.map(str::to_string),
        tags: tags.clone(),
        min_ms: 0,
    }
}

/// A volume is billed from creation to deletion for its size, and for the IOPS and throughput
/// its type charges for.
fn volume(v: &VolumeRecord) -> Vec<Want> {
    if !matches!(
        v.state,
        VolumeState::Creating | VolumeState::Available | VolumeState::InUse
    ) {
        return Vec::new();
    }
    let ty = v.volume_type.as_str().to_string();
    let w = |m| want(m, &v.owner_id, Some(&v.availability_zone), &v.tags);
    let mut out = vec![w(Meter::VolumeStorage {
        volume_type: ty.clone(),
        gib: u64::from(v.size_gib),
    })];
    let iops = u64::from(v.iops.unwrap_or(0));
    let billed_iops = match v.volume_type {
        VolumeType::Io1 | VolumeType::Io2 => iops,
        VolumeType::Gp3 => iops.saturating_sub(GP3_FREE_IOPS),
        _ => 0,
    };
    if billed_iops > 0 {
        out.push(w(Meter::VolumeIops {
            volume_type: ty,
            iops: billed_iops,
        }));
    }
    if v.volume_type == VolumeType::Gp3 {
        let mibps = u64::from(v.throughput.unwrap_or(0)).saturating_sub(GP3_FREE_MIBPS);
        if mibps > 0 {
            out.push(w(Meter::VolumeThroughput { mibps }));
        }
    }
    out
}

/// An instance is billed while `running`, at least a minute per start.
fn instance(h: &HostRecord) -> Vec<Want> {
    let Some(i) = &h.instance else {
        return Vec::new();
    };
    if i.state != instance_manager::lifecycle::InstanceState::Running {
        return Vec::new();
    }
    let mut w = want(
        Meter::Instance {
            instance_type: i.instance_type.clone(),
        },
        &h.owner_id,
        Some(&h.availability_zone),
        &h.tags,
    );
    w.min_ms = INSTANCE_MINIMUM_MS;
    vec![w]
}

/// A completed snapshot is billed for the blocks it added to its lineage.
fn snapshot(s: &SnapshotRecord) -> Vec<Want> {
    if s.state != SnapshotState::Completed {
        return Vec::new();
    }
    vec![want(
        Meter::SnapshotStorage {
            bytes: s.blocks_written * SNAPSHOT_BLOCK_BYTES,
        },
        &s.owner_id,
        None,
        &s.tags,
    )]
}

/// An Elastic IP is a public IPv4 address, billed by the hour; "in use" while associated.
fn address(a: &AddressRecord) -> Vec<Want> {
    vec![want(
        Meter::PublicIpv4 {
            in_use: a.association.is_some(),
        },
        &a.owner_id,
        None,
        &a.tags,
    )]
}

impl super::ControlPlane {
    /// At start-up: usage as the recovered records say (see [`Meters::reconcile`]).
    pub(super) fn reconcile_meters(&self, st: &super::State) -> Result<(), super::Ec2Error> {
        let mut records: Vec<Change> = Vec::new();
        records.extend(st.volumes.values().cloned().map(Change::PutVolume));
        records.extend(
            st.hosts
                .values()
                .cloned()
                .map(|h| Change::PutHost(Box::new(h))),
        );
        records.extend(st.snapshots.values().cloned().map(Change::PutSnapshot));
        records.extend(st.addresses.values().cloned().map(Change::PutAddress));
        let usage = self.meters.reconcile(&records);
        self.meters
            .commit_usage(usage, |c| self.catalog.commit(c))
            .map_err(super::internal("committing usage at start-up"))
    }

    /// Cost Explorer's GetCostAndUsage for `who`: its usage, priced, per period and group.
    pub fn cost_and_usage(
        &self,
        who: super::Account,
        q: &billing::report::CostQuery,
    ) -> Result<Vec<billing::report::PeriodResult>, super::Ec2Error> {
        q.check().map_err(|e| {
            super::Ec2Error::new(super::ErrorCode::ValidationException, e.to_string())
        })?;
        let (segments, now) = self.meters.segments_of(who.id());
        let (reservations, plans) = self.meters.commitments_of(who.id());
        let charges = billing::commitments::bill(
            &segments,
            &reservations,
            &plans,
            self.meters.prices(),
            q.granularity,
            q.start_ms,
            q.end_ms,
            now,
        );
        Ok(billing::report::answer(q, &charges, now))
    }

    /// The billing clock (ms since the Unix epoch).
    pub fn billing_now(&self) -> u64 {
        self.meters.now()
    }
}
