//! ModifyVolume and DescribeVolumesModifications (`EBS-REFERENCE.md` §2).
//!
//! # Design
//! A modification is applied when ModifyVolume returns: the file grows, and the throttle of an
//! attached volume takes the new limits at once, live connections included. What follows is
//! derived from time, with no background task: the modification reads `optimizing` with a
//! growing `Progress` until `start + optimization time`, then `completed`. The next
//! modification may start only then, and at most four may start in any 24 hours.

use std::time::Duration;

use storage_engine::Volume;

use super::filter::glob;
use super::model;
use super::{
    Account, ControlPlane, Ec2Error, ErrorCode, GIB, check_usable, check_volume_id, now_ms,
    validate,
};
use crate::catalog::{Change, ModificationRecord, PerfSpec, VolumeRecord, VolumeType};

/// Modifications allowed per volume in any 24 hours.
pub const MAX_MODIFICATIONS_PER_DAY: usize = 4;
const DAY_MS: u64 = 24 * 3600 * 1000;

/// A modification's state and progress at `now_ms`.
pub fn modification_state(m: &ModificationRecord, now_ms: u64) -> (&'static str, u32) {
    if now_ms >= m.end_ms {
        ("completed", 100)
    } else {
        let span = (m.end_ms - m.start_ms).max(1);
        (
            "optimizing",
            ((now_ms.saturating_sub(m.start_ms)) * 100 / span).min(99) as u32,
        )
    }
}

fn spec_of(v: &VolumeRecord) -> PerfSpec {
    PerfSpec {
        size_gib: v.size_gib,
        volume_type: v.volume_type,
        iops: v.iops,
        throughput: v.throughput,
        multi_attach_enabled: v.multi_attach_enabled,
    }
}

/// The target of a ModifyVolume request, validated against the EBS rules.
fn target_spec(v: &VolumeRecord, req: &model::ModifyVolumeRequest) -> Result<PerfSpec, Ec2Error> {
    let vtype = match req.volume_type.as_deref() {
        None | Some("") => v.volume_type,
        Some(t) => validate::parse_volume_type(Some(t))?,
    };
    let size = req.size.unwrap_or(v.size_gib as i32);
    if size < v.size_gib as i32 {
        return Err(Ec2Error::invalid_value(format!(
            "New size ({size}GiB) cannot be smaller than the current size ({}GiB) of volume {}.",
            v.size_gib, v.volume_id
        )));
    }
    let provisioned = matches!(vtype, VolumeType::Gp3 | VolumeType::Io1 | VolumeType::Io2);
    // The same type keeps its values; a new type starts from the API defaults (3,000 IOPS,
    // 125 MiB/s for gp3) unless given.
    let iops = match req.iops {
        Some(n) => Some(n),
        None if vtype == v.volume_type && provisioned => v.iops.map(|n| n as i32),
        None if provisioned => Some(validate::GP3_BASELINE_IOPS as i32),
        None => None,
    };
    let throughput = match req.throughput {
        Some(n) => Some(n),
        None if vtype == VolumeType::Gp3 && v.volume_type == VolumeType::Gp3 => {
            v.throughput.map(|n| n as i32)
        }
        None => None,
    };
    let multi = req.multi_attach_enabled.unwrap_or(v.multi_attach_enabled);
    let spec = validate::volume_spec(Some(size), vtype, iops, throughput, multi)?;
    Ok(PerfSpec {
        size_gib: spec.size_gib,
        volume_type: spec.volume_type,
        iops: spec.iops,
        throughput: spec.throughput,
        multi_attach_enabled: spec.multi_attach,
    })
}

/// One page of DescribeVolumesModifications: (volume id, its latest modification), and the next
/// page's token.
pub type ModificationsPage = (Vec<(String, ModificationRecord)>, Option<String>);

impl ControlPlane {
    /// ModifyVolume.
    pub fn modify_volume(
        &self,
        who: Account,
        req: model::ModifyVolumeRequest,
    ) -> Result<(String, ModificationRecord), Ec2Error> {
        check_volume_id(&req.volume_id)?;
        let mut st = self.lock();
        let v = st.volume(who, &req.volume_id)?.clone();
        check_usable(&v)?;
        let now = now_ms();
        if let Some(last) = v.modifications.last() {
            let (state, _) = modification_state(last, now);
            if state != "completed" {
                return Err(Ec2Error::new(
                    ErrorCode::IncorrectModificationState,
                    format!(
                        "Volume {} cannot be modified in modification state {}",
                        v.volume_id,
                        state.to_ascii_uppercase()
                    ),
                ));
            }
        }
        let recent = v
            .modifications
            .iter()
            .filter(|m| now.saturating_sub(m.start_ms) < DAY_MS)
            .count();
        if recent >= MAX_MODIFICATIONS_PER_DAY {
            return Err(Ec2Error::new(
                ErrorCode::VolumeModificationRateExceeded,
                format!(
                    "Volume {} has reached the maximum of {MAX_MODIFICATIONS_PER_DAY} modifications per 24 hours.",
                    v.volume_id
                ),
            ));
        }
        let original = spec_of(&v);
        let target = target_spec(&v, &req)?;
        if target == original {
            return Err(Ec2Error::invalid_combination(format!(
                "The requested modification does not change volume {}.",
                v.volume_id
            )));
        }
        if original.multi_attach_enabled && original.volume_type == VolumeType::Io1 {
            return Err(Ec2Error::invalid_combination(
                "Multi-Attach io1 volumes cannot be modified.",
            ));
        }
        if original.multi_attach_enabled && target.volume_type != original.volume_type {
            return Err(Ec2Error::invalid_combination(
                "The type of a Multi-Attach volume cannot be changed.",
            ));
        }
        if target.multi_attach_enabled != original.multi_attach_enabled {
            if original.volume_type != VolumeType::Io2 || target.volume_type != VolumeType::Io2 {
                return Err(Ec2Error::invalid_combination(
                    "Multi-Attach can be toggled only on io2 volumes.",
                ));
            }
            if target.multi_attach_enabled && !v.attachments.is_empty() {
                return Err(Ec2Error::new(
                    ErrorCode::VolumeInUse,
                    format!(
                        "Multi-Attach can be enabled only while volume {} is detached.",
                        v.volume_id
                    ),
                ));
            }
            if !target.multi_attach_enabled && v.attachments.len() > 1 {
                return Err(Ec2Error::new(
                    ErrorCode::VolumeInUse,
                    format!(
                        "Multi-Attach cannot be disabled while volume {} has several attachments.",
                        v.volume_id
                    ),
                ));
            }
        }

        let m = ModificationRecord {
            start_ms: now,
            end_ms: now + self.cfg.optimization_time.as_millis() as u64,
            original,
            target,
        };
        let mut nv = v.clone();
        nv.size_gib = target.size_gib;
        nv.volume_type = target.volume_type;
        nv.iops = target.iops;
        nv.throughput = target.throughput;
        nv.multi_attach_enabled = target.multi_attach_enabled;
        // Keep what the 24-hour rule and DescribeVolumesModifications need.
        nv.modifications
            .retain(|m| now.saturating_sub(m.start_ms) < DAY_MS);
        nv.modifications.push(m.clone());

        // The decision first, then its effect on disk: a file never grows for a modification
        // the catalog does not hold. If growing fails, the decision is taken back; should that
        // fail too, the file is grown to the catalog's size when the volume is next opened.
        self.commit(&[Change::PutVolume(nv.clone())])?;
        if target.size_gib > original.size_gib {
            let bytes = u64::from(target.size_gib) * GIB;
            let grown = match st.open.get(&v.volume_id) {
                Some(open) => open.volume.grow(bytes),
                None => {
                    Volume::grow_file(&self.volume_path(&v.availability_zone, &v.volume_id), bytes)
                }
            };
            if let Err(e) = grown {
                if let Err(undo) = self.commit(&[Change::PutVolume(v.clone())]) {
                    tracing::error!(volume_id = %v.volume_id, error = %undo, "taking back a size change whose grow failed");
                    st.volumes.insert(nv.volume_id.clone(), nv);
                }
                return Err(super::internal("growing the volume")(e));
            }
        }
        if let Some(open) = st.open.get(&v.volume_id) {
            open.throttle.set_limits(self.volume_limits(&nv));
        }
        st.volumes.insert(nv.volume_id.clone(), nv);
        tracing::info!(volume_id = %req.volume_id, ?original, ?target, "volume modified");
        Ok((req.volume_id, m))
    }

    /// DescribeVolumesModifications: the latest modification of each volume, filtered, paged
    /// in volume-id order (MaxResults up to 500; not with ids).
    pub fn describe_volumes_modifications(
        &self,
        who: Account,
        ids: &[String],
        filters: &[model::Filter],
        max_results: Option<i32>,
        next_token: Option<&str>,
    ) -> Result<ModificationsPage, Ec2Error> {
        for id in ids {
            check_volume_id(id)?;
        }
        const NAMES: [&str; 13] = [
            "modification-state",
            "volume-id",
            "target-volume-type",
            "original-volume-type",
            "target-size",
            "original-size",
            "target-iops",
            "original-iops",
            "target-throughput",
            "original-throughput",
            "target-multi-attach-enabled",
            "original-multi-attach-enabled",
            "start-time",
        ];
        super::filter::check_untagged_names(filters, &NAMES)?;
        let max = super::filter::page_size(max_results, !ids.is_empty(), "VolumeIds", 500)?;
        let after = super::decode_token_opt(next_token, "vol")?;
        let now = now_ms();
        let st = self.lock();
        let volumes: Vec<&VolumeRecord> = if ids.is_empty() {
            st.volumes
                .values()
                .filter(|v| who.owns(&v.owner_id))
                .filter(|v| after.as_ref().is_none_or(|a| v.volume_id > *a))
                .collect()
        } else {
            ids.iter()
                .map(|id| st.volume(who, id))
                .collect::<Result<_, _>>()?
        };
        let mut out = Vec::new();
        let mut next = None;
        for v in volumes {
            let Some(m) = v.modifications.last() else {
                if !ids.is_empty() {
                    return Err(Ec2Error::new(
                        ErrorCode::InvalidVolumeModificationNotFound,
                        format!("Modification for volume '{}' does not exist.", v.volume_id),
                    ));
                }
                continue;
            };
            let (state, _) = modification_state(m, now);
            let opt = |n: Option<u32>| n.map(|n| n.to_string()).unwrap_or_default();
            let keep = filters.iter().all(|f| {
                let value = match f.name.as_str() {
                    "modification-state" => state.to_string(),
                    "volume-id" => v.volume_id.clone(),
                    "target-volume-type" => m.target.volume_type.as_str().to_string(),
                    "original-volume-type" => m.original.volume_type.as_str().to_string(),
                    "target-size" => m.target.size_gib.to_string(),
                    "original-size" => m.original.size_gib.to_string(),
                    "target-iops" => opt(m.target.iops),
                    "original-iops" => opt(m.original.iops),
                    "target-throughput" => opt(m.target.throughput),
                    "original-throughput" => opt(m.original.throughput),
                    "target-multi-attach-enabled" => m.target.multi_attach_enabled.to_string(),
                    "original-multi-attach-enabled" => m.original.multi_attach_enabled.to_string(),
                    _ => crate::api::format_time(m.start_ms),
                };
                f.values.iter().any(|p| glob(p, &value))
            });
            if !keep {
                continue;
            }
            if out.len() == max {
                next = out
                    .last()
                    .map(|(id, _): &(String, ModificationRecord)| super::encode_token(id));
                break;
            }
            out.push((v.volume_id.clone(), m.clone()));
        }
        Ok((out, next))
    }
}

/// Default time a modification spends `optimizing`.
pub const DEFAULT_OPTIMIZATION_TIME: Duration = Duration::from_secs(5);
