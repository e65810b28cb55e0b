//! VPCs as the API sees them: the network a new AWS account starts with, per account and
//! region (a default VPC, 172.31.0.0/16, a default subnet in each availability zone, the /20s EC2
//! gives them: 172.31.0.0/20, 172.31.16.0/20, …), the VPCs and subnets made by CreateVpc and
//! CreateSubnet (see `vpcs`), each VPC's `default` security group (DescribeVpcs,
//! DescribeSubnets, DescribeSecurityGroups); and each instance's place in them: a private
//! address in its subnet, the DNS name EC2 derives from it, and its primary network interface.
//! The default network's ids are derived from the account and region, so they are the same
//! across restarts and different for each account. Packets are carried by the host network of
//! booted instances (`instance_manager::network`: a bridge per VPC); plain-process workloads
//! run in the host's network.

use sha2::{Digest, Sha256};

use std::collections::{BTreeMap, HashMap, HashSet};

use super::filter::{check_names, check_values, glob};
use super::{Account, ControlPlane, Ec2Error, ErrorCode, State, model, region::zone_id};
use crate::catalog::{HostRecord, SubnetRecord, VpcRecord};
use instance_manager::network::Block;

/// The default VPC's block, as in every AWS account.
pub const VPC_CIDR: &str = "172.31.0.0/16";
/// Addresses in a default subnet, a /20.
const SUBNET_SIZE: u32 = 4096;
/// EC2 keeps the first four addresses of a subnet and the last.
const FIRST_HOST: u32 = 4;

/// A VPC: an account's default one or one made by CreateVpc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VpcView {
    pub vpc_id: String,
    pub owner_id: String,
    /// Its IPv4 block.
    pub cidr_block: String,
    /// `dopt-…`: the default DHCP options set.
    pub dhcp_options_id: String,
    /// `vpc-cidr-assoc-…`: the association of its block.
    pub cidr_association_id: String,
    /// The account's default VPC.
    pub is_default: bool,
    pub tags: BTreeMap<String, String>,
}

/// A subnet: a default one (one per availability zone) or one made by CreateSubnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetView {
    pub subnet_id: String,
    pub vpc_id: String,
    pub owner_id: String,
    pub availability_zone: String,
    pub availability_zone_id: Option<String>,
    /// e.g. `172.31.0.0/20`.
    pub cidr_block: String,
    /// Free addresses: its size less the five EC2 keeps, less those its instances hold.
    pub available_ip_address_count: u32,
    /// `arn:aws:ec2:REGION:ACCOUNT:subnet/ID`.
    pub arn: String,
    /// A default subnet (and so one that maps public addresses on launch).
    pub default_for_az: bool,
    pub tags: BTreeMap<String, String>,
}

/// A VPC's `default` security group.
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

/// An instance's place in its VPC and its primary network interface.
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
    /// The security group (id, name) of the interface: its VPC's default group.
    pub group: (String, &'static str),
    /// The VPC's block, e.g. `172.31.0.0/16`.
    pub vpc_cidr: String,
    /// The subnet's block, e.g. `172.31.16.0/20`.
    pub subnet_cidr: String,
}

/// A subnet, default or made, as addresses are handed out in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Subnet {
    pub subnet_id: String,
    pub vpc_id: String,
    pub owner_id: String,
    pub zone: String,
    pub block: Block,
    pub default_for_az: bool,
    pub tags: BTreeMap<String, String>,
}

impl Subnet {
    /// Addresses instances may have: all but the first four and the last.
    fn usable(&self) -> u32 {
        (self.block.size() as u32).saturating_sub(FIRST_HOST + 1)
    }

    fn from_record(r: &SubnetRecord) -> Option<Subnet> {
        Some(Subnet {
            subnet_id: r.subnet_id.clone(),
            vpc_id: r.vpc_id.clone(),
            owner_id: r.owner_id.clone(),
            zone: r.availability_zone.clone(),
            block: Block::parse(&r.cidr_block)?,
            default_for_az: false,
            tags: r.tags.clone(),
        })
    }
}

/// The default subnet of the `index`th zone: 172.31.(16 × index).0/20.
fn default_block(index: usize) -> Block {
    let base = std::net::Ipv4Addr::new(172, 31, 0, 0);
    Block {
        base: std::net::Ipv4Addr::from(u32::from(base) + index as u32 * SUBNET_SIZE),
        prefix: 20,
    }
}

/// `prefix-` and 17 hex digits, the same for the same `parts`.
pub(super) fn derived_id(prefix: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}-{}", &hex[..17])
}

/// Whether every filter passes, each looked up by `field` (`None`: an unknown name).
pub(super) fn filters_pass(
    filters: &[model::Filter],
    field: impl Fn(&str) -> Option<Vec<String>>,
) -> bool {
    filters.iter().all(|f| {
        field(&f.name)
            .is_some_and(|values| values.iter().any(|v| f.values.iter().any(|p| glob(p, v))))
    })
}

/// `InvalidParameterValue` for a filter that is not one of `names` or `tag:KEY`, or one without
/// values.
pub(super) fn check_filters(filters: &[model::Filter], names: &[&str]) -> Result<(), Ec2Error> {
    for f in filters {
        check_values(&f.name, &f.values)?;
    }
    check_names(filters, names)
}

/// The values of a `tag:KEY` or `tag-key` filter over `tags`.
pub(super) fn tag_field(name: &str, tags: &BTreeMap<String, String>) -> Option<Vec<String>> {
    if name == "tag-key" {
        return Some(tags.keys().cloned().collect());
    }
    let key = name.strip_prefix("tag:")?;
    Some(tags.get(key).cloned().into_iter().collect())
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
            cidr_block: VPC_CIDR.to_string(),
            dhcp_options_id: derived_id("dopt", &[who.id(), region]),
            cidr_association_id: derived_id("vpc-cidr-assoc", &[who.id(), region]),
            is_default: true,
            tags: BTreeMap::new(),
        }
    }

    /// A VPC made by CreateVpc.
    pub(super) fn vpc_view(&self, v: &VpcRecord) -> VpcView {
        VpcView {
            vpc_id: v.vpc_id.clone(),
            owner_id: v.owner_id.clone(),
            cidr_block: v.cidr_block.clone(),
            dhcp_options_id: derived_id("dopt", &[&v.owner_id, &self.cfg.region]),
            cidr_association_id: v.cidr_association_id.clone(),
            is_default: false,
            tags: v.tags.clone(),
        }
    }

    /// Every VPC of `who`: the default one first, then those it made.
    pub(super) fn vpcs_of(&self, st: &State, who: Account) -> Vec<VpcView> {
        let mut out = vec![self.default_vpc(who)];
        out.extend(
            st.vpcs
                .values()
                .filter(|v| who.owns(&v.owner_id))
                .map(|v| self.vpc_view(v)),
        );
        out
    }

    /// The default subnet of `zone` for `who` (`None`: not a zone of this region).
    fn default_subnet(&self, who: Account, zone: &str) -> Option<Subnet> {
        let index = self.cfg.availability_zones.iter().position(|z| z == zone)?;
        Some(Subnet {
            subnet_id: derived_id("subnet", &[who.id(), &self.cfg.region, zone]),
            vpc_id: self.default_vpc(who).vpc_id,
            owner_id: who.id().to_string(),
            zone: zone.to_string(),
            block: default_block(index),
            default_for_az: true,
            tags: BTreeMap::new(),
        })
    }

    /// Every subnet of `who`: the default ones in zone order, then those it made.
    pub(super) fn subnets_of(&self, st: &State, who: Account) -> Vec<Subnet> {
        let mut out: Vec<Subnet> = self
            .cfg
            .availability_zones
            .iter()
            .filter_map(|z| self.default_subnet(who, z))
            .collect();
        out.extend(
            st.subnets
                .values()
                .filter(|s| who.owns(&s.owner_id))
                .filter_map(Subnet::from_record),
        );
        out
    }

    /// The subnet `h` holds its address in.
    pub(super) fn subnet_of(&self, st: &State, h: &HostRecord) -> Option<Subnet> {
        if let Some(s) = h.subnet_id.as_ref().and_then(|id| st.subnets.get(id)) {
            return Subnet::from_record(s);
        }
        let who = Account::parse(&h.owner_id).unwrap_or(Account::LOCAL);
        self.default_subnet(who, &h.availability_zone)
    }

    /// The default security group of `vpc` (the default VPC's keeps the id it always had).
    fn security_group_of(&self, vpc: &VpcView) -> SecurityGroupView {
        let id = if vpc.is_default {
            derived_id("sg", &[&vpc.owner_id, &self.cfg.region])
        } else {
            derived_id("sg", &[&vpc.vpc_id])
        };
        SecurityGroupView {
            arn: format!(
                "arn:aws:ec2:{}:{}:security-group/{id}",
                self.cfg.region, vpc.owner_id
            ),
            group_id: id,
            group_name: "default",
            description: "default VPC security group",
            vpc_id: vpc.vpc_id.clone(),
            owner_id: vpc.owner_id.clone(),
        }
    }

    /// The default security group of `who`'s default VPC.
    pub fn default_security_group(&self, who: Account) -> SecurityGroupView {
        self.security_group_of(&self.default_vpc(who))
    }

    /// DescribeVpcs: `who`'s VPCs that `ids` name (or all) and `filters` pass. An id that is
    /// none of them is `InvalidVpcID.NotFound`.
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
        let vpcs = self.vpcs_of(&self.lock(), who);
        if let Some(id) = ids.iter().find(|id| !vpcs.iter().any(|v| v.vpc_id == **id)) {
            return Err(Ec2Error::new(
                ErrorCode::InvalidVpcIdNotFound,
                format!("The vpc ID '{id}' does not exist"),
            ));
        }
        Ok(vpcs
            .into_iter()
            .filter(|v| ids.is_empty() || ids.contains(&v.vpc_id))
            .filter(|v| {
                filters_pass(filters, |name| {
                    Some(vec![match name {
                        "vpc-id" => v.vpc_id.clone(),
                        "cidr" | "cidr-block-association.cidr-block" => v.cidr_block.clone(),
                        "cidr-block-association.association-id" => v.cidr_association_id.clone(),
                        "cidr-block-association.state" => "associated".to_string(),
                        "dhcp-options-id" => v.dhcp_options_id.clone(),
                        "is-default" => bool_str(v.is_default),
                        "owner-id" => v.owner_id.clone(),
                        "state" => "available".to_string(),
                        _ => return tag_field(name, &v.tags),
                    }])
                })
            })
            .collect())
    }

    /// DescribeSubnets: `who`'s subnets that `ids` name (or all) and `filters` pass. An id that
    /// is none of them is `InvalidSubnetID.NotFound`.
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
        let st = self.lock();
        // Addresses held per subnet, counted in one pass.
        let mut used: HashMap<String, u32> = HashMap::new();
        for h in st.hosts.values() {
            if who.owns(&h.owner_id)
                && holds_address(h)
                && let Some(s) = self.subnet_of(&st, h)
            {
                *used.entry(s.subnet_id).or_default() += 1;
            }
        }
        let subnets: Vec<SubnetView> = self
            .subnets_of(&st, who)
            .into_iter()
            .map(|s| {
                let held = used.get(&s.subnet_id).copied().unwrap_or(0);
                self.subnet_view(&s, held)
            })
            .collect();
        drop(st);
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
                            bool_str(s.default_for_az)
                        }
                        "owner-id" => s.owner_id.clone(),
                        "state" => "available".to_string(),
                        "subnet-arn" => s.arn.clone(),
                        "available-ip-address-count" => s.available_ip_address_count.to_string(),
                        _ => return tag_field(name, &s.tags),
                    }])
                })
            })
            .collect())
    }

    /// The API's view of `s`, whose instances hold `used` of its addresses.
    pub(super) fn subnet_view(&self, s: &Subnet, used: u32) -> SubnetView {
        SubnetView {
            arn: format!(
                "arn:aws:ec2:{}:{}:subnet/{}",
                self.cfg.region, s.owner_id, s.subnet_id
            ),
            subnet_id: s.subnet_id.clone(),
            vpc_id: s.vpc_id.clone(),
            owner_id: s.owner_id.clone(),
            availability_zone: s.zone.clone(),
            availability_zone_id: zone_id(&s.zone),
            cidr_block: s.block.to_string(),
            available_ip_address_count: s.usable().saturating_sub(used),
            default_for_az: s.default_for_az,
            tags: s.tags.clone(),
        }
    }

    /// DescribeSecurityGroups: the default group of each of `who`'s VPCs, those `ids` name (or
    /// all), `names` name (only the default VPC's is found by name, as in EC2) and `filters`
    /// pass. Any other is `InvalidGroup.NotFound`.
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
        let groups: Vec<SecurityGroupView> = self
            .vpcs_of(&self.lock(), who)
            .iter()
            .map(|v| self.security_group_of(v))
            .collect();
        if let Some(id) = ids
            .iter()
            .find(|id| !groups.iter().any(|g| g.group_id == **id))
        {
            return Err(Ec2Error::new(
                ErrorCode::InvalidGroupNotFound,
                format!("The security group '{id}' does not exist"),
            ));
        }
        let default_vpc = self.default_vpc(who).vpc_id;
        if let Some(name) = names.iter().find(|n| *n != "default") {
            return Err(Ec2Error::new(
                ErrorCode::InvalidGroupNotFound,
                format!(
                    "The security group '{name}' does not exist in default VPC '{default_vpc}'"
                ),
            ));
        }
        Ok(groups
            .into_iter()
            .filter(|g| ids.is_empty() || ids.contains(&g.group_id))
            .filter(|g| names.is_empty() || g.vpc_id == default_vpc)
            .filter(|g| {
                filters_pass(filters, |name| {
                    Some(vec![match name {
                        "group-id" => g.group_id.clone(),
                        "group-name" => g.group_name.to_string(),
                        "description" => g.description.to_string(),
                        "vpc-id" => g.vpc_id.clone(),
                        "owner-id" => g.owner_id.clone(),
                        // Ingress from the group itself and egress anywhere, all protocols.
                        "egress.ip-permission.protocol" | "ip-permission.protocol" => {
                            "-1".to_string()
                        }
                        _ => return tag_field(name, &BTreeMap::new()),
                    }])
                })
            })
            .collect())
    }

    /// Where RunInstances places an instance: the zone of `subnet_id` (which `who` must have)
    /// and, for a subnet made by CreateSubnet, its id; the placement's zone must agree with the
    /// subnet's, and the security groups must be `who`'s and of the subnet's VPC (the default
    /// VPC's without a subnet). `None`: no subnet given.
    pub fn launch_zone(
        &self,
        who: Account,
        subnet_id: Option<&str>,
        placement_zone: Option<&str>,
        group_ids: &[String],
        group_names: &[String],
    ) -> Result<Option<(String, Option<String>)>, Ec2Error> {
        let groups = if !group_ids.is_empty() || !group_names.is_empty() {
            self.describe_security_groups(who, group_ids, group_names, &[])?
        } else {
            vec![]
        };
        let Some(subnet_id) = subnet_id.filter(|s| !s.is_empty()) else {
            let default_vpc = self.default_vpc(who).vpc_id;
            if let Some(g) = groups.iter().find(|g| g.vpc_id != default_vpc) {
                return Err(Ec2Error::invalid_combination(format!(
                    "Security group {} is in {}; without a subnet the instance is launched in the default VPC {default_vpc}.",
                    g.group_id, g.vpc_id
                )));
            }
            return Ok(None);
        };
        let subnet = self
            .describe_subnets(who, &[subnet_id.to_string()], &[])?
            .remove(0);
        if let Some(g) = groups.iter().find(|g| g.vpc_id != subnet.vpc_id) {
            return Err(Ec2Error::invalid_value(format!(
                "Security group {} and subnet {subnet_id} belong to different networks.",
                g.group_id
            )));
        }
        if let Some(z) = placement_zone.filter(|z| !z.is_empty() && *z != subnet.availability_zone)
        {
            return Err(Ec2Error::invalid_combination(format!(
                "Subnet {subnet_id} is in {} but the placement asks for {z}.",
                subnet.availability_zone
            )));
        }
        let made = (!subnet.default_for_az).then(|| subnet.subnet_id.clone());
        Ok(Some((subnet.availability_zone, made)))
    }

    /// The lowest free private address of `who`'s subnet `subnet_id` (made by CreateSubnet) or,
    /// with `None`, of `zone`'s default subnet, given the state's hosts (each holds one until it
    /// is terminated).
    pub(super) fn free_address(
        &self,
        st: &State,
        who: Account,
        zone: &str,
        subnet_id: Option<&str>,
    ) -> Result<String, Ec2Error> {
        let subnet = match subnet_id {
            Some(id) => st.subnets.get(id).and_then(Subnet::from_record),
            None => self.default_subnet(who, zone),
        }
        .ok_or_else(|| Ec2Error::invalid_value(format!("Invalid availability zone: [{zone}]")))?;
        let used: HashSet<String> = st
            .hosts
            .values()
            .filter(|h| holds_address(h))
            .filter(|h| {
                self.subnet_of(st, h)
                    .is_some_and(|s| s.subnet_id == subnet.subnet_id)
            })
            .filter_map(|h| h.private_ip.clone())
            .collect();
        (FIRST_HOST..(subnet.block.size() as u32).saturating_sub(1))
            .map(|offset| subnet.block.nth(offset).to_string())
            .find(|a| !used.contains(a))
            .ok_or_else(|| {
                Ec2Error::new(
                    ErrorCode::InsufficientFreeAddressesInSubnet,
                    format!(
                        "There are not enough free addresses in subnet '{}'.",
                        subnet.subnet_id
                    ),
                )
            })
    }

    /// Where `h` sits in its VPC. A host recorded before addresses were handed out gets one
    /// derived from its id (stable, though not checked for uniqueness).
    pub(super) fn instance_network(&self, st: &State, h: &HostRecord) -> InstanceNetwork {
        let who = Account::parse(&h.owner_id).unwrap_or(Account::LOCAL);
        let subnet = self.subnet_of(st, h).unwrap_or_else(|| Subnet {
            subnet_id: derived_id("subnet", &[who.id(), &h.availability_zone]),
            vpc_id: self.default_vpc(who).vpc_id,
            owner_id: who.id().to_string(),
            zone: h.availability_zone.clone(),
            block: default_block(0),
            default_for_az: true,
            tags: BTreeMap::new(),
        });
        let private_ip = h.private_ip.clone().unwrap_or_else(|| {
            let n = u32::from_be_bytes(
                Sha256::digest(h.instance_id.as_bytes())[..4]
                    .try_into()
                    .expect("four bytes"),
            );
            let span = subnet.usable().max(1);
            subnet.block.nth(FIRST_HOST + n % span).to_string()
        });
        let dashed = private_ip.replace('.', "-");
        let private_dns_name = if self.cfg.region == "us-east-1" {
            format!("ip-{dashed}.ec2.internal")
        } else {
            format!("ip-{dashed}.{}.compute.internal", self.cfg.region)
        };
        let mac = Sha256::digest(format!("mac/{}", h.instance_id).as_bytes());
        let vpc = match st.vpcs.get(&subnet.vpc_id) {
            Some(v) => self.vpc_view(v),
            None => self.default_vpc(who),
        };
        let g = self.security_group_of(&vpc);
        InstanceNetwork {
            vpc_id: vpc.vpc_id.clone(),
            subnet_id: subnet.subnet_id.clone(),
            private_ip,
            private_dns_name,
            interface_id: derived_id("eni", &[&h.instance_id]),
            interface_attachment_id: derived_id("eni-attach", &[&h.instance_id]),
            mac_address: format!(
                "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                mac[0], mac[1], mac[2], mac[3], mac[4]
            ),
            group: (g.group_id, g.group_name),
            vpc_cidr: vpc.cidr_block,
            subnet_cidr: subnet.block.to_string(),
        }
    }
}

/// Whether `h` holds its address: every host but a terminated instance.
pub(super) fn holds_address(h: &HostRecord) -> bool {
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
        assert_eq!(default_block(0).to_string(), "172.31.0.0/20");
        assert_eq!(default_block(1).to_string(), "172.31.16.0/20");
    }
}
