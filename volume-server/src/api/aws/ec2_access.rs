//! EC2 Query encoders for reaching instances: key pairs, Elastic IP addresses and the
//! instance metadata options (the calls of `control::{keypairs, addresses, metadata}`).

use base64::Engine;

use super::ec2::{filters, tag_specifications, write_tags};
use super::query::Params;
use super::xml::Xml;
use crate::api::format_time as time;
use crate::catalog::{KeyPairRecord, MetadataOptions};
use crate::control::addresses::{AddressView, AssociateRequest};
use crate::control::{Account, ControlPlane, Ec2Error, model};

pub(super) fn create_key_pair(
    cp: &ControlPlane,
    who: Account,
    p: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    let made = cp.create_key_pair(
        who,
        &p.string("KeyName").unwrap_or_default(),
        p.get("KeyType"),
        p.get("KeyFormat"),
        &tag_specifications(p),
    )?;
    let r = &made.record;
    x.elem("keyPairId", &r.key_pair_id)
        .elem("keyName", &r.key_name)
        .elem("keyFingerprint", &r.fingerprint)
        .elem("keyMaterial", &made.key_material);
    if !r.tags.is_empty() {
        write_tags(x, &r.tags);
    }
    Ok(())
}

pub(super) fn import_key_pair(
    cp: &ControlPlane,
    who: Account,
    p: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    // A blob: base64 on the wire.
    let material = match p.get("PublicKeyMaterial") {
        None | Some("") => Vec::new(),
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| {
                Ec2Error::invalid_value(
                    "Value for parameter PublicKeyMaterial is invalid: it is not base64.",
                )
            })?,
    };
    let r = cp.import_key_pair(
        who,
        &p.string("KeyName").unwrap_or_default(),
        &material,
        &tag_specifications(p),
    )?;
    x.elem("keyFingerprint", &r.fingerprint)
        .elem("keyName", &r.key_name)
        .elem("keyPairId", &r.key_pair_id);
    if !r.tags.is_empty() {
        write_tags(x, &r.tags);
    }
    Ok(())
}

pub(super) fn describe_key_pairs(
    cp: &ControlPlane,
    who: Account,
    p: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    let with_public = p.bool("IncludePublicKey")?.unwrap_or(false);
    let pairs =
        cp.describe_key_pairs(who, &p.list("KeyName"), &p.list("KeyPairId"), &filters(p))?;
    x.list("keySet", &pairs, |x, k: &KeyPairRecord| {
        x.elem("keyPairId", &k.key_pair_id)
            .elem("keyType", &k.key_type);
        if k.tags.is_empty() {
            x.node("tagSet", |_| {});
        } else {
            write_tags(x, &k.tags);
        }
        if with_public {
            // As EC2 shows it: the OpenSSH line with the key's name as its comment.
            x.elem("publicKey", format!("{} {}", k.public_key, k.key_name));
        }
        x.elem("createTime", time(k.created_ms))
            .elem("keyName", &k.key_name)
            .elem("keyFingerprint", &k.fingerprint);
    });
    Ok(())
}

pub(super) fn delete_key_pair(
    cp: &ControlPlane,
    who: Account,
    p: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    let id = cp.delete_key_pair(who, p.get("KeyName"), p.get("KeyPairId"))?;
    x.elem("return", true).opt("keyPairId", id);
    Ok(())
}

pub(super) fn allocate_address(
    cp: &ControlPlane,
    who: Account,
    p: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    let r = cp.allocate_address(
        who,
        p.get("Domain"),
        p.get("Address"),
        &tag_specifications(p),
    )?;
    x.elem("publicIp", &r.public_ip)
        .elem("allocationId", &r.allocation_id)
        .elem("publicIpv4Pool", "amazon")
        .elem("networkBorderGroup", cp.region())
        .elem("domain", "vpc");
    Ok(())
}

pub(super) fn associate_address(
    cp: &ControlPlane,
    who: Account,
    p: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    let id = cp.associate_address(
        who,
        &AssociateRequest {
            allocation_id: p.string("AllocationId"),
            public_ip: p.string("PublicIp"),
            instance_id: p.string("InstanceId"),
            network_interface_id: p.string("NetworkInterfaceId"),
            allow_reassociation: p.bool("AllowReassociation")?.unwrap_or(false),
        },
    )?;
    x.elem("associationId", id);
    Ok(())
}

pub(super) fn disassociate_address(
    cp: &ControlPlane,
    who: Account,
    p: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    cp.disassociate_address(who, p.get("AssociationId"), p.get("PublicIp"))?;
    x.elem("return", true);
    Ok(())
}

pub(super) fn release_address(
    cp: &ControlPlane,
    who: Account,
    p: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    cp.release_address(who, p.get("AllocationId"), p.get("PublicIp"))?;
    x.elem("return", true);
    Ok(())
}

pub(super) fn describe_addresses(
    cp: &ControlPlane,
    who: Account,
    p: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    let all = cp.describe_addresses(
        who,
        &p.list("PublicIp"),
        &p.list("AllocationId"),
        &filters(p),
    )?;
    let region = cp.region().to_string();
    x.list("addressesSet", &all, |x, v: &AddressView| {
        let a = &v.record;
        x.elem("publicIp", &a.public_ip)
            .elem("allocationId", &a.allocation_id)
            .elem("domain", "vpc");
        if let Some(assoc) = &a.association {
            x.elem("instanceId", &assoc.instance_id)
                .elem("associationId", &assoc.association_id)
                .opt("networkInterfaceId", v.network_interface_id.as_deref())
                .opt(
                    "networkInterfaceOwnerId",
                    v.network_interface_owner_id.as_deref(),
                )
                .opt("privateIpAddress", v.private_ip.as_deref());
        }
        if !a.tags.is_empty() {
            write_tags(x, &a.tags);
        }
        x.elem("publicIpv4Pool", "amazon")
            .elem("networkBorderGroup", &region);
    });
    Ok(())
}

/// `MetadataOptions.*` of RunInstances, or ModifyInstanceMetadataOptions' parameters.
pub(super) fn metadata_options(p: &Params) -> Result<model::MetadataOptionsRequest, Ec2Error> {
    Ok(model::MetadataOptionsRequest {
        http_tokens: p.string("HttpTokens"),
        http_put_response_hop_limit: p.int("HttpPutResponseHopLimit")?,
        http_endpoint: p.string("HttpEndpoint"),
        instance_metadata_tags: p.string("InstanceMetadataTags"),
    })
}

/// An `InstanceMetadataOptionsResponse`'s members.
pub(super) fn write_metadata_options(x: &mut Xml, o: &MetadataOptions, state: &str) {
    let on_off = |b: bool| if b { "enabled" } else { "disabled" };
    x.elem("state", state)
        .elem(
            "httpTokens",
            if o.tokens_required {
                "required"
            } else {
                "optional"
            },
        )
        .elem("httpPutResponseHopLimit", o.hop_limit)
        .elem("httpEndpoint", on_off(o.endpoint_enabled))
        .elem("httpProtocolIpv6", "disabled")
        .elem("instanceMetadataTags", on_off(o.tags_enabled));
}

pub(super) fn modify_instance_metadata_options(
    cp: &ControlPlane,
    who: Account,
    p: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    let id = p.required("InstanceId")?;
    if p.get("HttpProtocolIpv6") == Some("enabled") {
        return Err(Ec2Error::new(
            crate::control::ErrorCode::UnsupportedOperation,
            "The metadata service's IPv6 endpoint is not supported by this server.",
        ));
    }
    let options = cp.modify_instance_metadata_options(who, &id, &metadata_options(p)?)?;
    x.elem("instanceId", &id)
        .node("instanceMetadataOptions", |x| {
            write_metadata_options(x, &options, "pending")
        });
    Ok(())
}
