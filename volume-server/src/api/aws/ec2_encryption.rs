//! EC2 Query encoders for the account's EBS encryption defaults (the calls of
//! `control::kms`): EnableEbsEncryptionByDefault, DisableEbsEncryptionByDefault,
//! GetEbsEncryptionByDefault, GetEbsDefaultKmsKeyId, ModifyEbsDefaultKmsKeyId and
//! ResetEbsDefaultKmsKeyId.

use super::query::Params;
use super::xml::Xml;
use crate::control::{Account, ControlPlane, Ec2Error};

pub(super) fn enable_by_default(
    cp: &ControlPlane,
    who: Account,
    _: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    x.elem(
        "ebsEncryptionByDefault",
        cp.set_ebs_encryption_by_default(who, true)?,
    );
    Ok(())
}

pub(super) fn disable_by_default(
    cp: &ControlPlane,
    who: Account,
    _: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    x.elem(
        "ebsEncryptionByDefault",
        cp.set_ebs_encryption_by_default(who, false)?,
    );
    Ok(())
}

pub(super) fn get_by_default(
    cp: &ControlPlane,
    who: Account,
    _: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    x.elem("ebsEncryptionByDefault", cp.ebs_encryption_by_default(who))
        .elem("sseType", "none");
    Ok(())
}

pub(super) fn get_default_key(
    cp: &ControlPlane,
    who: Account,
    _: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    x.elem("kmsKeyId", cp.ebs_default_kms_key(who)?);
    Ok(())
}

pub(super) fn modify_default_key(
    cp: &ControlPlane,
    who: Account,
    p: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    let key = p.required("KmsKeyId")?;
    x.elem("kmsKeyId", cp.set_ebs_default_kms_key(who, Some(&key))?);
    Ok(())
}

pub(super) fn reset_default_key(
    cp: &ControlPlane,
    who: Account,
    _: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    x.elem("kmsKeyId", cp.set_ebs_default_kms_key(who, None)?);
    Ok(())
}
