//! CreateVpc, DeleteVpc, CreateSubnet and DeleteSubnet: VPCs and subnets beyond each account's
//! default ones, kept in the catalog. Each VPC gets its own bridge on the host when its first
//! booted instance starts (see `instance_manager::network`), so instances of different VPCs
//! cannot reach each other, even where their blocks overlap.
//!
//! EC2's rules: a block is a /16 to a /28 (`InvalidVpc.Range`, `InvalidSubnet.Range`); a subnet
//! lies inside its VPC's block and overlaps none of its other subnets
//! (`InvalidSubnet.Conflict`); five VPCs per region, the default one included
//! (`VpcLimitExceeded`); a VPC with subnets, or a subnet with instances, cannot be deleted
//! (`DependencyViolation`). The default VPC and its subnets stay: this server derives them, so
//! deleting them is `OperationNotPermitted`.

use instance_manager::network::Block;

use super::network::{Subnet, SubnetView, VpcView, holds_address};
use super::{Account, ControlPlane, Ec2Error, ErrorCode, model, validate};
use crate::catalog::{Change, SubnetRecord, VpcRecord};
use crate::ids;

/// VPCs per account and region, the default one included (EC2's default quota).
const MAX_VPCS: usize = 5;

/// A block EC2 takes for a VPC or subnet, or the error it gives.
fn block(cidr: &str, range: ErrorCode) -> Result<Block, Ec2Error> {
    let b = Block::parse(cidr).ok_or_else(|| {
        Ec2Error::invalid_value(format!(
            "Value ({cidr}) for parameter cidrBlock is invalid. This is not a valid CIDR block."
        ))
    })?;
    if !(16..=28).contains(&b.prefix) {
        return Err(Ec2Error::new(
            range,
            format!("The CIDR '{cidr}' is invalid."),
        ));
    }
    Ok(b)
}

impl ControlPlane {
    /// CreateVpc.
    pub fn create_vpc(
        &self,
        who: Account,
        cidr_block: Option<&str>,
        tag_specifications: &[model::TagSpecification],
    ) -> Result<VpcView, Ec2Error> {
        let cidr = cidr_block
            .filter(|c| !c.is_empty())
            .ok_or_else(|| Ec2Error::missing("CidrBlock"))?;
        let b = block(cidr, ErrorCode::InvalidVpcRange)?;
        let tags = validate::tag_specifications("vpc", tag_specifications)?;
        let mut st = self.lock();
        let made = st.vpcs.values().filter(|v| who.owns(&v.owner_id)).count();
        if made + 1 >= MAX_VPCS {
            return Err(Ec2Error::new(
                ErrorCode::VpcLimitExceeded,
                "The maximum number of VPCs has been reached.",
            ));
        }
        let r = VpcRecord {
            vpc_id: ids::new_id("vpc"),
            owner_id: who.id().to_string(),
            cidr_block: b.to_string(),
            cidr_association_id: ids::new_id("vpc-cidr-assoc"),
            created_ms: super::now_ms(),
            tags,
        };
        self.commit(&[Change::PutVpc(r.clone())])?;
        st.vpcs.insert(r.vpc_id.clone(), r.clone());
        tracing::info!(vpc_id = %r.vpc_id, cidr = %r.cidr_block, "VPC created");
        Ok(self.vpc_view(&r))
    }

    /// DeleteVpc.
    pub fn delete_vpc(&self, who: Account, vpc_id: &str) -> Result<(), Ec2Error> {
        if vpc_id.is_empty() {
            return Err(Ec2Error::missing("VpcId"));
        }
        if self.default_vpc(who).vpc_id == vpc_id {
            return Err(Ec2Error::new(
                ErrorCode::OperationNotPermitted,
                format!("The default VPC '{vpc_id}' cannot be deleted on this server."),
            ));
        }
        let mut st = self.lock();
        if !st.vpcs.get(vpc_id).is_some_and(|v| who.owns(&v.owner_id)) {
            return Err(Ec2Error::new(
                ErrorCode::InvalidVpcIdNotFound,
                format!("The vpc ID '{vpc_id}' does not exist"),
            ));
        }
        if st.subnets.values().any(|s| s.vpc_id == vpc_id) {
            return Err(Ec2Error::new(
                ErrorCode::DependencyViolation,
                format!("The vpc '{vpc_id}' has dependencies and cannot be deleted."),
            ));
        }
        self.commit(&[Change::DeleteVpc(vpc_id.to_string())])?;
        st.vpcs.remove(vpc_id);
        drop(st);
        let bridge = self.bridge_of(vpc_id);
        if let Some(m) = &self.cfg.metadata {
            m.stop_vpc(&bridge);
        }
        instance_manager::network::remove_bridge(&bridge);
        tracing::info!(vpc_id, "VPC deleted");
        Ok(())
    }

    /// CreateSubnet: in `zone` (the region's first without one), inside the VPC's block.
    pub fn create_subnet(
        &self,
        who: Account,
        vpc_id: &str,
        cidr_block: Option<&str>,
        zone: Option<&str>,
        tag_specifications: &[model::TagSpecification],
    ) -> Result<SubnetView, Ec2Error> {
        if vpc_id.is_empty() {
            return Err(Ec2Error::missing("VpcId"));
        }
        let cidr = cidr_block
            .filter(|c| !c.is_empty())
            .ok_or_else(|| Ec2Error::missing("CidrBlock"))?;
        let zone = match zone.filter(|z| !z.is_empty()) {
            None => self.cfg.availability_zones[0].clone(),
            Some(z) if self.cfg.availability_zones.iter().any(|a| a == z) => z.to_string(),
            Some(z) => {
                return Err(Ec2Error::invalid_value(format!(
                    "Value ({z}) for parameter availabilityZone is invalid. Subnets can currently only be created in the following availability zones: {}.",
                    self.cfg.availability_zones.join(", ")
                )));
            }
        };
        let b = block(cidr, ErrorCode::InvalidSubnetRange)?;
        let tags = validate::tag_specifications("subnet", tag_specifications)?;
        let mut st = self.lock();
        let vpc = self
            .vpcs_of(&st, who)
            .into_iter()
            .find(|v| v.vpc_id == vpc_id)
            .ok_or_else(|| {
                Ec2Error::new(
                    ErrorCode::InvalidVpcIdNotFound,
                    format!("The vpc ID '{vpc_id}' does not exist"),
                )
            })?;
        let vpc_block = Block::parse(&vpc.cidr_block).expect("a stored block");
        if b.prefix < vpc_block.prefix || !b.overlaps(&vpc_block) {
            return Err(Ec2Error::new(
                ErrorCode::InvalidSubnetRange,
                format!("The CIDR '{cidr}' is invalid."),
            ));
        }
        let siblings: Vec<Subnet> = self
            .subnets_of(&st, who)
            .into_iter()
            .filter(|s| s.vpc_id == vpc_id)
            .collect();
        if siblings.iter().any(|s| b.overlaps(&s.block)) {
            return Err(Ec2Error::new(
                ErrorCode::InvalidSubnetConflict,
                format!("The CIDR '{cidr}' conflicts with another subnet"),
            ));
        }
        let r = SubnetRecord {
            subnet_id: ids::new_id("subnet"),
            vpc_id: vpc_id.to_string(),
            owner_id: who.id().to_string(),
            availability_zone: zone,
            cidr_block: b.to_string(),
            tags,
        };
        self.commit(&[Change::PutSubnet(r.clone())])?;
        st.subnets.insert(r.subnet_id.clone(), r.clone());
        tracing::info!(subnet_id = %r.subnet_id, vpc_id, cidr = %r.cidr_block, "subnet created");
        let s = self
            .subnets_of(&st, who)
            .into_iter()
            .find(|s| s.subnet_id == r.subnet_id)
            .expect("just made");
        Ok(self.subnet_view(&s, 0))
    }

    /// DeleteSubnet.
    pub fn delete_subnet(&self, who: Account, subnet_id: &str) -> Result<(), Ec2Error> {
        if subnet_id.is_empty() {
            return Err(Ec2Error::missing("SubnetId"));
        }
        let mut st = self.lock();
        let Some(s) = self
            .subnets_of(&st, who)
            .into_iter()
            .find(|s| s.subnet_id == subnet_id)
        else {
            return Err(Ec2Error::new(
                ErrorCode::InvalidSubnetIdNotFound,
                format!("The subnet ID '{subnet_id}' does not exist"),
            ));
        };
        if s.default_for_az {
            return Err(Ec2Error::new(
                ErrorCode::OperationNotPermitted,
                format!("The default subnet '{subnet_id}' cannot be deleted on this server."),
            ));
        }
        let in_use = st
            .hosts
            .values()
            .any(|h| h.subnet_id.as_deref() == Some(subnet_id) && holds_address(h));
        if in_use {
            return Err(Ec2Error::new(
                ErrorCode::DependencyViolation,
                format!("The subnet '{subnet_id}' has dependencies and cannot be deleted."),
            ));
        }
        self.commit(&[Change::DeleteSubnet(subnet_id.to_string())])?;
        st.subnets.remove(subnet_id);
        drop(st);
        instance_manager::network::remove_router(&self.bridge_of(&s.vpc_id), &s.block);
        tracing::info!(subnet_id, "subnet deleted");
        Ok(())
    }
}
