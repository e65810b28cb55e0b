//! Reservation commands on the control plane: validate, take the volume's reservation lock for
//! writing (which drains the I/O checked against the old state), commit, publish.

use super::model;
use super::{
    Account, ControlPlane, Ec2Error, ErrorCode, check_instance_id, check_volume_id,
    volume_not_found,
};
use crate::catalog::{AttachmentState, Change, VolumeType};
use crate::reservation::{ReservationError, ReservationRecord, ReservationType};

fn resv_error(e: ReservationError) -> Ec2Error {
    match e {
        ReservationError::Conflict(m) => Ec2Error::new(ErrorCode::ReservationConflict, m),
        ReservationError::Invalid(m) => Ec2Error::invalid_value(m),
    }
}

fn parse_type(n: i32) -> Result<ReservationType, Ec2Error> {
    ReservationType::from_nvme(n)
        .ok_or_else(|| Ec2Error::invalid_value(format!("Invalid reservation type {n} (1-6)")))
}

impl ControlPlane {
    /// Applies `change` to a volume's reservation state on behalf of `instance_id`, which must
    /// be attached to it.
    fn reservation_change<F>(
        &self,
        who: Account,
        volume_id: &str,
        instance_id: &str,
        change: F,
    ) -> Result<ReservationRecord, Ec2Error>
    where
        F: FnOnce(&mut ReservationRecord) -> Result<(), ReservationError>,
    {
        check_volume_id(volume_id)?;
        check_instance_id(instance_id)?;
        let lock = {
            let st = self.lock();
            let v = st.volume(who, volume_id)?;
            if v.volume_type != VolumeType::Io2 || !v.multi_attach_enabled {
                return Err(Ec2Error::invalid_combination(
                    "NVMe reservations are supported only on Multi-Attach io2 volumes.",
                ));
            }
            if !v.attachments.iter().any(|a| a.instance_id == instance_id) {
                return Err(Ec2Error::new(
                    ErrorCode::InvalidAttachmentNotFound,
                    format!(
                        "The volume '{volume_id}' is not attached to instance '{instance_id}'."
                    ),
                ));
            }
            st.open
                .get(volume_id)
                .and_then(|o| o.reservation.clone())
                .ok_or_else(|| {
                    Ec2Error::internal("an attached io2 volume has no reservation state")
                })?
        };
        // Waits for every I/O holding a read guard: those were checked against the old state.
        let mut live = self.runtime.block_on(lock.write());
        let mut next = live.clone();
        change(&mut next).map_err(resv_error)?;
        {
            let mut st = self.lock();
            let mut nv = st
                .volumes
                .get(volume_id)
                .ok_or_else(|| volume_not_found(volume_id))?
                .clone();
            // The host may have been detached (or begun detaching) while this waited for the
            // lock: a detached host keeps no registration.
            if !nv
                .attachments
                .iter()
                .any(|a| a.instance_id == instance_id && a.state != AttachmentState::Detaching)
            {
                return Err(Ec2Error::new(
                    ErrorCode::InvalidAttachmentNotFound,
                    format!(
                        "The volume '{volume_id}' is not attached to instance '{instance_id}'."
                    ),
                ));
            }
            nv.reservation = next.clone();
            self.commit(&[Change::PutVolume(nv.clone())])?;
            st.volumes.insert(nv.volume_id.clone(), nv);
        }
        *live = next.clone();
        Ok(next)
    }

    /// Register, unregister or replace a key.
    pub fn reservation_register(
        &self,
        who: Account,
        req: model::ReservationRegisterRequest,
    ) -> Result<ReservationRecord, Ec2Error> {
        let (host, action) = (req.instance_id.clone(), req.action.clone());
        self.reservation_change(who, &req.volume_id, &req.instance_id, |r| {
            r.register(&host, &action, req.key, req.new_key)
        })
    }

    /// Acquire, preempt or preempt-and-abort.
    pub fn reservation_acquire(
        &self,
        who: Account,
        req: model::ReservationAcquireRequest,
    ) -> Result<ReservationRecord, Ec2Error> {
        let rtype = parse_type(req.r#type)?;
        let (host, action) = (req.instance_id.clone(), req.action.clone());
        let r = self.reservation_change(who, &req.volume_id, &req.instance_id, |r| {
            r.acquire(&host, req.key, rtype, &action, req.preempt_key).map(|victims| {
                if !victims.is_empty() {
                    tracing::info!(volume_id = %req.volume_id, by = %host, ?victims, %action, "reservation preempted");
                }
            })
        })?;
        Ok(r)
    }

    /// Release, or clear everything.
    pub fn reservation_release(
        &self,
        who: Account,
        req: model::ReservationReleaseRequest,
    ) -> Result<ReservationRecord, Ec2Error> {
        let rtype = if req.clear {
            None
        } else {
            Some(parse_type(req.r#type)?)
        };
        let host = req.instance_id.clone();
        self.reservation_change(who, &req.volume_id, &req.instance_id, |r| {
            r.release(&host, req.key, rtype, req.clear)
        })
    }

    /// The reservation state of a volume.
    pub fn reservation_report(
        &self,
        who: Account,
        volume_id: &str,
    ) -> Result<ReservationRecord, Ec2Error> {
        check_volume_id(volume_id)?;
        let st = self.lock();
        let v = st.volume(who, volume_id)?;
        Ok(v.reservation.clone())
    }
}
