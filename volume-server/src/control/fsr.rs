//! Fast snapshot restore (FSR), per (snapshot, availability zone).
//!
//! # Rules (EBS-REFERENCE §3)
//! - Enabling goes `enabling` (for `--transition-time`) → `optimizing` (60 minutes per TiB of
//!   snapshot) → `enabled`; disabling takes effect at once (no more fast restores) and shows
//!   `disabling` for the transition time, then `disabled`.
//! - Each (snapshot, zone) has a credit bucket that starts empty when enabled, holds
//!   MAX(1, MIN(10, 1024 ÷ GiB)) credits and fills at MIN(10, 1024 ÷ GiB) credits per hour.
//! - CreateVolume from the snapshot in that zone uses FSR when it is `enabled` and the bucket
//!   has a whole credit: it takes one, and the volume is fully initialized before it is
//!   `available` (`FastRestored`). Otherwise the volume restores lazily.
//!
//! Time runs `time_scale` times faster than the wall clock for optimizing and credit fill
//! (`--fsr-time-scale`), so tests need not wait for hours.

use super::filter::glob;
use super::model;
use super::views::FsrFailure;
use super::{Account, ControlPlane, Ec2Error, ErrorCode, GIB, State, now_ms};
use crate::catalog::{Change, FsrRecord, SnapshotState};

/// (snapshot, zone) pairs with FSR per region.
pub const MAX_FSR_PER_REGION: usize = 50;
const HOUR_MS: f64 = 3_600_000.0;

/// An FSR setting as described, with its state at a moment.
#[derive(Debug, Clone)]
pub struct FsrView {
    /// The record.
    pub record: FsrRecord,
    /// The snapshot's owner.
    pub owner_id: String,
    /// enabling | optimizing | enabled | disabled.
    pub state: &'static str,
    /// When optimizing began (`None` before).
    pub optimizing_ms: Option<u64>,
    /// When it became enabled (`None` before).
    pub enabled_ms: Option<u64>,
}

impl FsrView {
    /// EC2's `StateTransitionReason` of the current state.
    pub fn transition_reason(&self) -> &'static str {
        match self.state {
            "disabling" | "disabled" => "Client.UserInitiated - Lifecycle state transition",
            _ => "Client.UserInitiated",
        }
    }
}

fn bucket(size_gib: u32) -> (f64, f64) {
    let per_gib = 1024.0 / f64::from(size_gib.max(1));
    let fill = per_gib.min(10.0);
    (fill.max(1.0), fill)
}

impl ControlPlane {
    fn scaled(&self, wall_ms: u64) -> f64 {
        wall_ms as f64 * self.cfg.snapshots.fsr_time_scale
    }

    /// Credits of `f` at `now` (not stored).
    fn credits_at(&self, st: &State, f: &FsrRecord, now: u64) -> f64 {
        let size = st
            .snapshots
            .get(&f.snapshot_id)
            .map_or(1, |s| s.volume_size_gib);
        let (cap, fill) = bucket(size);
        let since = now
            .max(f.enabled_ms)
            .saturating_sub(f.credits_ms.max(f.enabled_ms));
        (f.credits + fill * self.scaled(since) / HOUR_MS).min(cap)
    }

    fn view(&self, who: Account, f: &FsrRecord, now: u64) -> FsrView {
        // enabling for the transition time, optimizing until enabled; disabling for the
        // transition time after a disable, then disabled.
        let t = self.cfg.transition_time.as_millis() as u64;
        let optimizing_from = (f.enabling_ms + t).min(f.enabled_ms);
        let (state, optimizing, enabled) = match f.disabled_ms {
            Some(d) => (
                if now < d + t { "disabling" } else { "disabled" },
                (d >= optimizing_from).then_some(optimizing_from),
                (d >= f.enabled_ms).then_some(f.enabled_ms),
            ),
            None if now < optimizing_from => ("enabling", None, None),
            None if now < f.enabled_ms => ("optimizing", Some(optimizing_from), None),
            None => ("enabled", Some(optimizing_from), Some(f.enabled_ms)),
        };
        FsrView {
            record: f.clone(),
            owner_id: who.id().to_string(),
            state,
            optimizing_ms: optimizing,
            enabled_ms: enabled,
        }
    }

    /// EnableFastSnapshotRestores: every (snapshot, zone) pair, each succeeding or failing.
    pub fn enable_fast_snapshot_restores(
        &self,
        who: Account,
        req: model::EnableFastSnapshotRestoresRequest,
    ) -> Result<(Vec<FsrView>, Vec<FsrFailure>), Ec2Error> {
        self.fsr_pairs(who, &req.availability_zones, &req.source_snapshot_ids, true)
    }

    /// DisableFastSnapshotRestores.
    pub fn disable_fast_snapshot_restores(
        &self,
        who: Account,
        req: model::DisableFastSnapshotRestoresRequest,
    ) -> Result<(Vec<FsrView>, Vec<FsrFailure>), Ec2Error> {
        self.fsr_pairs(
            who,
            &req.availability_zones,
            &req.source_snapshot_ids,
            false,
        )
    }

    fn fsr_pairs(
        &self,
        who: Account,
        zones: &[String],
        snapshots: &[String],
        enable: bool,
    ) -> Result<(Vec<FsrView>, Vec<FsrFailure>), Ec2Error> {
        if zones.is_empty() {
            return Err(Ec2Error::missing("AvailabilityZones"));
        }
        if snapshots.is_empty() {
            return Err(Ec2Error::missing("SourceSnapshotIds"));
        }
        // Each pair is a record at most; far more pairs than a region may hold is a mistake
        // (and would hold the lock for as long as it took to refuse them one by one).
        if zones.len().saturating_mul(snapshots.len()) > 4 * MAX_FSR_PER_REGION {
            return Err(Ec2Error::invalid_value(format!(
                "At most {} snapshot and zone pairs may be given in one call.",
                4 * MAX_FSR_PER_REGION
            )));
        }
        let now = now_ms();
        let mut st = self.lock();
        let mut ok = vec![];
        let mut failed = vec![];
        let mut changes = vec![];
        for snap in snapshots {
            for az in zones {
                let fail = |code: ErrorCode, message: String| FsrFailure {
                    snapshot_id: snap.clone(),
                    availability_zone: az.clone(),
                    code,
                    message,
                };
                if let Err(e) = self.check_az(az) {
                    failed.push(fail(e.code, e.message));
                    continue;
                }
                let Ok(s) = st.snapshot(who, snap) else {
                    failed.push(fail(
                        ErrorCode::InvalidSnapshotNotFound,
                        format!("The snapshot '{snap}' does not exist."),
                    ));
                    continue;
                };
                let key = format!("{snap}/{az}");
                if enable {
                    if s.state != SnapshotState::Completed {
                        failed.push(fail(
                            ErrorCode::IncorrectState,
                            format!("Snapshot {snap} is not completed."),
                        ));
                        continue;
                    }
                    let live = |f: &FsrRecord| f.disabled_ms.is_none();
                    if let Some(f) = st.fsr.get(&key).filter(|f| live(f)) {
                        ok.push(self.view(who, f, now));
                        continue;
                    }
                    // The limit is per account and region.
                    let mine = |f: &FsrRecord| {
                        st.snapshots
                            .get(&f.snapshot_id)
                            .is_some_and(|s| who.owns(&s.owner_id))
                    };
                    if st.fsr.values().filter(|f| live(f) && mine(f)).count() >= MAX_FSR_PER_REGION
                    {
                        failed.push(fail(
                            ErrorCode::FastSnapshotRestoreLimitExceeded,
                            format!("At most {MAX_FSR_PER_REGION} snapshot and zone pairs may have fast snapshot restore."),
                        ));
                        continue;
                    }
                    // 60 minutes per TiB, in scaled time.
                    let tib = f64::from(s.volume_size_gib) * GIB as f64 / (1u64 << 40) as f64;
                    let optimize_ms =
                        (tib * HOUR_MS / self.cfg.snapshots.fsr_time_scale.max(1e-9)) as u64;
                    // `enabling` for the transition time, then `optimizing`.
                    let enabled_ms =
                        now + self.cfg.transition_time.as_millis() as u64 + optimize_ms;
                    let f = FsrRecord {
                        snapshot_id: snap.clone(),
                        availability_zone: az.clone(),
                        enabling_ms: now,
                        enabled_ms,
                        disabled_ms: None,
                        credits: 0.0,
                        credits_ms: enabled_ms,
                    };
                    changes.push(Change::PutFsr(f.clone()));
                    ok.push(self.view(who, &f, now));
                    st.fsr.insert(key, f);
                } else {
                    let Some(mut f) = st.fsr.get(&key).cloned() else {
                        failed.push(fail(
                            ErrorCode::InvalidParameterValue,
                            format!("Fast snapshot restore is not enabled for {snap} in {az}."),
                        ));
                        continue;
                    };
                    f.disabled_ms.get_or_insert(now);
                    changes.push(Change::PutFsr(f.clone()));
                    ok.push(self.view(who, &f, now));
                    st.fsr.insert(key, f);
                }
            }
        }
        if !changes.is_empty() {
            self.commit(&changes)?;
        }
        Ok((ok, failed))
    }

    /// DescribeFastSnapshotRestores with filters (availability-zone, snapshot-id, state,
    /// owner-id), paginated in (snapshot, zone) order.
    pub fn describe_fast_snapshot_restores(
        &self,
        who: Account,
        req: model::DescribeFastSnapshotRestoresRequest,
    ) -> Result<(Vec<FsrView>, Option<String>), Ec2Error> {
        super::filter::check_untagged_names(
            &req.filters,
            &["availability-zone", "snapshot-id", "state", "owner-id"],
        )?;
        let max = match req.max_results {
            None => usize::MAX,
            Some(n) if !(1..=200).contains(&n) => {
                return Err(Ec2Error::invalid_value(format!(
                    "Value ({n}) for parameter maxResults is invalid. Expecting a value between 1 and 200."
                )));
            }
            Some(n) => n as usize,
        };
        let after = req.next_token.filter(|t| !t.is_empty());
        let now = now_ms();
        let st = self.lock();
        let mut out = vec![];
        let mut next = None;
        for (key, f) in &st.fsr {
            if after.as_ref().is_some_and(|a| key <= a)
                || !st
                    .snapshots
                    .get(&f.snapshot_id)
                    .is_some_and(|s| who.owns(&s.owner_id))
            {
                continue;
            }
            let v = self.view(who, f, now);
            let passes = req.filters.iter().all(|flt| {
                let value = match flt.name.as_str() {
                    "availability-zone" => f.availability_zone.as_str(),
                    "snapshot-id" => f.snapshot_id.as_str(),
                    "state" => v.state,
                    _ => who.id(),
                };
                flt.values.iter().any(|p| glob(p, value))
            });
            if !passes {
                continue;
            }
            if out.len() == max {
                next = out.last().map(|l: &FsrView| l.record.key());
                break;
            }
            out.push(v);
        }
        Ok((out, next))
    }

    /// Takes an FSR credit for a volume from `snapshot_id` in `az`, if FSR applies now.
    pub(super) fn take_fsr_credit(&self, st: &mut State, snapshot_id: &str, az: &str) -> bool {
        let key = format!("{snapshot_id}/{az}");
        let now = now_ms();
        let Some(f) = st.fsr.get(&key).cloned() else {
            return false;
        };
        if f.disabled_ms.is_some() || now < f.enabled_ms {
            return false;
        }
        let credits = self.credits_at(st, &f, now);
        if credits < 1.0 {
            tracing::info!(
                snapshot_id,
                az,
                credits,
                "fast snapshot restore: no credit; the volume restores lazily"
            );
            return false;
        }
        let mut nf = f;
        nf.credits = credits - 1.0;
        nf.credits_ms = now;
        if self.commit(&[Change::PutFsr(nf.clone())]).is_err() {
            return false;
        }
        st.fsr.insert(key, nf);
        true
    }

    /// Removes the FSR settings of a deleted snapshot.
    pub(super) fn forget_fsr(&self, st: &mut State, snapshot_id: &str) -> Vec<Change> {
        let keys: Vec<String> = st
            .fsr
            .keys()
            .filter(|k| k.starts_with(&format!("{snapshot_id}/")))
            .cloned()
            .collect();
        keys.into_iter()
            .map(|k| {
                st.fsr.remove(&k);
                Change::DeleteFsr(k)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::bucket;

    #[test]
    fn bucket_sizes_follow_the_reference() {
        assert_eq!(bucket(8), (10.0, 10.0));
        assert_eq!(bucket(128), (8.0, 8.0));
        assert_eq!(bucket(1024), (1.0, 1.0));
        assert_eq!(bucket(4096), (1.0, 0.25));
    }
}
