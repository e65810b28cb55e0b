//! EC2 over the Query protocol (API version 2016-11-15), as botocore speaks it: the action's
//! parameters decoded into the control plane's request types, its answer encoded as the
//! `<ActionResponse>` XML of the EC2 model (lowerCamel `locationName`s, `<item>` list members).

use std::time::{Duration, UNIX_EPOCH};

use super::query::Params;
use super::xml::Xml;
use crate::catalog::{AttachmentRecord, VolumeRecord};
use crate::control::{ControlPlane, Ec2Error, ErrorCode, model};

/// The EC2 XML namespace.
pub const NAMESPACE: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";

/// Timestamps as EC2 writes them (ISO 8601, UTC, milliseconds).
pub fn time(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Runs `action` on `cp`; the response document, or the error.
pub fn handle(cp: &ControlPlane, params: &Params, request_id: &str) -> Result<String, Ec2Error> {
    let action = params.required("Action").map_err(|_| {
        Ec2Error::new(
            ErrorCode::MissingAction,
            "The request must contain the parameter Action.",
        )
    })?;
    let run: fn(&ControlPlane, &Params, &mut Xml) -> Result<(), Ec2Error> = match action.as_str() {
        "CreateVolume" => create_volume,
        "DescribeVolumes" => describe_volumes,
        "DeleteVolume" => delete_volume,
        "AttachVolume" => attach_volume,
        "DetachVolume" => detach_volume,
        "CreateTags" => create_tags,
        "DeleteTags" => delete_tags,
        "DescribeAvailabilityZones" => describe_availability_zones,
        other => {
            return Err(Ec2Error::new(
                ErrorCode::InvalidAction,
                format!("The action {other} is not valid for this web service."),
            ));
        }
    };
    if params.bool("DryRun")? == Some(true) {
        return Err(Ec2Error::new(
            ErrorCode::DryRunOperation,
            "Request would have succeeded, but DryRun flag is set.",
        ));
    }
    let root = format!("{action}Response");
    let mut x = Xml::new(&root, NAMESPACE);
    x.elem("requestId", request_id);
    run(cp, params, &mut x)?;
    Ok(x.finish(&root))
}

/// `TagSpecification.N` → the request's tag specifications.
fn tag_specifications(p: &Params) -> Vec<model::TagSpecification> {
    p.structs("TagSpecification")
        .into_iter()
        .map(|s| model::TagSpecification {
            resource_type: s.string("ResourceType").unwrap_or_default(),
            tags: tags(&s),
        })
        .collect()
}

/// `Tag.N.Key` / `Tag.N.Value`.
fn tags(p: &Params) -> Vec<model::Tag> {
    p.structs("Tag")
        .into_iter()
        .map(|t| model::Tag {
            key: t.string("Key").unwrap_or_default(),
            value: t.string("Value").unwrap_or_default(),
        })
        .collect()
}

/// `Filter.N.Name` / `Filter.N.Value.M`.
fn filters(p: &Params) -> Vec<model::Filter> {
    p.structs("Filter")
        .into_iter()
        .map(|f| model::Filter {
            name: f.string("Name").unwrap_or_default(),
            values: f.list("Value"),
        })
        .collect()
}

fn write_tags(x: &mut Xml, tags: &std::collections::BTreeMap<String, String>) {
    let tags: Vec<(&String, &String)> = tags.iter().collect();
    x.list("tagSet", &tags, |x, (k, v)| {
        x.elem("key", k).elem("value", v);
    });
}

fn write_attachment(x: &mut Xml, volume_id: &str, a: &AttachmentRecord) {
    x.elem("volumeId", volume_id)
        .elem("instanceId", &a.instance_id)
        .elem("device", &a.device)
        .elem("status", a.state.as_str())
        .elem("attachTime", time(a.attach_time_ms))
        .elem("deleteOnTermination", a.delete_on_termination);
}

/// The members of a `Volume`.
fn write_volume(x: &mut Xml, v: &VolumeRecord) {
    x.elem("volumeId", &v.volume_id)
        .elem("size", v.size_gib)
        .elem("snapshotId", v.snapshot_id.as_deref().unwrap_or(""))
        .elem("availabilityZone", &v.availability_zone)
        .elem("status", v.state.as_str())
        .elem("createTime", time(v.create_time_ms))
        .list("attachmentSet", &v.attachments, |x, a| {
            write_attachment(x, &v.volume_id, a)
        })
        .elem("volumeType", v.volume_type.as_str())
        .opt("iops", v.iops)
        .opt("throughput", v.throughput)
        .elem("encrypted", false)
        .elem("multiAttachEnabled", v.multi_attach_enabled)
        .elem("fastRestored", v.fast_restored)
        .opt("volumeInitializationRate", v.initialization_rate_mib);
    if !v.tags.is_empty() {
        write_tags(x, &v.tags);
    }
}

fn create_volume(cp: &ControlPlane, p: &Params, x: &mut Xml) -> Result<(), Ec2Error> {
    let v = cp.create_volume(model::CreateVolumeRequest {
        availability_zone: p.string("AvailabilityZone").unwrap_or_default(),
        size: p.int("Size")?,
        volume_type: p.string("VolumeType"),
        iops: p.int("Iops")?,
        throughput: p.int("Throughput")?,
        snapshot_id: p.string("SnapshotId"),
        multi_attach_enabled: p.bool("MultiAttachEnabled")?,
        tag_specifications: tag_specifications(p),
        client_token: p.string("ClientToken"),
        encrypted: p.bool("Encrypted")?,
        volume_initialization_rate: p.int("VolumeInitializationRate")?,
    })?;
    write_volume(x, &v);
    Ok(())
}

fn describe_volumes(cp: &ControlPlane, p: &Params, x: &mut Xml) -> Result<(), Ec2Error> {
    let (vols, next) = cp.describe_volumes(model::DescribeVolumesRequest {
        volume_ids: p.list("VolumeId"),
        filters: filters(p),
        max_results: p.int("MaxResults")?,
        next_token: p.string("NextToken").filter(|t| !t.is_empty()),
    })?;
    x.list("volumeSet", &vols, write_volume);
    x.opt("nextToken", next);
    Ok(())
}

fn delete_volume(cp: &ControlPlane, p: &Params, x: &mut Xml) -> Result<(), Ec2Error> {
    cp.delete_volume(&p.required("VolumeId")?)?;
    x.elem("return", true);
    Ok(())
}

fn attach_volume(cp: &ControlPlane, p: &Params, x: &mut Xml) -> Result<(), Ec2Error> {
    let (volume_id, a) = cp.attach_volume(model::AttachVolumeRequest {
        volume_id: p.required("VolumeId")?,
        instance_id: p.required("InstanceId")?,
        device: p.required("Device")?,
    })?;
    write_attachment(x, &volume_id, &a);
    Ok(())
}

fn detach_volume(cp: &ControlPlane, p: &Params, x: &mut Xml) -> Result<(), Ec2Error> {
    let (volume_id, a) = cp.detach_volume(model::DetachVolumeRequest {
        volume_id: p.required("VolumeId")?,
        instance_id: p.string("InstanceId"),
        device: p.string("Device"),
        force: p.bool("Force")?.unwrap_or(false),
    })?;
    write_attachment(x, &volume_id, &a);
    Ok(())
}

fn create_tags(cp: &ControlPlane, p: &Params, x: &mut Xml) -> Result<(), Ec2Error> {
    let resources = p.list("ResourceId");
    if resources.is_empty() {
        return Err(Ec2Error::missing("ResourceId"));
    }
    cp.create_tags(&resources, &tags(p))?;
    x.elem("return", true);
    Ok(())
}

fn delete_tags(cp: &ControlPlane, p: &Params, x: &mut Xml) -> Result<(), Ec2Error> {
    let resources = p.list("ResourceId");
    if resources.is_empty() {
        return Err(Ec2Error::missing("ResourceId"));
    }
    let tags: Vec<model::DeleteTag> = p
        .structs("Tag")
        .into_iter()
        .map(|t| model::DeleteTag {
            key: t.string("Key").unwrap_or_default(),
            value: t.string("Value"),
        })
        .collect();
    cp.delete_tags(&resources, &tags)?;
    x.elem("return", true);
    Ok(())
}

fn describe_availability_zones(cp: &ControlPlane, p: &Params, x: &mut Xml) -> Result<(), Ec2Error> {
    let wanted = p.list("ZoneName");
    let zones: Vec<&String> = cp
        .availability_zones()
        .iter()
        .filter(|z| wanted.is_empty() || wanted.contains(z))
        .collect();
    if let Some(unknown) = wanted.iter().find(|w| !cp.availability_zones().contains(w)) {
        return Err(Ec2Error::invalid_value(format!(
            "Invalid availability zone: [{unknown}]"
        )));
    }
    let region = cp.region().to_string();
    x.list("availabilityZoneInfo", &zones, |x, z| {
        x.elem("zoneName", z)
            .elem("zoneState", "available")
            .elem("regionName", &region)
            .elem("groupName", &region)
            .elem("networkBorderGroup", &region)
            .elem("zoneType", "availability-zone")
            .elem("optInStatus", "opt-in-not-required");
    });
    Ok(())
}
