//! The control plane's side of the instance metadata service: each instance's settings
//! (RunInstances' `MetadataOptions`, ModifyInstanceMetadataOptions) and what the service
//! tells an instance about itself ([`InstanceMetadata`]), looked up by the address a request
//! comes from. The HTTP side is `crate::imds`.

use std::collections::BTreeMap;

use base64::Engine;
use instance_manager::lifecycle::InstanceState;

use super::instances::{rec, visible_instance};
use super::{Account, ControlPlane, Ec2Error, ErrorCode, State, model};
use crate::catalog::{HostRecord, MetadataOptions};

/// Where the metadata service listens, as the control plane starts and stops instances (the
/// HTTP server in `crate::api::imds` implements it).
pub trait MetadataEndpoints: Send + Sync + std::fmt::Debug {
    /// Serves the booted instances on `bridge`, VPC `vpc_id`, at `router`:80 on the bridge
    /// (their namespaces send 169.254.169.254:80 there). Idempotent; a bridge made again is
    /// served again.
    fn serve_vpc(
        &self,
        bridge: &str,
        vpc_id: &str,
        router: std::net::Ipv4Addr,
    ) -> Result<(), String>;
    /// Serves the plain-process instance `instance_id` on an address of its own; returns the
    /// base URL for `AWS_EC2_METADATA_SERVICE_ENDPOINT`.
    fn serve_instance(&self, instance_id: &str) -> Result<String, String>;
    /// Stops serving `instance_id` (its tokens end too).
    fn stop_instance(&self, instance_id: &str);
    /// Stops serving `bridge`.
    fn stop_vpc(&self, bridge: &str);
}

/// Applies a request's settings over `base`, checking each as EC2 does.
pub fn apply_options(
    mut base: MetadataOptions,
    req: &model::MetadataOptionsRequest,
) -> Result<MetadataOptions, Ec2Error> {
    let choice = |name: &str, value: &str, yes: &str, no: &str| -> Result<bool, Ec2Error> {
        if value == yes {
            Ok(true)
        } else if value == no {
            Ok(false)
        } else {
            Err(Ec2Error::invalid_value(format!(
                "Value ({value}) for parameter {name} is invalid. Valid values are {no} and {yes}."
            )))
        }
    };
    if let Some(t) = req.http_tokens.as_deref().filter(|s| !s.is_empty()) {
        base.tokens_required = choice("HttpTokens", t, "required", "optional")?;
    }
    if let Some(e) = req.http_endpoint.as_deref().filter(|s| !s.is_empty()) {
        base.endpoint_enabled = choice("HttpEndpoint", e, "enabled", "disabled")?;
    }
    if let Some(t) = req
        .instance_metadata_tags
        .as_deref()
        .filter(|s| !s.is_empty())
    {
        base.tags_enabled = choice("InstanceMetadataTags", t, "enabled", "disabled")?;
    }
    if let Some(h) = req.http_put_response_hop_limit {
        if !(1..=64).contains(&h) {
            return Err(Ec2Error::invalid_value(format!(
                "Value ({h}) for parameter HttpPutResponseHopLimit is invalid. Valid values are 1 to 64."
            )));
        }
        base.hop_limit = h as u8;
    }
    Ok(base)
}

/// What the metadata service tells one instance about itself.
#[derive(Debug, Clone)]
pub struct InstanceMetadata {
    pub instance_id: String,
    pub account_id: String,
    pub image_id: String,
    pub instance_type: String,
    pub architecture: String,
    pub launch_index: u32,
    pub reservation_id: String,
    pub launch_time_ms: u64,
    pub availability_zone: String,
    pub availability_zone_id: Option<String>,
    pub region: String,
    /// The private DNS name (`hostname`, `local-hostname`).
    pub hostname: String,
    pub private_ip: String,
    /// Its Elastic IP, if one is associated.
    pub public_ip: Option<String>,
    pub mac: String,
    pub interface_id: String,
    pub subnet_id: String,
    pub subnet_cidr: String,
    pub vpc_id: String,
    pub vpc_cidr: String,
    pub security_group: (String, String),
    /// `ami` and `root` (the root device), `ebsN` (the other EBS volumes mapped at launch,
    /// numbered from 1 in device order), `ephemeralN`: name → device.
    pub block_devices: Vec<(String, String)>,
    /// (key name, OpenSSH public key) of the key pair named at launch.
    pub public_key: Option<(String, String)>,
    pub user_data: Option<Vec<u8>>,
    pub tags: BTreeMap<String, String>,
    pub options: MetadataOptions,
}

impl ControlPlane {
    /// ModifyInstanceMetadataOptions: the settings after the change.
    pub fn modify_instance_metadata_options(
        &self,
        who: Account,
        instance_id: &str,
        req: &model::MetadataOptionsRequest,
    ) -> Result<MetadataOptions, Ec2Error> {
        super::check_instance_id(instance_id)?;
        let mut st = self.lock();
        // Not found for another account's; a registered host has no metadata service here.
        visible_instance(&st, who, instance_id)?;
        let Some(r) = st.hosts[instance_id].instance.clone() else {
            return Err(Ec2Error::new(
                ErrorCode::UnsupportedOperation,
                format!(
                    "The instance '{instance_id}' is a registered host: it has no metadata service here."
                ),
            ));
        };
        if matches!(
            r.state,
            InstanceState::ShuttingDown | InstanceState::Terminated
        ) {
            return Err(Ec2Error::new(
                ErrorCode::IncorrectInstanceState,
                format!(
                    "The instance '{instance_id}' is not in a state from which its metadata options can be modified."
                ),
            ));
        }
        let options = apply_options(r.metadata, req)?;
        self.put_instance(&mut st, instance_id, |i| i.metadata = options)?;
        tracing::info!(instance_id, ?options, "metadata options modified");
        Ok(options)
    }

    /// The metadata of the instance at `address` in `vpc_id` while it runs (or is starting:
    /// its first boot reads the service before the instance is shown `running`).
    pub fn metadata_at(&self, vpc_id: &str, address: &str) -> Option<InstanceMetadata> {
        let st = self.lock();
        st.hosts
            .values()
            .filter(|h| {
                h.instance
                    .as_ref()
                    .is_some_and(|i| serves_metadata(i.state))
                    && h.private_ip.as_deref() == Some(address)
            })
            .map(|h| self.instance_metadata(&st, h))
            .find(|m| m.vpc_id == vpc_id)
    }

    /// The metadata of `instance_id` while it runs (or is starting).
    pub fn metadata_of(&self, instance_id: &str) -> Option<InstanceMetadata> {
        let st = self.lock();
        let h = st.hosts.get(instance_id)?;
        serves_metadata(h.instance.as_ref()?.state).then(|| self.instance_metadata(&st, h))
    }

    fn instance_metadata(&self, st: &State, h: &HostRecord) -> InstanceMetadata {
        let r = rec(h);
        let net = self.instance_network(st, h);
        let mut block_devices = vec![
            ("ami".to_string(), r.root_device_name.clone()),
            ("root".to_string(), r.root_device_name.clone()),
        ];
        let mut ebs: Vec<&str> = st
            .volumes
            .values()
            .flat_map(|v| v.attachments.iter())
            .filter(|a| a.instance_id == h.instance_id && a.device != r.root_device_name)
            .map(|a| a.device.as_str())
            .collect();
        ebs.sort();
        for (n, device) in ebs.into_iter().enumerate() {
            let short = device.strip_prefix("/dev/").unwrap_or(device);
            block_devices.push((format!("ebs{}", n + 1), short.to_string()));
        }
        for d in &r.instance_store {
            let short = d
                .device_name
                .strip_prefix("/dev/")
                .unwrap_or(&d.device_name);
            block_devices.push((d.virtual_name.clone(), short.to_string()));
        }
        InstanceMetadata {
            instance_id: h.instance_id.clone(),
            account_id: h.owner_id.clone(),
            image_id: r.image_id.clone(),
            instance_type: r.instance_type.clone(),
            architecture: r.architecture.clone(),
            launch_index: r.launch_index,
            reservation_id: r.reservation_id.clone(),
            launch_time_ms: h.launch_time_ms,
            availability_zone: h.availability_zone.clone(),
            availability_zone_id: super::region::zone_id(&h.availability_zone),
            region: self.cfg.region.clone(),
            hostname: net.private_dns_name.clone(),
            private_ip: net.private_ip.clone(),
            public_ip: self.public_ip_of(st, &h.instance_id),
            mac: net.mac_address.clone(),
            interface_id: net.interface_id.clone(),
            subnet_id: net.subnet_id.clone(),
            subnet_cidr: net.subnet_cidr.clone(),
            vpc_id: net.vpc_id.clone(),
            vpc_cidr: net.vpc_cidr.clone(),
            security_group: (net.group.0.clone(), net.group.1.to_string()),
            block_devices,
            public_key: r.key_name.clone().zip(r.public_key.clone()),
            user_data: r
                .user_data
                .as_ref()
                .and_then(|u| base64::engine::general_purpose::STANDARD.decode(u).ok()),
            tags: h.tags.clone(),
            options: r.metadata,
        }
    }
}

/// Whether an instance in `state` has a metadata service.
fn serves_metadata(state: InstanceState) -> bool {
    matches!(state, InstanceState::Pending | InstanceState::Running)
}
