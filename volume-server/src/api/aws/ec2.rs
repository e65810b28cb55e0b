//! EC2 over the Query protocol (API version 2016-11-15), as botocore speaks it: the action's
//! parameters decoded into the control plane's request types, its answer encoded as the
//! `<ActionResponse>` XML of the EC2 model (lowerCamel `locationName`s, `<item>` list members).

use super::query::Params;
use super::xml::Xml;
use super::{ec2_access, ec2_billing, ec2_encryption};
use crate::api::format_time as time;
use crate::catalog::{
    AttachmentRecord, ImageRecord, MappingRecord, ModificationRecord, VolumeRecord,
};
use crate::control::fsr::FsrView;
use crate::control::modify::modification_state;
use crate::control::network::{InstanceNetwork, SubnetView, VpcView};
use crate::control::region::zone_id;
use crate::control::snapshots::SnapshotView;
use crate::control::status::{DescribeInstanceStatusRequest, StatusSummary};
use crate::control::views::{FsrFailure, InstanceStateChange, InstanceView, ReservationView};
use crate::control::{Account, ControlPlane, Ec2Error, ErrorCode, model, now_ms};
use instance_manager::lifecycle::InstanceState;

/// The EC2 XML namespace.
pub const NAMESPACE: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";

/// Runs `action` on `cp`; the response document, or the error.
pub fn handle(
    cp: &ControlPlane,
    who: Account,
    params: &Params,
    request_id: &str,
) -> Result<String, Ec2Error> {
    let action = params.required("Action").map_err(|_| {
        Ec2Error::new(
            ErrorCode::MissingAction,
            "The request must contain the parameter Action.",
        )
    })?;
    let run: fn(&ControlPlane, Account, &Params, &mut Xml) -> Result<(), Ec2Error> =
        match action.as_str() {
            "CreateVolume" => create_volume,
            "DescribeVolumes" => describe_volumes,
            "DeleteVolume" => delete_volume,
            "AttachVolume" => attach_volume,
            "DetachVolume" => detach_volume,
            "CreateTags" => create_tags,
            "DeleteTags" => delete_tags,
            "DescribeAvailabilityZones" => describe_availability_zones,
            "DescribeRegions" => describe_regions,
            "DescribeAccountAttributes" => describe_account_attributes,
            "DescribeTags" => describe_tags,
            "ModifyVolume" => modify_volume,
            "DescribeVolumesModifications" => describe_volumes_modifications,
            "DescribeVolumeStatus" => describe_volume_status,
            "DescribeVolumeAttribute" => describe_volume_attribute,
            "ModifyVolumeAttribute" => modify_volume_attribute,
            "EnableVolumeIO" => enable_volume_io,
            "CreateSnapshot" => create_snapshot,
            "DescribeSnapshots" => describe_snapshots,
            "DeleteSnapshot" => delete_snapshot,
            "CopySnapshot" => copy_snapshot,
            "EnableFastSnapshotRestores" => enable_fast_snapshot_restores,
            "DisableFastSnapshotRestores" => disable_fast_snapshot_restores,
            "DescribeFastSnapshotRestores" => describe_fast_snapshot_restores,
            "RegisterImage" => register_image,
            "DescribeImages" => describe_images,
            "DeregisterImage" => deregister_image,
            "CreateImage" => create_image,
            "RunInstances" => run_instances,
            "DescribeInstances" => describe_instances,
            "StartInstances" => start_instances,
            "StopInstances" => stop_instances,
            "RebootInstances" => reboot_instances,
            "TerminateInstances" => terminate_instances,
            "GetConsoleOutput" => get_console_output,
            "DescribeInstanceAttribute" => describe_instance_attribute,
            "DescribeInstanceStatus" => describe_instance_status,
            "ModifyInstanceAttribute" => modify_instance_attribute,
            "DescribeInstanceTypes" => describe_instance_types,
            "DescribeVpcs" => describe_vpcs,
            "CreateVpc" => create_vpc,
            "DeleteVpc" => delete_vpc,
            "DescribeSubnets" => describe_subnets,
            "CreateSubnet" => create_subnet,
            "DeleteSubnet" => delete_subnet,
            "DescribeSecurityGroups" => describe_security_groups,
            "CreateKeyPair" => ec2_access::create_key_pair,
            "ImportKeyPair" => ec2_access::import_key_pair,
            "DescribeKeyPairs" => ec2_access::describe_key_pairs,
            "DeleteKeyPair" => ec2_access::delete_key_pair,
            "AllocateAddress" => ec2_access::allocate_address,
            "AssociateAddress" => ec2_access::associate_address,
            "DisassociateAddress" => ec2_access::disassociate_address,
            "ReleaseAddress" => ec2_access::release_address,
            "DescribeAddresses" => ec2_access::describe_addresses,
            "ModifyInstanceMetadataOptions" => ec2_access::modify_instance_metadata_options,
            "DescribeReservedInstancesOfferings" => ec2_billing::describe_offerings,
            "PurchaseReservedInstancesOffering" => ec2_billing::purchase_offering,
            "DescribeReservedInstances" => ec2_billing::describe_reserved,
            "DescribeSpotPriceHistory" => ec2_billing::describe_spot_price_history,
            "EnableEbsEncryptionByDefault" => ec2_encryption::enable_by_default,
            "DisableEbsEncryptionByDefault" => ec2_encryption::disable_by_default,
            "GetEbsEncryptionByDefault" => ec2_encryption::get_by_default,
            "GetEbsDefaultKmsKeyId" => ec2_encryption::get_default_key,
            "ModifyEbsDefaultKmsKeyId" => ec2_encryption::modify_default_key,
            "ResetEbsDefaultKmsKeyId" => ec2_encryption::reset_default_key,
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
    run(cp, who, params, &mut x)?;
    Ok(x.finish(&root))
}

/// `TagSpecification.N` → the request's tag specifications.
pub(super) fn tag_specifications(p: &Params) -> Vec<model::TagSpecification> {
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
pub(super) fn filters(p: &Params) -> Vec<model::Filter> {
    p.structs("Filter")
        .into_iter()
        .map(|f| model::Filter {
            name: f.string("Name").unwrap_or_default(),
            values: f.list("Value"),
        })
        .collect()
}

pub(super) fn write_tags(x: &mut Xml, tags: &std::collections::BTreeMap<String, String>) {
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
        .opt("availabilityZoneId", zone_id(&v.availability_zone))
        .elem("status", v.state.as_str())
        .elem("createTime", time(v.create_time_ms))
        .list("attachmentSet", &v.attachments, |x, a| {
            write_attachment(x, &v.volume_id, a)
        })
        .elem("volumeType", v.volume_type.as_str())
        .opt("iops", v.iops)
        .opt("throughput", v.throughput)
        .elem("encrypted", v.encryption.is_some())
        .opt(
            "kmsKeyId",
            v.encryption.as_ref().map(|e| e.kms_key_id.as_str()),
        )
        .elem("multiAttachEnabled", v.multi_attach_enabled)
        .elem("fastRestored", v.fast_restored)
        .opt("volumeInitializationRate", v.initialization_rate_mib);
    if !v.tags.is_empty() {
        write_tags(x, &v.tags);
    }
}

fn create_volume(cp: &ControlPlane, who: Account, p: &Params, x: &mut Xml) -> Result<(), Ec2Error> {
    let v = cp.create_volume(
        who,
        model::CreateVolumeRequest {
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
            kms_key_id: p.string("KmsKeyId"),
            volume_initialization_rate: p.int("VolumeInitializationRate")?,
        },
    )?;
    write_volume(x, &v);
    Ok(())
}

fn describe_volumes(
    cp: &ControlPlane,
    who: Account,
    p: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    let (vols, next) = cp.describe_volumes(
        who,
        model::DescribeVolumesRequest {
            volume_ids: p.list("VolumeId"),
            filters: filters(p),
            max_results: p.int("MaxResults")?,
            next_token: p.string("NextToken").filter(|t| !t.is_empty()),
        },
    )?;
    x.list("volumeSet", &vols, write_volume);
    x.opt("nextToken", next);
    Ok(())
}

fn delete_volume(cp: &ControlPlane, who: Account, p: &Params, x: &mut Xml) -> Result<(), Ec2Error> {
    cp.delete_volume(who, &p.required("VolumeId")?)?;
    x.elem("return", true);
    Ok(())
}

fn attach_volume(cp: &ControlPlane, who: Account, p: &Params, x: &mut Xml) -> Result<(), Ec2Error> {
    let (volume_id, a) = cp.attach_volume(
        who,
        model::AttachVolumeRequest {
            volume_id: p.required("VolumeId")?,
            instance_id: p.required("InstanceId")?,
            device: p.required("Device")?,
        },
    )?;
    write_attachment(x, &volume_id, &a);
    Ok(())
}

fn detach_volume(cp: &ControlPlane, who: Account, p: &Params, x: &mut Xml) -> Result<(), Ec2Error> {
    let (volume_id, a) = cp.detach_volume(
        who,
        model::DetachVolumeRequest {
            volume_id: p.required("VolumeId")?,
            instance_id: p.string("InstanceId"),
            device: p.string("Device"),
            force: p.bool("Force")?.unwrap_or(false),
        },
    )?;
    write_attachment(x, &volume_id, &a);
    Ok(())
}

fn create_tags(cp: &ControlPlane, who: Account, p: &Params, x: &mut Xml) -> Result<(), Ec2Error> {
    let resources = p.list("ResourceId");
    if resources.is_empty() {
        return Err(Ec2Error::missing("ResourceId"));
    }
    cp.create_tags(who, &resources, &tags(p))?;
    x.elem("return", true);
    Ok(())
}

fn describe_tags(cp: &ControlPlane, who: Account, p: &Params, x: &mut Xml) -> Result<(), Ec2Error> {
    let (tags, next) = cp.describe_tags(
        who,
        &filters(p),
        p.int("MaxResults")?,
        p.string("NextToken").as_deref(),
    )?;
    x.list("tagSet", &tags, |x, t| {
        x.elem("key", &t.key)
            .elem("resourceId", &t.resource_id)
            .elem("resourceType", t.resource_type)
            .elem("value", &t.value);
    });
    x.opt("nextToken", next);
    Ok(())
}

fn describe_regions(
    cp: &ControlPlane,
    _: Account,
    p: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    let regions = cp.describe_regions(&p.list("RegionName"), &filters(p))?;
    x.list("regionInfo", &regions, |x, r| {
        x.elem("regionName", &r.name)
            .elem("regionEndpoint", &r.endpoint)
            .elem("optInStatus", r.opt_in_status);
    });
    Ok(())
}

fn describe_account_attributes(
    cp: &ControlPlane,
    who: Account,
    p: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    let attributes = cp.account_attributes(who, &p.list("AttributeName"));
    x.list("accountAttributeSet", &attributes, |x, (name, values)| {
        x.elem("attributeName", name)
            .list("attributeValueSet", values, |x, v| {
                x.elem("attributeValue", v);
            });
    });
    Ok(())
}

/// A VPC's elements, as DescribeVpcs and CreateVpc give them (`state` differs).
fn vpc_xml(x: &mut Xml, v: &VpcView, state: &str) {
    x.elem("vpcId", &v.vpc_id)
        .elem("ownerId", &v.owner_id)
        .elem("state", state)
        .elem("cidrBlock", &v.cidr_block)
        .list("cidrBlockAssociationSet", &[()], |x, _| {
            x.elem("associationId", &v.cidr_association_id)
                .elem("cidrBlock", &v.cidr_block)
                .node("cidrBlockState", |x| {
                    x.elem("state", "associated");
                });
        })
        .node("ipv6CidrBlockAssociationSet", |_| {})
        .elem("dhcpOptionsId", &v.dhcp_options_id)
        .elem("instanceTenancy", "default")
        .elem("isDefault", v.is_default)
        .node("blockPublicAccessStates", |x| {
            x.elem("internetGatewayBlockMode", "off");
        });
    if !v.tags.is_empty() {
        write_tags(x, &v.tags);
    }
}

/// A subnet's elements, as DescribeSubnets and CreateSubnet give them (`state` differs).
fn subnet_xml(x: &mut Xml, s: &SubnetView, state: &str) {
    x.elem("subnetId", &s.subnet_id)
        .elem("subnetArn", &s.arn)
        .elem("state", state)
        .elem("ownerId", &s.owner_id)
        .elem("vpcId", &s.vpc_id)
        .elem("cidrBlock", &s.cidr_block)
        .node("ipv6CidrBlockAssociationSet", |_| {})
        .elem("availableIpAddressCount", s.available_ip_address_count)
        .elem("availabilityZone", &s.availability_zone)
        .opt("availabilityZoneId", s.availability_zone_id.as_deref())
        .elem("defaultForAz", s.default_for_az)
        .elem("mapPublicIpOnLaunch", s.default_for_az)
        .elem("mapCustomerOwnedIpOnLaunch", false)
        .elem("assignIpv6AddressOnCreation", false)
        .elem("enableDns64", false)
        .elem("ipv6Native", false)
        .node("privateDnsNameOptionsOnLaunch", |x| {
            x.elem("hostnameType", "ip-name")
                .elem("enableResourceNameDnsARecord", false)
                .elem("enableResourceNameDnsAAAARecord", false);
        })
        .node("blockPublicAccessStates", |x| {
            x.elem("internetGatewayBlockMode", "off");
        });
    if !s.tags.is_empty() {
        write_tags(x, &s.tags);
    }
}

fn describe_vpcs(cp: &ControlPlane, who: Account, p: &Params, x: &mut Xml) -> Result<(), Ec2Error> {
    let vpcs = cp.describe_vpcs(who, &p.list("VpcId"), &filters(p))?;
    x.list("vpcSet", &vpcs, |x, v| vpc_xml(x, v, "available"));
    Ok(())
}

fn create_vpc(cp: &ControlPlane, who: Account, p: &Params, x: &mut Xml) -> Result<(), Ec2Error> {
    if p.bool("AmazonProvidedIpv6CidrBlock")? == Some(true) {
        return Err(Ec2Error::new(
            ErrorCode::UnsupportedOperation,
            "IPv6 blocks are not supported by this server.",
        ));
    }
    let vpc = cp.create_vpc(
        who,
        p.string("CidrBlock").as_deref(),
        &tag_specifications(p),
    )?;
    x.node("vpc", |x| vpc_xml(x, &vpc, "pending"));
    Ok(())
}

fn delete_vpc(cp: &ControlPlane, who: Account, p: &Params, x: &mut Xml) -> Result<(), Ec2Error> {
    cp.delete_vpc(who, &p.string("VpcId").unwrap_or_default())?;
    x.elem("return", true);
    Ok(())
}

fn describe_subnets(
    cp: &ControlPlane,
    who: Account,
    p: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    let subnets = cp.describe_subnets(who, &p.list("SubnetId"), &filters(p))?;
    x.list("subnetSet", &subnets, |x, s| subnet_xml(x, s, "available"));
    Ok(())
}

fn create_subnet(cp: &ControlPlane, who: Account, p: &Params, x: &mut Xml) -> Result<(), Ec2Error> {
    let zone = match (p.string("AvailabilityZone"), p.string("AvailabilityZoneId")) {
        (Some(z), _) => Some(z),
        (None, Some(id)) => Some(
            cp.availability_zones()
                .iter()
                .find(|z| crate::control::region::zone_id(z).as_deref() == Some(id.as_str()))
                .cloned()
                .ok_or_else(|| {
                    Ec2Error::invalid_value(format!(
                        "Value ({id}) for parameter availabilityZoneId is invalid."
                    ))
                })?,
        ),
        (None, None) => None,
    };
    let subnet = cp.create_subnet(
        who,
        &p.string("VpcId").unwrap_or_default(),
        p.string("CidrBlock").as_deref(),
        zone.as_deref(),
        &tag_specifications(p),
    )?;
    x.node("subnet", |x| subnet_xml(x, &subnet, "pending"));
    Ok(())
}

fn delete_subnet(cp: &ControlPlane, who: Account, p: &Params, x: &mut Xml) -> Result<(), Ec2Error> {
    cp.delete_subnet(who, &p.string("SubnetId").unwrap_or_default())?;
    x.elem("return", true);
    Ok(())
}

fn describe_security_groups(
    cp: &ControlPlane,
    who: Account,
    p: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    let groups =
        cp.describe_security_groups(who, &p.list("GroupId"), &p.list("GroupName"), &filters(p))?;
    x.list("securityGroupInfo", &groups, |x, g| {
        x.elem("ownerId", &g.owner_id)
            .elem("groupId", &g.group_id)
            .elem("groupName", g.group_name)
            .elem("groupDescription", g.description)
            .elem("vpcId", &g.vpc_id)
            .elem("securityGroupArn", &g.arn)
            // A default group: all traffic from its own members in, all traffic out.
            .list("ipPermissions", &[()], |x, _| {
                x.elem("ipProtocol", "-1")
                    .list("groups", &[()], |x, _| {
                        x.elem("userId", &g.owner_id).elem("groupId", &g.group_id);
                    })
                    .node("ipRanges", |_| {})
                    .node("ipv6Ranges", |_| {})
                    .node("prefixListIds", |_| {});
            })
            .list("ipPermissionsEgress", &[()], |x, _| {
                x.elem("ipProtocol", "-1")
                    .node("groups", |_| {})
                    .list("ipRanges", &[()], |x, _| {
                        x.elem("cidrIp", "0.0.0.0/0");
                    })
                    .node("ipv6Ranges", |_| {})
                    .node("prefixListIds", |_| {});
            });
    });
    Ok(())
}

fn delete_tags(cp: &ControlPlane, who: Account, p: &Params, x: &mut Xml) -> Result<(), Ec2Error> {
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
    cp.delete_tags(who, &resources, &tags)?;
    x.elem("return", true);
    Ok(())
}

fn describe_availability_zones(
    cp: &ControlPlane,
    _: Account,
    p: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
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
            .opt("zoneId", zone_id(z))
            .elem("zoneState", "available")
            .elem("regionName", &region)
            .elem("groupName", &region)
            .elem("networkBorderGroup", &region)
            .elem("zoneType", "availability-zone")
            .elem("optInStatus", "opt-in-not-required");
    });
    Ok(())
}

fn modify_volume(cp: &ControlPlane, who: Account, p: &Params, x: &mut Xml) -> Result<(), Ec2Error> {
    let (volume_id, m) = cp.modify_volume(
        who,
        model::ModifyVolumeRequest {
            volume_id: p.required("VolumeId")?,
            size: p.int("Size")?,
            volume_type: p.string("VolumeType"),
            iops: p.int("Iops")?,
            throughput: p.int("Throughput")?,
            multi_attach_enabled: p.bool("MultiAttachEnabled")?,
        },
    )?;
    x.node("volumeModification", |x| {
        write_modification(x, &volume_id, &m, true)
    });
    Ok(())
}

/// The members of a `VolumeModification`; `fresh`: just made (still `modifying`).
fn write_modification(x: &mut Xml, volume_id: &str, m: &ModificationRecord, fresh: bool) {
    let (state, progress) = if fresh {
        ("modifying", 0)
    } else {
        modification_state(m, now_ms())
    };
    x.elem("volumeId", volume_id)
        .elem("modificationState", state)
        .elem("targetSize", m.target.size_gib)
        .opt("targetIops", m.target.iops)
        .elem("targetVolumeType", m.target.volume_type.as_str())
        .opt("targetThroughput", m.target.throughput)
        .elem("targetMultiAttachEnabled", m.target.multi_attach_enabled)
        .elem("originalSize", m.original.size_gib)
        .opt("originalIops", m.original.iops)
        .elem("originalVolumeType", m.original.volume_type.as_str())
        .opt("originalThroughput", m.original.throughput)
        .elem(
            "originalMultiAttachEnabled",
            m.original.multi_attach_enabled,
        )
        .elem("progress", progress)
        .elem("startTime", time(m.start_ms));
    if state == "completed" {
        x.elem("endTime", time(m.end_ms));
    }
}

fn describe_volumes_modifications(
    cp: &ControlPlane,
    who: Account,
    p: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    let (mods, next) = cp.describe_volumes_modifications(
        who,
        &p.list("VolumeId"),
        &filters(p),
        p.int("MaxResults")?,
        p.string("NextToken").as_deref(),
    )?;
    x.list("volumeModificationSet", &mods, |x, (id, m)| {
        write_modification(x, id, m, false)
    });
    x.opt("nextToken", next);
    Ok(())
}

fn describe_volume_status(
    cp: &ControlPlane,
    who: Account,
    p: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    let (statuses, next) = cp.describe_volume_status(
        who,
        &p.list("VolumeId"),
        &filters(p),
        p.int("MaxResults")?,
        p.string("NextToken").as_deref(),
    )?;
    x.list("volumeStatusSet", &statuses, |x, (v, st)| {
        x.elem("volumeId", &v.volume_id)
            .elem("availabilityZone", &v.availability_zone)
            .opt("availabilityZoneId", zone_id(&v.availability_zone))
            .node("volumeStatus", |x| {
                x.elem("status", st.status)
                    .list("details", &st.details, |x, (name, status)| {
                        x.elem("name", name).elem("status", status);
                    });
            })
            .node("actionsSet", |_| {})
            .node("eventsSet", |_| {});
        if let Some(i) = &st.initialization {
            x.node("initializationStatusDetails", |x| {
                x.elem("initializationType", i.initialization_type)
                    .elem("progress", i.progress)
                    .opt("estimatedTimeToCompleteInSeconds", i.estimated_seconds_left);
            });
        }
    });
    x.opt("nextToken", next);
    Ok(())
}

fn describe_volume_attribute(
    cp: &ControlPlane,
    who: Account,
    p: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    use crate::control::volume_io::VolumeAttribute;
    let volume_id = p.required("VolumeId")?;
    let attribute = VolumeAttribute::parse(&p.required("Attribute")?)?;
    let on = cp.auto_enable_io(who, &volume_id)?;
    x.elem("volumeId", &volume_id);
    match attribute {
        VolumeAttribute::AutoEnableIo => {
            x.node("autoEnableIO", |x| {
                x.elem("value", on);
            });
        }
        VolumeAttribute::ProductCodes => {
            x.node("productCodes", |_| {});
        }
    }
    Ok(())
}

fn modify_volume_attribute(
    cp: &ControlPlane,
    who: Account,
    p: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    let volume_id = p.required("VolumeId")?;
    let on = p
        .bool("AutoEnableIO.Value")?
        .ok_or_else(|| Ec2Error::missing("AutoEnableIO"))?;
    cp.set_auto_enable_io(who, &volume_id, on)?;
    x.elem("return", true);
    Ok(())
}

fn enable_volume_io(
    cp: &ControlPlane,
    who: Account,
    p: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    cp.enable_volume_io(who, &p.required("VolumeId")?)?;
    x.elem("return", true);
    Ok(())
}

/// The members of a `Snapshot`.
fn write_snapshot(x: &mut Xml, s: &SnapshotView) {
    let r = &s.record;
    x.elem("snapshotId", &r.snapshot_id)
        .elem("volumeId", &r.volume_id)
        .elem("status", r.state.as_str())
        .elem("startTime", time(r.start_ms))
        .elem("progress", format!("{}%", s.progress))
        .elem("ownerId", &r.owner_id)
        .elem("description", &r.description)
        .elem("volumeSize", r.volume_size_gib)
        .elem("encrypted", r.kms_key_id.is_some())
        .opt("kmsKeyId", r.kms_key_id.as_deref())
        .elem("storageTier", "standard")
        .opt("completionTime", r.complete_ms.map(time));
    if !r.state_message.is_empty() {
        x.elem("statusMessage", &r.state_message);
    }
    if r.bytes_written > 0 {
        x.elem("fullSnapshotSizeInBytes", r.bytes_written);
    }
    if !r.tags.is_empty() {
        write_tags(x, &r.tags);
    }
}

fn create_snapshot(
    cp: &ControlPlane,
    who: Account,
    p: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    let r = cp.create_snapshot(
        who,
        model::CreateSnapshotRequest {
            volume_id: p.required("VolumeId")?,
            description: p.string("Description"),
            tag_specifications: tag_specifications(p),
        },
    )?;
    write_snapshot(x, &SnapshotView::pending(r));
    Ok(())
}

fn describe_snapshots(
    cp: &ControlPlane,
    who: Account,
    p: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    let (snaps, next) = cp.describe_snapshots(
        who,
        model::DescribeSnapshotsRequest {
            snapshot_ids: p.list("SnapshotId"),
            owner_ids: p.list("Owner"),
            filters: filters(p),
            max_results: p.int("MaxResults")?,
            next_token: p.string("NextToken").filter(|t| !t.is_empty()),
        },
    )?;
    x.list("snapshotSet", &snaps, write_snapshot);
    x.opt("nextToken", next);
    Ok(())
}

fn delete_snapshot(
    cp: &ControlPlane,
    who: Account,
    p: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    cp.delete_snapshot(who, &p.required("SnapshotId")?)?;
    x.elem("return", true);
    Ok(())
}

fn copy_snapshot(cp: &ControlPlane, who: Account, p: &Params, x: &mut Xml) -> Result<(), Ec2Error> {
    let r = cp.copy_snapshot(
        who,
        model::CopySnapshotRequest {
            source_region: p.required("SourceRegion")?,
            source_snapshot_id: p.required("SourceSnapshotId")?,
            description: p.string("Description"),
            destination_region: p.string("DestinationRegion"),
            tag_specifications: tag_specifications(p),
            encrypted: p.bool("Encrypted")?,
            kms_key_id: p.string("KmsKeyId"),
        },
    )?;
    x.elem("snapshotId", &r.snapshot_id);
    if !r.tags.is_empty() {
        write_tags(x, &r.tags);
    }
    Ok(())
}

/// `BlockDeviceMapping.N` → the request's mappings.
fn block_device_mappings(p: &Params) -> Result<Vec<model::BlockDeviceMapping>, Ec2Error> {
    p.structs("BlockDeviceMapping")
        .into_iter()
        .map(|m| {
            let ebs = m.structs_one("Ebs");
            Ok(model::BlockDeviceMapping {
                device_name: m.string("DeviceName").unwrap_or_default(),
                ebs: match ebs {
                    Some(e) => Some(model::EbsBlockDevice {
                        snapshot_id: e.string("SnapshotId"),
                        volume_size: e.int("VolumeSize")?,
                        volume_type: e.string("VolumeType"),
                        iops: e.int("Iops")?,
                        throughput: e.int("Throughput")?,
                        delete_on_termination: e.bool("DeleteOnTermination")?,
                        encrypted: e.bool("Encrypted")?,
                        kms_key_id: e.string("KmsKeyId"),
                    }),
                    None => None,
                },
                virtual_name: m.string("VirtualName"),
                no_device: m.string("NoDevice"),
            })
        })
        .collect()
}

fn write_mapping(x: &mut Xml, m: &MappingRecord) {
    x.elem("deviceName", &m.device_name)
        .opt("virtualName", m.virtual_name.as_deref());
    if let Some(e) = &m.ebs {
        x.node("ebs", |x| {
            x.opt("snapshotId", e.snapshot_id.as_deref())
                .opt("volumeSize", e.volume_size)
                .elem(
                    "deleteOnTermination",
                    e.delete_on_termination.unwrap_or(true),
                )
                .opt("volumeType", e.volume_type.as_deref())
                .opt("iops", e.iops)
                .opt("throughput", e.throughput)
                .elem("encrypted", e.encrypted.unwrap_or(false))
                .opt("kmsKeyId", e.kms_key_id.as_deref());
        });
    }
    if m.no_device {
        x.elem("noDevice", "");
    }
}

fn write_image(x: &mut Xml, (i, state): &(ImageRecord, &str)) {
    x.elem("imageId", &i.image_id)
        .elem("imageState", state)
        .elem("imageOwnerId", &i.owner_id)
        .elem("creationDate", time(i.creation_ms))
        .elem("isPublic", false)
        .elem("architecture", &i.architecture)
        .elem("imageType", "machine")
        .elem("name", &i.name)
        .elem("description", &i.description)
        .elem("rootDeviceType", "ebs")
        .elem("rootDeviceName", &i.root_device_name)
        .list("blockDeviceMapping", &i.mappings, write_mapping)
        .elem("virtualizationType", &i.virtualization_type)
        .elem("hypervisor", "xen")
        .elem("imageLocation", format!("{}/{}", i.owner_id, i.name))
        .elem("enaSupport", true)
        .elem("sriovNetSupport", "simple")
        .elem("platformDetails", "Linux/UNIX")
        .elem("usageOperation", "RunInstances")
        .elem("deregistrationProtection", "disabled");
    if !i.tags.is_empty() {
        write_tags(x, &i.tags);
    }
}

fn register_image(
    cp: &ControlPlane,
    who: Account,
    p: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    let i = cp.register_image(
        who,
        model::RegisterImageRequest {
            name: p.required("Name")?,
            description: p.string("Description"),
            root_device_name: p.string("RootDeviceName").unwrap_or_default(),
            block_device_mappings: block_device_mappings(p)?,
            architecture: p.string("Architecture"),
            virtualization_type: p.string("VirtualizationType"),
            tag_specifications: tag_specifications(p),
        },
    )?;
    x.elem("imageId", &i.image_id);
    Ok(())
}

fn describe_images(
    cp: &ControlPlane,
    who: Account,
    p: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    let (images, next) = cp.describe_images(
        who,
        model::DescribeImagesRequest {
            image_ids: p.list("ImageId"),
            owners: p.list("Owner"),
            filters: filters(p),
            max_results: p.int("MaxResults")?,
            next_token: p.string("NextToken").filter(|t| !t.is_empty()),
        },
    )?;
    x.list("imagesSet", &images, write_image);
    x.opt("nextToken", next);
    Ok(())
}

fn deregister_image(
    cp: &ControlPlane,
    who: Account,
    p: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    let deleted = cp.deregister_image(
        who,
        &p.required("ImageId")?,
        p.bool("DeleteAssociatedSnapshots")?.unwrap_or(false),
    )?;
    x.elem("return", true);
    if !deleted.is_empty() {
        x.list("deleteSnapshotResultSet", &deleted, |x, (id, code)| {
            x.elem("snapshotId", id).elem("returnCode", code);
        });
    }
    Ok(())
}

fn create_image(cp: &ControlPlane, who: Account, p: &Params, x: &mut Xml) -> Result<(), Ec2Error> {
    let id = cp.create_image(
        who,
        model::CreateImageRequest {
            instance_id: p.required("InstanceId")?,
            name: p.required("Name")?,
            description: p.string("Description"),
            no_reboot: p.bool("NoReboot")?.unwrap_or(false),
            tag_specifications: tag_specifications(p),
        },
    )?;
    x.elem("imageId", id);
    Ok(())
}

fn write_state(x: &mut Xml, name: &str, s: InstanceState) {
    x.node(name, |x| {
        x.elem("code", s.code()).elem("name", s.as_str());
    });
}

fn write_instance(x: &mut Xml, v: &InstanceView) {
    let h = &v.host;
    let r = v.record();
    x.elem("instanceId", &h.instance_id)
        .elem("imageId", &r.image_id);
    write_state(x, "instanceState", r.state);
    // A terminated instance has given its address and interface back, as on EC2.
    let net = (r.state != InstanceState::Terminated).then_some(&v.network);
    x.elem(
        "privateDnsName",
        net.map_or("", |n| n.private_dns_name.as_str()),
    )
    .elem("dnsName", "")
    .elem(
        "reason",
        v.transition_reason()
            .map(|(why, at)| format!("{why} ({})", time(at)))
            .unwrap_or_default(),
    )
    .opt("keyName", r.key_name.as_deref())
    .elem("amiLaunchIndex", r.launch_index)
    .node("productCodes", |_| {})
    .elem("instanceType", &r.instance_type)
    .elem("launchTime", time(h.launch_time_ms))
    .node("placement", |x| {
        x.elem("availabilityZone", &h.availability_zone)
            .opt("availabilityZoneId", zone_id(&h.availability_zone))
            .elem("groupName", "")
            .elem("tenancy", "default");
    })
    .node("monitoring", |x| {
        x.elem("state", "disabled");
    });
    if let Some(n) = net {
        x.elem("subnetId", &n.subnet_id)
            .elem("vpcId", &n.vpc_id)
            .elem("privateIpAddress", &n.private_ip)
            .opt("ipAddress", v.public_ip.as_deref());
    }
    x.node("groupSet", |x| {
        if net.is_some() {
            write_group(x, &v.network);
        }
    })
    .elem("architecture", &r.architecture)
    .elem("rootDeviceType", "ebs")
    .elem("rootDeviceName", &r.root_device_name)
    .list("blockDeviceMapping", &v.attachments, write_attached_ebs)
    .elem("virtualizationType", &r.virtualization_type)
    .opt("clientToken", r.client_token.as_deref())
    .elem("hypervisor", "xen")
    .node("networkInterfaceSet", |x| {
        if let Some(n) = net {
            x.node("item", |x| {
                write_interface(x, n, &h.owner_id, h.launch_time_ms, v.public_ip.as_deref())
            });
        }
    })
    .elem("ebsOptimized", true)
    .node("cpuOptions", |x| {
        x.elem("coreCount", v.cpu_core_count)
            .elem("threadsPerCore", 2);
    })
    // The rest as a new account's Nitro instance shows them: this server has no
    // networking, metadata service, enclaves or hibernation of its own (yet).
    .elem("enaSupport", true)
    .elem("sourceDestCheck", true)
    .elem("platformDetails", "Linux/UNIX")
    .elem("usageOperation", "RunInstances")
    .elem("usageOperationUpdateTime", time(h.launch_time_ms))
    .elem("currentInstanceBootMode", "legacy-bios")
    .node("capacityReservationSpecification", |x| {
        x.elem("capacityReservationPreference", "open");
    })
    .node("hibernationOptions", |x| {
        x.elem("configured", false);
    })
    .node("enclaveOptions", |x| {
        x.elem("enabled", false);
    })
    .node("metadataOptions", |x| {
        ec2_access::write_metadata_options(x, &r.metadata, "applied")
    })
    .node("maintenanceOptions", |x| {
        x.elem("autoRecovery", "default");
    })
    .node("privateDnsNameOptions", |x| {
        x.elem("hostnameType", "ip-name")
            .elem("enableResourceNameDnsARecord", false)
            .elem("enableResourceNameDnsAAAARecord", false);
    })
    .node("networkPerformanceOptions", |x| {
        x.elem("bandwidthWeighting", "default");
    });
    if let Some(s) = &r.state_reason {
        x.node("stateReason", |x| {
            x.elem("code", &s.code).elem("message", &s.message);
        });
    }
    if !h.tags.is_empty() {
        write_tags(x, &h.tags);
    }
}

/// One `GroupIdentifier` item: the default security group.
fn write_group(x: &mut Xml, n: &InstanceNetwork) {
    x.node("item", |x| {
        x.elem("groupId", &n.group.0).elem("groupName", n.group.1);
    });
}

/// An `InstanceNetworkInterface`: the instance's primary interface in its subnet.
fn write_interface(
    x: &mut Xml,
    n: &InstanceNetwork,
    owner: &str,
    attached_ms: u64,
    public_ip: Option<&str>,
) {
    let association = |x: &mut Xml| {
        if let Some(ip) = public_ip {
            x.node("association", |x| {
                x.elem("publicIp", ip)
                    .elem("publicDnsName", "")
                    .elem("ipOwnerId", owner);
            });
        }
    };
    x.elem("networkInterfaceId", &n.interface_id)
        .elem("subnetId", &n.subnet_id)
        .elem("vpcId", &n.vpc_id)
        .elem("description", "")
        .elem("ownerId", owner)
        .elem("status", "in-use")
        .elem("macAddress", &n.mac_address)
        .elem("privateIpAddress", &n.private_ip)
        .elem("privateDnsName", &n.private_dns_name)
        .elem("sourceDestCheck", true)
        .node("groupSet", |x| write_group(x, n))
        .node("attachment", |x| {
            x.elem("attachmentId", &n.interface_attachment_id)
                .elem("deviceIndex", 0)
                .elem("status", "attached")
                .elem("attachTime", time(attached_ms))
                .elem("deleteOnTermination", true)
                .elem("networkCardIndex", 0);
        })
        .node("privateIpAddressesSet", |x| {
            x.node("item", |x| {
                x.elem("privateIpAddress", &n.private_ip)
                    .elem("privateDnsName", &n.private_dns_name)
                    .elem("primary", true);
                association(x);
            });
        })
        .node("ipv6AddressesSet", |_| {})
        .elem("interfaceType", "interface");
    association(x);
}

/// An `InstanceBlockDeviceMapping`: an attached EBS volume.
fn write_attached_ebs(x: &mut Xml, (volume_id, a): &(String, AttachmentRecord)) {
    x.elem("deviceName", &a.device).node("ebs", |x| {
        x.elem("volumeId", volume_id)
            .elem("status", a.state.as_str())
            .elem("attachTime", time(a.attach_time_ms))
            .elem("deleteOnTermination", a.delete_on_termination);
    });
}

/// The members of a `Reservation`.
fn write_reservation(x: &mut Xml, r: &ReservationView) {
    x.elem("reservationId", &r.reservation_id)
        .elem("ownerId", &r.owner_id)
        .node("groupSet", |_| {})
        .list("instancesSet", &r.instances, write_instance);
}

fn run_instances(cp: &ControlPlane, who: Account, p: &Params, x: &mut Xml) -> Result<(), Ec2Error> {
    let count = |name: &str| -> Result<i32, Ec2Error> {
        p.int(name)?.ok_or_else(|| Ec2Error::missing(name))
    };
    let r = cp.run_instances(
        who,
        model::RunInstancesRequest {
            image_id: p.required("ImageId")?,
            instance_type: p.string("InstanceType"),
            min_count: count("MinCount")?,
            max_count: count("MaxCount")?,
            placement: p.structs_one("Placement").map(|pl| model::Placement {
                availability_zone: pl.string("AvailabilityZone").unwrap_or_default(),
            }),
            block_device_mappings: block_device_mappings(p)?,
            user_data: p.string("UserData"),
            workload: None,
            instance_initiated_shutdown_behavior: p.string("InstanceInitiatedShutdownBehavior"),
            tag_specifications: tag_specifications(p),
            client_token: p.string("ClientToken"),
            disable_api_termination: p.bool("DisableApiTermination")?.unwrap_or(false),
            subnet_id: p.string("SubnetId"),
            security_group_ids: p.list("SecurityGroupId"),
            security_groups: p.list("SecurityGroup"),
            key_name: p.string("KeyName"),
            metadata_options: p
                .structs_one("MetadataOptions")
                .map(|m| ec2_access::metadata_options(&m))
                .transpose()?,
        },
    )?;
    write_reservation(x, &r);
    Ok(())
}

fn describe_instances(
    cp: &ControlPlane,
    who: Account,
    p: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    let page = cp.describe_instances(
        who,
        model::DescribeInstancesRequest {
            instance_ids: p.list("InstanceId"),
            filters: filters(p),
            max_results: p.int("MaxResults")?,
            next_token: p.string("NextToken").filter(|t| !t.is_empty()),
        },
    )?;
    x.list("reservationSet", &page.reservations, write_reservation);
    x.opt("nextToken", page.next_token);
    Ok(())
}

fn describe_instance_status(
    cp: &ControlPlane,
    who: Account,
    p: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    let (statuses, next) = cp.describe_instance_status(
        who,
        DescribeInstanceStatusRequest {
            instance_ids: p.list("InstanceId"),
            include_all_instances: p.bool("IncludeAllInstances")?.unwrap_or(false),
            filters: filters(p),
            max_results: p.int("MaxResults")?,
            next_token: p.string("NextToken").filter(|t| !t.is_empty()),
        },
    )?;
    let summary = |x: &mut Xml, name: &str, s: &StatusSummary| {
        x.node(name, |x| {
            x.elem("status", s.status)
                .list("details", &s.details, |x, (name, status)| {
                    x.elem("name", name).elem("status", status);
                });
        });
    };
    x.list("instanceStatusSet", &statuses, |x, s| {
        x.elem("instanceId", &s.instance_id)
            .elem("availabilityZone", &s.availability_zone)
            .opt("availabilityZoneId", zone_id(&s.availability_zone))
            .node("eventsSet", |_| {});
        write_state(x, "instanceState", s.state);
        summary(x, "systemStatus", &s.system_status);
        summary(x, "instanceStatus", &s.instance_status);
        summary(x, "attachedEbsStatus", &s.attached_ebs_status);
    });
    x.opt("nextToken", next);
    Ok(())
}

/// DescribeInstanceAttribute: one attribute of one instance, each as EC2 shows it on a
/// Nitro instance in a new account where this server has nothing of its own to say.
fn describe_instance_attribute(
    cp: &ControlPlane,
    who: Account,
    p: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    let id = p.required("InstanceId")?;
    let attribute = p.required("Attribute")?;
    let page = cp.describe_instances(
        who,
        model::DescribeInstancesRequest {
            instance_ids: vec![id.clone()],
            ..Default::default()
        },
    )?;
    let Some(v) = page.reservations.first().and_then(|r| r.instances.first()) else {
        return Err(Ec2Error::internal("DescribeInstances answered no instance"));
    };
    let r = v.record();
    let value = |x: &mut Xml, name: &str, value: &dyn std::fmt::Display| {
        x.node(name, |x| {
            x.elem("value", value);
        });
    };
    x.elem("instanceId", &id);
    match attribute.as_str() {
        "instanceType" => value(x, "instanceType", &r.instance_type),
        "userData" => {
            x.node("userData", |x| {
                x.opt("value", r.user_data.as_deref());
            });
        }
        "disableApiTermination" => value(x, "disableApiTermination", &r.disable_api_termination),
        "instanceInitiatedShutdownBehavior" => value(
            x,
            "instanceInitiatedShutdownBehavior",
            &r.shutdown_behavior.as_str(),
        ),
        "rootDeviceName" => value(x, "rootDeviceName", &r.root_device_name),
        "blockDeviceMapping" => {
            x.list("blockDeviceMapping", &v.attachments, write_attached_ebs);
        }
        "ebsOptimized" => value(x, "ebsOptimized", &true),
        "enaSupport" => value(x, "enaSupport", &true),
        "sourceDestCheck" => value(x, "sourceDestCheck", &true),
        "sriovNetSupport" => value(x, "sriovNetSupport", &"simple"),
        "disableApiStop" => value(x, "disableApiStop", &false),
        "kernel" | "ramdisk" | "productCodes" | "groupSet" => {
            x.node(&attribute, |_| {});
        }
        "enclaveOptions" => {
            x.node("enclaveOptions", |x| {
                x.elem("enabled", false);
            });
        }
        other => {
            return Err(Ec2Error::invalid_value(format!(
                "Value ({other}) for parameter attribute is invalid. Unknown attribute."
            )));
        }
    }
    Ok(())
}

/// ModifyInstanceAttribute: one attribute, given as `Attribute`/`Value` or as its own
/// structure (`DisableApiTermination.Value`, `BlockDeviceMapping.N`, …).
fn modify_instance_attribute(
    cp: &ControlPlane,
    who: Account,
    p: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    use model::InstanceAttributeChange as C;
    let id = p.required("InstanceId")?;
    let mut changes: Vec<C> = vec![];
    let bool_value = |raw: &str| match raw {
        "true" => Ok(true),
        "false" => Ok(false),
        v => Err(Ec2Error::invalid_value(format!(
            "Value ({v}) is invalid: expecting true or false."
        ))),
    };
    if let Some(attribute) = p.string("Attribute") {
        let v = p.required("Value")?;
        changes.push(match attribute.as_str() {
            "instanceType" => C::InstanceType(v),
            "userData" => C::UserData(v),
            "disableApiTermination" => C::DisableApiTermination(bool_value(&v)?),
            "instanceInitiatedShutdownBehavior" => C::ShutdownBehavior(v),
            other => return Err(unsupported_attribute(other)),
        });
    }
    if let Some(v) = p.bool("DisableApiTermination.Value")? {
        changes.push(C::DisableApiTermination(v));
    }
    if let Some(v) = p.string("InstanceInitiatedShutdownBehavior.Value") {
        changes.push(C::ShutdownBehavior(v));
    }
    if let Some(v) = p.string("InstanceType.Value") {
        changes.push(C::InstanceType(v));
    }
    if let Some(v) = p.get("UserData.Value") {
        changes.push(C::UserData(v.to_string()));
    }
    let mappings = p.structs("BlockDeviceMapping");
    if !mappings.is_empty() {
        let mut devices = vec![];
        for m in mappings {
            let device = m.required("DeviceName")?;
            let dot = m.bool("Ebs.DeleteOnTermination")?.ok_or_else(|| {
                Ec2Error::invalid_value(format!(
                    "BlockDeviceMapping {device}: only Ebs.DeleteOnTermination can be modified."
                ))
            })?;
            devices.push((device, dot));
        }
        changes.push(C::DeleteOnTermination(devices));
    }
    for other in [
        ("SourceDestCheck.Value", "sourceDestCheck"),
        ("DisableApiStop.Value", "disableApiStop"),
        ("EbsOptimized.Value", "ebsOptimized"),
        ("EnaSupport.Value", "enaSupport"),
        ("SriovNetSupport.Value", "sriovNetSupport"),
        ("Kernel.Value", "kernel"),
        ("Ramdisk.Value", "ramdisk"),
        ("GroupId.1", "groupSet"),
    ] {
        if p.get(other.0).is_some() {
            return Err(unsupported_attribute(other.1));
        }
    }
    let change = match changes.len() {
        0 => return Err(Ec2Error::missing("Attribute")),
        1 => changes.remove(0),
        _ => {
            return Err(Ec2Error::invalid_combination(
                "Only one attribute can be modified at a time.",
            ));
        }
    };
    cp.modify_instance_attribute(who, &id, change)?;
    x.elem("return", true);
    Ok(())
}

fn unsupported_attribute(name: &str) -> Ec2Error {
    Ec2Error::new(
        ErrorCode::UnsupportedOperation,
        format!(
            "Modifying the instance attribute '{name}' is not supported by this server (it has no networking or kernels of its own yet)."
        ),
    )
}

fn write_changes(x: &mut Xml, changes: &[InstanceStateChange]) {
    x.list("instancesSet", changes, |x, c| {
        x.elem("instanceId", &c.instance_id);
        write_state(x, "currentState", c.current);
        write_state(x, "previousState", c.previous);
    });
}

fn instance_ids(p: &Params) -> Result<Vec<String>, Ec2Error> {
    let ids = p.list("InstanceId");
    if ids.is_empty() {
        return Err(Ec2Error::missing("InstanceId"));
    }
    Ok(ids)
}

fn start_instances(
    cp: &ControlPlane,
    who: Account,
    p: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    write_changes(x, &cp.start_instances(who, &instance_ids(p)?)?);
    Ok(())
}

fn stop_instances(
    cp: &ControlPlane,
    who: Account,
    p: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    let changes = cp.stop_instances(
        who,
        &instance_ids(p)?,
        p.bool("Force")?.unwrap_or(false),
        p.bool("Hibernate")?.unwrap_or(false),
    )?;
    write_changes(x, &changes);
    Ok(())
}

fn reboot_instances(
    cp: &ControlPlane,
    who: Account,
    p: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    cp.reboot_instances(who, &instance_ids(p)?)?;
    x.elem("return", true);
    Ok(())
}

fn terminate_instances(
    cp: &ControlPlane,
    who: Account,
    p: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    write_changes(x, &cp.terminate_instances(who, &instance_ids(p)?)?);
    Ok(())
}

fn get_console_output(
    cp: &ControlPlane,
    who: Account,
    p: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    let out = cp.console_output(who, &p.required("InstanceId")?)?;
    x.elem("instanceId", &out.instance_id)
        .elem("timestamp", time(out.timestamp_ms))
        .elem("output", &out.output);
    Ok(())
}

/// The members of a fast snapshot restore item (the same in the Enable, Disable and Describe
/// answers).
fn write_fsr(x: &mut Xml, v: &FsrView) {
    let f = &v.record;
    x.elem("snapshotId", &f.snapshot_id)
        .elem("availabilityZone", &f.availability_zone)
        .opt("availabilityZoneId", zone_id(&f.availability_zone))
        .elem("state", v.state)
        .elem("stateTransitionReason", v.transition_reason())
        .elem("ownerId", &v.owner_id)
        .elem("enablingTime", time(f.enabling_ms))
        .opt("optimizingTime", v.optimizing_ms.map(time))
        .opt("enabledTime", v.enabled_ms.map(time))
        .opt("disablingTime", f.disabled_ms.map(time))
        .opt("disabledTime", f.disabled_ms.map(time));
}

/// `successful` and `unsuccessful` (failures grouped by snapshot, as EC2 does).
fn write_fsr_result(x: &mut Xml, (ok, failed): (Vec<FsrView>, Vec<FsrFailure>)) {
    x.list("successful", &ok, write_fsr);
    let mut by_snapshot: Vec<(String, Vec<&FsrFailure>)> = vec![];
    for f in &failed {
        // Failures come snapshot by snapshot: a new group starts when the snapshot changes.
        match by_snapshot.last_mut() {
            Some((s, v)) if *s == f.snapshot_id => v.push(f),
            _ => by_snapshot.push((f.snapshot_id.clone(), vec![f])),
        }
    }
    x.list("unsuccessful", &by_snapshot, |x, (snap, errors)| {
        x.elem("snapshotId", snap)
            .list("fastSnapshotRestoreStateErrorSet", errors, |x, e| {
                x.elem("availabilityZone", &e.availability_zone)
                    .node("error", |x| {
                        x.elem("code", e.code.as_str()).elem("message", &e.message);
                    });
            });
    });
}

fn fsr_pairs(p: &Params) -> Result<model::EnableFastSnapshotRestoresRequest, Ec2Error> {
    let zones = p.list("AvailabilityZone");
    let snapshots = p.list("SourceSnapshotId");
    if zones.is_empty() {
        return Err(Ec2Error::missing("AvailabilityZone"));
    }
    if snapshots.is_empty() {
        return Err(Ec2Error::missing("SourceSnapshotId"));
    }
    Ok(model::EnableFastSnapshotRestoresRequest {
        availability_zones: zones,
        source_snapshot_ids: snapshots,
    })
}

fn enable_fast_snapshot_restores(
    cp: &ControlPlane,
    who: Account,
    p: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    write_fsr_result(x, cp.enable_fast_snapshot_restores(who, fsr_pairs(p)?)?);
    Ok(())
}

fn disable_fast_snapshot_restores(
    cp: &ControlPlane,
    who: Account,
    p: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    let r = fsr_pairs(p)?;
    write_fsr_result(
        x,
        cp.disable_fast_snapshot_restores(
            who,
            model::DisableFastSnapshotRestoresRequest {
                availability_zones: r.availability_zones,
                source_snapshot_ids: r.source_snapshot_ids,
            },
        )?,
    );
    Ok(())
}

fn describe_fast_snapshot_restores(
    cp: &ControlPlane,
    who: Account,
    p: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    let (views, next) = cp.describe_fast_snapshot_restores(
        who,
        model::DescribeFastSnapshotRestoresRequest {
            filters: filters(p),
            max_results: p.int("MaxResults")?,
            next_token: p.string("NextToken").filter(|t| !t.is_empty()),
        },
    )?;
    x.list("fastSnapshotRestoreSet", &views, write_fsr);
    x.opt("nextToken", next);
    Ok(())
}

fn describe_instance_types(
    _: &ControlPlane,
    _: Account,
    p: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    use instance_manager::types;
    let filters: Vec<(String, Vec<String>)> =
        filters(p).into_iter().map(|f| (f.name, f.values)).collect();
    let next = p.string("NextToken").filter(|t| !t.is_empty());
    let (list, next) = types::describe(
        &p.list("InstanceType"),
        &filters,
        p.int("MaxResults")?,
        next.as_deref(),
    )
    .map_err(|e| {
        let code = ErrorCode::from_name(e.code()).unwrap_or(ErrorCode::InvalidParameterValue);
        Ec2Error::new(code, e.to_string())
    })?;
    x.list("instanceTypeSet", &list, |x, t| {
        let (manufacturer, clock) = t.processor();
        let (interfaces, addresses) = t.network_interfaces();
        x.elem("instanceType", t.name)
            .elem("currentGeneration", t.current_generation)
            .elem("freeTierEligible", t.free_tier_eligible())
            .values("supportedUsageClasses", &["on-demand", "spot"])
            .values("supportedRootDeviceTypes", t.supported_root_device_types())
            .values("supportedVirtualizationTypes", &["hvm"])
            .elem("bareMetal", t.bare_metal())
            .opt("hypervisor", t.hypervisor.map(|h| h.as_str()))
            .node("processorInfo", |x| {
                x.values("supportedArchitectures", &[t.architecture.as_str()])
                    .elem("sustainedClockSpeedInGhz", clock)
                    .elem("manufacturer", manufacturer);
            })
            .node("vCpuInfo", |x| {
                x.elem("defaultVCpus", t.vcpus)
                    .elem("defaultCores", t.vcpus.div_ceil(2))
                    .elem("defaultThreadsPerCore", if t.vcpus > 1 { 2 } else { 1 });
            })
            .node("memoryInfo", |x| {
                x.elem("sizeInMiB", t.memory_mib);
            })
            .elem("instanceStorageSupported", t.instance_store.is_some());
        if let Some(s) = &t.instance_store {
            x.node("instanceStorageInfo", |x| {
                x.elem("totalSizeInGB", s.total_size_gb())
                    .list("disks", &[s], |x, s| {
                        x.elem("sizeInGB", s.size_gb)
                            .elem("count", s.count)
                            .elem("type", s.disk.as_str());
                    })
                    .elem("nvmeSupport", s.nvme_support());
            });
        }
        let e = &t.ebs;
        x.node("ebsInfo", |x| {
            x.elem("ebsOptimizedSupport", t.ebs_optimized_support())
                .elem("encryptionSupport", "supported")
                .node("ebsOptimizedInfo", |x| {
                    x.elem("baselineBandwidthInMbps", e.baseline_bandwidth_mbps)
                        .elem("baselineThroughputInMBps", e.baseline_throughput_mb_per_s)
                        .elem("baselineIops", e.baseline_iops)
                        .elem("maximumBandwidthInMbps", e.maximum_bandwidth_mbps)
                        .elem("maximumThroughputInMBps", e.maximum_throughput_mb_per_s)
                        .elem("maximumIops", e.maximum_iops);
                })
                .elem("nvmeSupport", t.ebs_nvme_support());
        })
        .node("networkInfo", |x| {
            x.elem("networkPerformance", t.network_performance)
                .elem("maximumNetworkInterfaces", interfaces)
                .elem("maximumNetworkCards", 1)
                .elem("defaultNetworkCardIndex", 0)
                .list("networkCards", &[()], |x, _| {
                    x.elem("networkCardIndex", 0)
                        .elem("networkPerformance", t.network_performance)
                        .elem("maximumNetworkInterfaces", interfaces);
                })
                .elem("ipv4AddressesPerInterface", addresses)
                .elem("ipv6AddressesPerInterface", addresses)
                .elem("ipv6Supported", true)
                .elem("enaSupport", t.ena_support())
                .elem("enaSrdSupported", t.ena_express_supported())
                .elem("efaSupported", t.efa_supported())
                .elem(
                    "encryptionInTransitSupported",
                    t.encryption_in_transit_supported(),
                );
        })
        .node("placementGroupInfo", |x| {
            x.values("supportedStrategies", &["cluster", "partition", "spread"]);
        })
        .values("supportedBootModes", t.supported_boot_modes())
        .elem("dedicatedHostsSupported", true);
        if let Some(g) = &t.gpus {
            x.node("gpuInfo", |x| {
                x.list("gpus", &[g], |x, g| {
                    x.elem("name", g.name)
                        .elem("manufacturer", g.manufacturer)
                        .elem("count", g.count)
                        .node("memoryInfo", |x| {
                            x.elem("sizeInMiB", g.memory_mib);
                        });
                })
                .elem("totalGpuMemoryInMiB", u64::from(g.count) * g.memory_mib);
            });
        }
        x.elem("burstablePerformanceSupported", t.burstable);
    });
    x.opt("nextToken", next);
    Ok(())
}
