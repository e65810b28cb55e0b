//! EC2's volume I/O controls: the `autoEnableIO` attribute (DescribeVolumeAttribute,
//! ModifyVolumeAttribute) and EnableVolumeIO. A volume whose file failed an I/O stops taking
//! I/O (it is `impaired`: writes acknowledged before may be lost); EnableVolumeIO lets it take
//! I/O again, and `autoEnableIO` keeps it taking I/O through failures (each failing request
//! still gets its error). As on EC2, checking the data is then the owner's business.

use super::{Account, Change, ControlPlane, Ec2Error, ErrorCode, check_volume_id};

/// A volume attribute DescribeVolumeAttribute answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeAttribute {
    /// `autoEnableIO`.
    AutoEnableIo,
    /// `productCodes`: none here.
    ProductCodes,
}

impl VolumeAttribute {
    /// Parses EC2's attribute name; `InvalidParameterValue` for another.
    pub fn parse(name: &str) -> Result<Self, Ec2Error> {
        match name {
            "autoEnableIO" => Ok(VolumeAttribute::AutoEnableIo),
            "productCodes" => Ok(VolumeAttribute::ProductCodes),
            other => Err(Ec2Error::invalid_value(format!(
                "Value ({other}) for parameter attribute is invalid. Expecting autoEnableIO or productCodes."
            ))),
        }
    }
}

impl ControlPlane {
    /// DescribeVolumeAttribute's `autoEnableIO` of `volume_id` (productCodes are always
    /// empty, so only the volume's existence matters for them).
    pub fn auto_enable_io(&self, who: Account, volume_id: &str) -> Result<bool, Ec2Error> {
        check_volume_id(volume_id)?;
        Ok(self.lock().volume(who, volume_id)?.auto_enable_io)
    }

    /// ModifyVolumeAttribute `AutoEnableIO`: recorded, and applied to the open volume at once
    /// (turning it on also lets a stopped volume take I/O again).
    pub fn set_auto_enable_io(
        &self,
        who: Account,
        volume_id: &str,
        on: bool,
    ) -> Result<(), Ec2Error> {
        check_volume_id(volume_id)?;
        let mut st = self.lock();
        let mut v = st.volume(who, volume_id)?.clone();
        v.auto_enable_io = on;
        self.commit(&[Change::PutVolume(v.clone())])?;
        if let Some(o) = st.open.get(volume_id) {
            o.volume.set_auto_enable_io(on);
        }
        st.volumes.insert(v.volume_id.clone(), v);
        tracing::info!(volume_id, auto_enable_io = on, "volume attribute modified");
        Ok(())
    }

    /// EnableVolumeIO: a volume stopped by an I/O failure takes I/O again. On a volume that
    /// takes I/O already (or is not open) it does nothing, as on EC2.
    pub fn enable_volume_io(&self, who: Account, volume_id: &str) -> Result<(), Ec2Error> {
        check_volume_id(volume_id)?;
        let st = self.lock();
        let v = st.volume(who, volume_id)?;
        if matches!(
            v.state,
            crate::catalog::VolumeState::Deleting | crate::catalog::VolumeState::Deleted
        ) {
            return Err(Ec2Error::new(
                ErrorCode::IncorrectState,
                format!("The volume '{volume_id}' is being deleted."),
            ));
        }
        if let Some(o) = st.open.get(volume_id)
            && o.volume.enable_io()
        {
            tracing::warn!(volume_id, "volume I/O enabled by EnableVolumeIO");
        }
        Ok(())
    }
}
