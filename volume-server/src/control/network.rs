//! The network a new AWS account starts with, per account and region: a default VPC
//! (172.31.0.0/16), a default subnet in each availability zone (the /20s EC2 gives them:
//! 172.31.0.0/20, 172.31.16.0/20, …) and the VPC's `default` security group
//! (DescribeVpcs, DescribeSubnets, DescribeSecurityGroups); and each instance's place in it:
//! a private address in its zone's subnet, the DNS name EC2 derives from it, and its primary
//! network interface. Their ids are derived from the account and region, so they are the same
//! across restarts and different for each account. Nothing here routes packets: an instance's
//! workload runs in the host's network (its own namespaces come with the instances issue).

use sha2::{Digest, Sha256};

use super::filter::{check_names, check_values, glob};
use super::{Account, ControlPlane, Ec2Error, ErrorCode, model, region::zone_id};
use crate::catalog::HostRecord;

/// The default VPC's block, as in every AWS account.
pub const VPC_CIDR: &str = "172.31.0.0/16";
/// Addresses in a /20.
const SUBNET_SIZE: u32 = 4096;
/// EC2 keeps the first four addresses of a subnet and the last.
const FIRST_HOST: u32 = 4;

/// The default VPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VpcView {
    pub vpc_id: String,
    pub owner_id: String,
    /// `dopt-…`: the default DHCP options set.
    pub dhcp_options_id: String,
    /// `vpc-cidr-assoc-…`: the association of [`VPC_CIDR`].
    pub cidr_association_id: String,
}

/// A default subnet: one per availability zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetView {
    pub subnet_id: String,
    pub vpc_id: String,
    pub owner_id: String,
    pub availability_zone: String,
    pub availability_zone_id: Option<String>,
    /// `172.31.N.0/20`.
    pub cidr_block: String,
    /// Free addresses: a /20's 4091 less those the account's instances hold.
    pub available_ip_address_count: u32,
    /// `arn:aws:ec2:REGION:ACCOUNT:subnet/ID`.
    pub arn: String,
}

/// The default VPC's `default` security group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityGroupView {
    pub group_id: String,
    pub group_name: &'static str,
    pub description: &'static str,
    pub vpc_id: String,
    pub owner_id: String,
    /// `arn:aws:ec2:REGION:ACCOUNT:security-group/ID`.
    pub arn: String,
}

/// An instance's place in the default VPC and its primary network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceNetwork {
    pub vpc_id: String,
    pub subnet_id: String,
    pub private_ip: String,
    /// `ip-172-31-0-4.ec2.internal` in us-east-1, `ip-….REGION.compute.internal` elsewhere.
    pub private_dns_name: String,
    /// `eni-…`.
    pub interface_id: String,
    /// `eni-attach-…`.
    pub interface_attachment_id: String,
    /// A locally administered MAC address (`02:…`).
    pub mac_address: String,
    /// The security group (id, name) of the interface: the default group.
    pub group: (String, &'static str),
    /// The VPC's block, e.g. `172.31.0.0/16`.
    pub vpc_cidr: String,
    /// The subnet's block, e.g. `172.31.16.0/20`.
    pub subnet_cidr: String,
}

/// `prefix-` and 17 hex digits, the same for the same `parts`.
fn derived_id(prefix: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}-{}", &hex[..17])
}

/// The dotted form of `172.31.0.0 + offset`.
fn address(offset: u32) -> String {
    let n = (172u32 << 24) | (31 << 16) | offset;
    std::net::Ipv4Addr::from(n).to_string()
}

/// Whether every filter passes, each looked up by `field` (`None`: an unknown name).
fn filters_pass(filters: &[model::Filter], field: impl Fn(&str) -> Option<Vec<String>>) -> bool {
    filters.iter().all(|f| {
        field(&f.name)
            .is_some_and(|values| values.iter().any(|v| f.values.iter().any(|p| glob(p, v))))
    })
}

/// `InvalidParameterValue` for a filter that is not one of `names` or `tag:KEY` (these have no
/// tags, so a tag filter matches nothing), or one without values.
fn check_filters(filters: &[model::Filter], names: &[&str]) -> Result<(), Ec2Error> {
    for f in filters {
        check_values(&f.name, &f.values)?;
    }
    check_names(filters, names)
}

fn bool_str(b: bool) -> String {
    if b { "true" } else { "false" }.to_string()
}

impl ControlPlane {
    /// The default VPC of `who`.
    pub fn default_vpc(&self, who: Account) -> VpcView {
        let region = self.cfg.region.as_str();
        VpcView {
            vpc_id: derived_id("vpc", &[who.id(), region]),
            owner_id: who.id().to_string(),
            dhcp_options_id: derived_id("dopt", &[who.id(), region]),
            cidr_association_id: derived_id("vpc-cidr-assoc", &[who.id(), region]),
        }
    }

    /// The default subnet of `zone` (`None`: not a zone of this region) for `who`.
    fn default_subnet(&self, who: Account, zone: &str) -> Option<(usize, String)> {
        let index = self.cfg.availability_zones.iter().position(|z| z == zone)?;
        Some((
            index,
            derived_id("subnet", &[who.id(), &self.cfg.region, zone]),
        ))
    }

    /// The default security group of `who`.
    pub fn default_security_group(&self, who: Account) -> SecurityGroupView {
        let id = derived_id("sg", &[who.id(), &self.cfg.region]);
        SecurityGroupView {
            arn: format!(
                "arn:aws:ec2:{}:{}:security-group/{id}",
                self.cfg.region,
                who.id()
            ),
            group_id: id,
            group_name: "default",
            description: "default VPC security group",
            vpc_id: self.default_vpc(who).vpc_id,
            owner_id: who.id().to_string(),
        }
    }

    /// DescribeVpcs: the default VPC, if `ids` name it (or are empty) and `filters` pass.
    /// An id that is not it is `InvalidVpcID.NotFound`.
    pub fn describe_vpcs(
        &self,
        who: Account,
        ids: &[String],
        filters: &[model::Filter],
    ) -> Result<Vec<VpcView>, Ec2Error> {
        check_filters(
            filters,
            &[
                "vpc-id",
                "tag-key",
                "cidr",
                "cidr-block-association.cidr-block",
                "cidr-block-association.association-id",
                "cidr-block-association.state",
                "dhcp-options-id",
                "is-default",
                "owner-id",
                "state",
            ],
        )?;
        let vpc = self.default_vpc(who);
        if let Some(id) = ids.iter().find(|id| **id != vpc.vpc_id) {
            return Err(Ec2Error::new(
                ErrorCode::InvalidVpcIdNotFound,
                format!("The vpc ID '{id}' does not exist"),
            ));
        }
        let pass = filters_pass(filters, |name| {
            Some(vec![match name {
                "vpc-id" => vpc.vpc_id.clone(),
                "cidr" | "cidr-block-association.cidr-block" => VPC_CIDR.to_string(),
                "cidr-block-association.association-id" => vpc.cidr_association_id.clone(),
                "cidr-block-association.state" => "associated".to_string(),
                "dhcp-options-id" => vpc.dhcp_options_id.clone(),
                "is-default" => bool_str(true),
                "owner-id" => vpc.owner_id.clone(),
                "state" => "available".to_string(),
                _ => return None,
            }])
        });
        Ok(if pass { vec![vpc] } else { vec![] })
    }

    /// DescribeSubnets: the default subnets (one per zone, in zone order) that `ids` name (or
    /// all) and `filters` pass. An id that is none of them is `InvalidSubnetID.NotFound`.
    pub fn describe_subnets(
        &self,
        who: Account,
        ids: &[String],
        filters: &[model::Filter],
    ) -> Result<Vec<SubnetView>, Ec2Error> {
        check_filters(
            filters,
            &[
                "subnet-id",
                "tag-key",
                "vpc-id",
                "availability-zone",
                "availability-zone-id",
                "cidr-block",
                "cidr",
                "cidrBlock",
                "default-for-az",
                "defaultForAz",
                "map-public-ip-on-launch",
                "owner-id",
                "state",
                "subnet-arn",
                "available-ip-address-count",
            ],
        )?;
        // Addresses held per zone, counted in one pass.
        let mut used: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
        for h in self.lock().hosts.values() {
            if who.owns(&h.owner_id) && holds_address(h) {
                *used.entry(h.availability_zone.clone()).or_default() += 1;
            }
        }
        let subnets: Vec<SubnetView> = self
            .cfg
            .availability_zones
            .iter()
            .map(|zone| self.subnet_view(who, zone, used.get(zone).copied().unwrap_or(0)))
            .collect();
        if let Some(id) = ids
            .iter()
            .find(|id| !subnets.iter().any(|s| s.subnet_id == **id))
        {
            return Err(Ec2Error::new(
                ErrorCode::InvalidSubnetIdNotFound,
                format!("The subnet ID '{id}' does not exist"),
            ));
        }
        Ok(subnets
            .into_iter()
            .filter(|s| ids.is_empty() || ids.contains(&s.subnet_id))
            .filter(|s| {
                filters_pass(filters, |name| {
                    Some(vec![match name {
                        "subnet-id" => s.subnet_id.clone(),
                        "vpc-id" => s.vpc_id.clone(),
                        "availability-zone" => s.availability_zone.clone(),
                        "availability-zone-id" => s.availability_zone_id.clone()?,
                        "cidr-block" | "cidr" | "cidrBlock" => s.cidr_block.clone(),
                        "default-for-az" | "defaultForAz" | "map-public-ip-on-launch" => {
                            bool_str(true)
                        }
                        "owner-id" => s.owner_id.clone(),
                        "state" => "available".to_string(),
                        "subnet-arn" => s.arn.clone(),
                        "available-ip-address-count" => s.available_ip_address_count.to_string(),
                        _ => return None,
                    }])
                })
            })
            .collect())
    }

    /// The default subnet of `zone` for `who`, whose instances hold `used` of its addresses.
    fn subnet_view(&self, who: Account, zone: &str, used: u32) -> SubnetView {
        let (index, subnet_id) = self
            .default_subnet(who, zone)
            .expect("a configured zone has a default subnet");
        SubnetView {
            arn: format!(
                "arn:aws:ec2:{}:{}:subnet/{subnet_id}",
                self.cfg.region,
                who.id()
            ),
            subnet_id,
            vpc_id: self.default_vpc(who).vpc_id,
            owner_id: who.id().to_string(),
            availability_zone: zone.to_string(),
            availability_zone_id: zone_id(zone),
            cidr_block: format!("172.31.{}.0/20", index * 16),
            available_ip_address_count: (SUBNET_SIZE - FIRST_HOST - 1).saturating_sub(used),
        }
    }

    /// DescribeSecurityGroups: the default group, if `ids` and `names` name it (or are empty)
    /// and `filters` pass. Any other is `InvalidGroup.NotFound`.
    pub fn describe_security_groups(
        &self,
        who: Account,
        ids: &[String],
        names: &[String],
        filters: &[model::Filter],
    ) -> Result<Vec<SecurityGroupView>, Ec2Error> {
        check_filters(
            filters,
            &[
                "group-id",
                "tag-key",
                "group-name",
                "description",
                "vpc-id",
                "owner-id",
                "egress.ip-permission.protocol",
                "ip-permission.protocol",
            ],
        )?;
        let g = self.default_security_group(who);
        if let Some(id) = ids.iter().find(|id| **id != g.group_id) {
            return Err(Ec2Error::new(
                ErrorCode::InvalidGroupNotFound,
                format!("The security group '{id}' does not exist"),
            ));
        }
        if let Some(name) = names.iter().find(|n| *n != g.group_name) {
            return Err(Ec2Error::new(
                ErrorCode::InvalidGroupNotFound,
                format!(
                    "The security group '{name}' does not exist in default VPC '{}'",
                    g.vpc_id
                ),
            ));
        }
        let pass = filters_pass(filters, |name| {
            Some(vec![match name {
                "group-id" => g.group_id.clone(),
                "group-name" => g.group_name.to_string(),
                "description" => g.description.to_string(),
                "vpc-id" => g.vpc_id.clone(),
                "owner-id" => g.owner_id.clone(),
                // Ingress from the group itself and egress anywhere, all protocols.
                "egress.ip-permission.protocol" | "ip-permission.protocol" => "-1".to_string(),
                _ => return None,
            }])
        });
        Ok(if pass { vec![g] } else { vec![] })
    }

    /// The default subnet of `subnet_id` (its zone) and the checks RunInstances makes of a
    /// subnet and security groups: they must be `who`'s default ones, and the subnet's zone
    /// must agree with `placement_zone` when both are given.
    pub fn launch_zone(
        &self,
        who: Account,
        subnet_id: Option<&str>,
        placement_zone: Option<&str>,
        group_ids: &[String],
        group_names: &[String],
    ) -> Result<Option<String>, Ec2Error> {
        if !group_ids.is_empty() || !group_names.is_empty() {
            self.describe_security_groups(who, group_ids, group_names, &[])?;
        }
        let Some(subnet_id) = subnet_id.filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let subnet = self
            .describe_subnets(who, &[subnet_id.to_string()], &[])?
            .remove(0);
        if let Some(z) = placement_zone.filter(|z| !z.is_empty() && *z != subnet.availability_zone)
        {
            return Err(Ec2Error::invalid_combination(format!(
                "Subnet {subnet_id} is in {} but the placement asks for {z}.",
                subnet.availability_zone
            )));
        }
        Ok(Some(subnet.availability_zone))
    }

    /// The lowest free private address of `zone`'s default subnet for `who`, given the hosts
    /// that exist (each holds one until it is terminated).
    pub(crate) fn free_address<'a>(
        &self,
        who: Account,
        zone: &str,
        hosts: impl Iterator<Item = &'a HostRecord>,
    ) -> Result<String, Ec2Error> {
        let (index, _) = self.default_subnet(who, zone).ok_or_else(|| {
            Ec2Error::invalid_value(format!("Invalid availability zone: [{zone}]"))
        })?;
        let base = index as u32 * SUBNET_SIZE;
        let used: std::collections::HashSet<String> = hosts
            .filter(|h| who.owns(&h.owner_id) && h.availability_zone == zone)
            .filter(|h| holds_address(h))
            .filter_map(|h| h.private_ip.clone())
            .collect();
        (FIRST_HOST..SUBNET_SIZE - 1)
            .map(|offset| address(base + offset))
            .find(|a| !used.contains(a))
            .ok_or_else(|| {
                Ec2Error::new(
                    ErrorCode::InsufficientFreeAddressesInSubnet,
                    format!("There are not enough free addresses in the default subnet of {zone}."),
                )
            })
    }

    /// Where `h` sits in its owner's default VPC. A host recorded before addresses were
    /// handed out gets one derived from its id (stable, though not checked for uniqueness).
    pub fn instance_network(&self, h: &HostRecord) -> InstanceNetwork {
        let who = Account::parse(&h.owner_id).unwrap_or(Account::LOCAL);
        let (index, subnet_id) = self
            .default_subnet(who, &h.availability_zone)
            .unwrap_or_else(|| (0, derived_id("subnet", &[who.id(), &h.availability_zone])));
        let private_ip = h.private_ip.clone().unwrap_or_else(|| {
            let n = u32::from_be_bytes(
                Sha256::digest(h.instance_id.as_bytes())[..4]
                    .try_into()
                    .expect("four bytes"),
            );
            address(index as u32 * SUBNET_SIZE + FIRST_HOST + n % (SUBNET_SIZE - FIRST_HOST - 1))
        });
        let dashed = private_ip.replace('.', "-");
        let private_dns_name = if self.cfg.region == "us-east-1" {
            format!("ip-{dashed}.ec2.internal")
        } else {
            format!("ip-{dashed}.{}.compute.internal", self.cfg.region)
        };
        let mac = Sha256::digest(format!("mac/{}", h.instance_id).as_bytes());
        let g = self.default_security_group(who);
        InstanceNetwork {
            vpc_id: self.default_vpc(who).vpc_id,
            subnet_id,
            private_ip,
            private_dns_name,
            interface_id: derived_id("eni", &[&h.instance_id]),
            interface_attachment_id: derived_id("eni-attach", &[&h.instance_id]),
            mac_address: format!(
                "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                mac[0], mac[1], mac[2], mac[3], mac[4]
            ),
            group: (g.group_id, g.group_name),
            vpc_cidr: VPC_CIDR.to_string(),
            subnet_cidr: format!("{}/20", address(index as u32 * SUBNET_SIZE)),
        }
    }
}

/// Whether `h` holds its address: every host but a terminated instance.
fn holds_address(h: &HostRecord) -> bool {
    h.instance
        .as_ref()
        .is_none_or(|i| i.state != instance_manager::lifecycle::InstanceState::Terminated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_shaped_like_ec2s() {
        let a = derived_id("vpc", &["000000000000", "us-east-1"]);
        assert_eq!(a, derived_id("vpc", &["000000000000", "us-east-1"]));
        assert_ne!(a, derived_id("vpc", &["111111111111", "us-east-1"]));
        assert!(crate::ids::is_valid_id(&a, "vpc"), "{a}");
        assert_eq!(address(4), "172.31.0.4");
        assert_eq!(address(16 * 256 + 4), "172.31.16.4");
    }
}
