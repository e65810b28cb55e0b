//! Status checks: of instances (DescribeInstanceStatus, what `aws ec2 wait instance-status-ok`
//! and `system-status-ok` poll) and of volumes (DescribeVolumeStatus).
//!
//! A running instance passes its reachability checks: its workload was started (or it has
//! none) and the server serving it is up, which is all a check could find out here; a booted
//! instance's instance check is `initializing` until its init has started sshd and user data. Its
//! attached-EBS check fails while one of its volumes is impaired (an I/O error failed it).
//! Instances in other states are `not-applicable`, and are listed only with
//! `IncludeAllInstances`.

use instance_manager::lifecycle::InstanceState;

use super::filter::{check_untagged_names, glob, page_size};
use super::views::VolumeStatus;
use super::{Account, ControlPlane, Ec2Error, State, check_instance_id, decode_token_opt, model};
use crate::catalog::{HostRecord, VolumeRecord};

/// One page of DescribeVolumeStatus: each volume with its checks, and the next page's token.
pub type VolumeStatusPage = (Vec<(VolumeRecord, VolumeStatus)>, Option<String>);

/// One check's summary: `ok`, `impaired` or `not-applicable`, with (name, result) details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSummary {
    pub status: &'static str,
    pub details: Vec<(&'static str, &'static str)>,
}

impl StatusSummary {
    fn not_applicable() -> StatusSummary {
        StatusSummary {
            status: "not-applicable",
            details: vec![],
        }
    }

    fn reachable() -> StatusSummary {
        StatusSummary {
            status: "ok",
            details: vec![("reachability", "passed")],
        }
    }
}

/// One instance's status, as DescribeInstanceStatus lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceStatusView {
    pub instance_id: String,
    pub availability_zone: String,
    pub state: InstanceState,
    pub instance_status: StatusSummary,
    pub system_status: StatusSummary,
    pub attached_ebs_status: StatusSummary,
}

/// DescribeInstanceStatus's parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DescribeInstanceStatusRequest {
    pub instance_ids: Vec<String>,
    /// Non-running instances too.
    pub include_all_instances: bool,
    /// availability-zone, instance-state-name, instance-state-code, instance-status.status,
    /// instance-status.reachability, system-status.status, system-status.reachability
    pub filters: Vec<model::Filter>,
    pub max_results: Option<i32>,
    pub next_token: Option<String>,
}

fn status_of(st: &State, h: &HostRecord, state: InstanceState) -> InstanceStatusView {
    let (instance_status, system_status, attached_ebs_status) = if state == InstanceState::Running {
        let impaired = st.volumes.values().any(|v| {
            v.attachments.iter().any(|a| a.instance_id == h.instance_id)
                && VolumeStatus::of(v, st.open.get(&v.volume_id), 0).status == "impaired"
        });
        let ebs = StatusSummary {
            status: if impaired { "impaired" } else { "ok" },
            details: vec![("reachability", if impaired { "failed" } else { "passed" })],
        };
        // A booted instance is `initializing` until its init has started sshd and user data.
        let booting = st.instances.local.contains_key(&h.instance_id)
            && h.instance
                .as_ref()
                .and_then(|i| i.pid)
                .is_some_and(|(leader, _)| !instance_manager::boot::has_booted(leader));
        let instance = if booting {
            StatusSummary {
                status: "initializing",
                details: vec![("reachability", "initializing")],
            }
        } else {
            StatusSummary::reachable()
        };
        (instance, StatusSummary::reachable(), ebs)
    } else {
        (
            StatusSummary::not_applicable(),
            StatusSummary::not_applicable(),
            StatusSummary::not_applicable(),
        )
    };
    InstanceStatusView {
        instance_id: h.instance_id.clone(),
        availability_zone: h.availability_zone.clone(),
        state,
        instance_status,
        system_status,
        attached_ebs_status,
    }
}

fn matches(f: &model::Filter, s: &InstanceStatusView) -> bool {
    let any = |v: &str| f.values.iter().any(|p| glob(p, v));
    let reachability = |c: &StatusSummary| {
        c.details
            .iter()
            .find(|(n, _)| *n == "reachability")
            .is_some_and(|(_, r)| any(r))
    };
    match f.name.as_str() {
        "availability-zone" => any(&s.availability_zone),
        "instance-state-name" => any(s.state.as_str()),
        "instance-state-code" => any(&s.state.code().to_string()),
        "instance-status.status" => any(s.instance_status.status),
        "instance-status.reachability" => reachability(&s.instance_status),
        "system-status.status" => any(s.system_status.status),
        "system-status.reachability" => reachability(&s.system_status),
        _ => false,
    }
}

impl ControlPlane {
    /// DescribeInstanceStatus: the caller's running instances (all of them with
    /// `include_all_instances`), or `instance_ids`, filtered and paged in instance-id order.
    pub fn describe_instance_status(
        &self,
        who: Account,
        req: DescribeInstanceStatusRequest,
    ) -> Result<(Vec<InstanceStatusView>, Option<String>), Ec2Error> {
        for id in &req.instance_ids {
            check_instance_id(id)?;
        }
        check_untagged_names(
            &req.filters,
            &[
                "availability-zone",
                "instance-state-name",
                "instance-state-code",
                "instance-status.status",
                "instance-status.reachability",
                "system-status.status",
                "system-status.reachability",
            ],
        )?;
        let max = page_size(
            req.max_results,
            !req.instance_ids.is_empty(),
            "InstanceIds",
            1000,
        )?;
        let after = decode_token_opt(req.next_token.as_deref(), "i")?;
        let st = self.lock();
        let listed = |s: &InstanceStatusView| {
            (req.include_all_instances || s.state == InstanceState::Running)
                && req.filters.iter().all(|f| matches(f, s))
        };
        if !req.instance_ids.is_empty() {
            let mut out: Vec<InstanceStatusView> = vec![];
            for id in &req.instance_ids {
                let h = super::instances::visible_instance(&st, who, id)?;
                let s = status_of(&st, &h, super::instances::state_of(&h));
                if listed(&s) && !out.iter().any(|o| o.instance_id == *id) {
                    out.push(s);
                }
            }
            return Ok((out, None));
        }
        let mut out = vec![];
        let mut next = None;
        for (id, h) in &st.hosts {
            if !who.owns(&h.owner_id) || after.as_ref().is_some_and(|a| id <= a) {
                continue;
            }
            let s = status_of(&st, h, super::instances::state_of(h));
            if !listed(&s) {
                continue;
            }
            if out.len() == max {
                next = out
                    .last()
                    .map(|l: &InstanceStatusView| super::encode_token(&l.instance_id));
                break;
            }
            out.push(s);
        }
        Ok((out, next))
    }
}

impl ControlPlane {
    /// The status checks of `v`, open as `open` (if it is).
    pub fn volume_status_of(
        &self,
        v: &VolumeRecord,
        open: Option<&crate::exports::OpenVolume>,
    ) -> VolumeStatus {
        VolumeStatus::of(v, open, self.cfg.snapshots.default_initialization_rate_mib)
    }

    /// DescribeVolumeStatus: the caller's volumes, or `ids`, with their status checks, filtered
    /// by `availability-zone`, `volume-status.status`, `volume-status.details-name` and
    /// `volume-status.details-status` (the `action.*` and `event.*` filters match nothing: no
    /// scheduled events happen here), paged in volume-id order.
    pub fn describe_volume_status(
        &self,
        who: Account,
        ids: &[String],
        filters: &[model::Filter],
        max_results: Option<i32>,
        next_token: Option<&str>,
    ) -> Result<VolumeStatusPage, Ec2Error> {
        for id in ids {
            super::check_volume_id(id)?;
        }
        const NAMES: [&str; 13] = [
            "availability-zone",
            "volume-status.status",
            "volume-status.details-name",
            "volume-status.details-status",
            "action.code",
            "action.description",
            "action.event-id",
            "event.description",
            "event.event-id",
            "event.event-type",
            "event.not-after",
            "event.not-before",
            "event.not-before-deadline",
        ];
        check_untagged_names(filters, &NAMES)?;
        let max = page_size(max_results, !ids.is_empty(), "VolumeIds", 1000)?;
        let after = decode_token_opt(next_token, "vol")?;
        let st = self.lock();
        let status = |v: &VolumeRecord| self.volume_status_of(v, st.open.get(&v.volume_id));
        let keep = |v: &VolumeRecord, s: &VolumeStatus| {
            filters.iter().all(|f| {
                let any = |v: &str| f.values.iter().any(|p| glob(p, v));
                match f.name.as_str() {
                    "availability-zone" => any(&v.availability_zone),
                    "volume-status.status" => any(s.status),
                    "volume-status.details-name" => s.details.iter().any(|(n, _)| any(n)),
                    "volume-status.details-status" => s.details.iter().any(|(_, r)| any(r)),
                    _ => false,
                }
            })
        };
        if !ids.is_empty() {
            let mut out: Vec<(VolumeRecord, VolumeStatus)> = vec![];
            for id in ids {
                let v = st.volume(who, id)?;
                let s = status(v);
                if keep(v, &s) && !out.iter().any(|(o, _)| o.volume_id == *id) {
                    out.push((v.clone(), s));
                }
            }
            return Ok((out, None));
        }
        let mut out = vec![];
        let mut next = None;
        for v in st.volumes.values() {
            if !who.owns(&v.owner_id) || after.as_ref().is_some_and(|a| v.volume_id <= *a) {
                continue;
            }
            let s = status(v);
            if !keep(v, &s) {
                continue;
            }
            if out.len() == max {
                next = out
                    .last()
                    .map(|(l, _): &(VolumeRecord, VolumeStatus)| super::encode_token(&l.volume_id));
                break;
            }
            out.push((v.clone(), s));
        }
        Ok((out, next))
    }
}
