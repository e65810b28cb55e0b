//! Elastic IP addresses: AllocateAddress, AssociateAddress, DisassociateAddress,
//! ReleaseAddress and DescribeAddresses, kept in the catalog, drawn from `--eip-pool`, and
//! wired on the host by `instance_manager::elastic` (a route and a DNAT into the instance's
//! VPC bridge: reachable from this host only).
//!
//! EC2's rules: five addresses per account and region (`AddressLimitExceeded`); an associated
//! address moves only with `AllowReassociation` (`Resource.AlreadyAssociated`); an instance
//! has at most one (associating another disassociates the first); releasing an address
//! associated in the default VPC disassociates it, in another VPC it is refused
//! (`InvalidIPAddress.InUse`); stop and start keep the association; termination ends it (the
//! address stays allocated).

use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use instance_manager::elastic::{self, Mapping};
use instance_manager::lifecycle::InstanceState;
use instance_manager::network::Block;

use super::instances::rec;
use super::network::{check_filters, filters_pass, tag_field};
use super::{Account, ControlPlane, Ec2Error, ErrorCode, State, model, validate};
use crate::catalog::{AddressAssociation, AddressRecord, Change};
use crate::ids;

/// Elastic IPs per account and region (EC2's default quota).
const MAX_ADDRESSES: usize = 5;

/// An address as DescribeAddresses shows it.
#[derive(Debug, Clone)]
pub struct AddressView {
    pub record: AddressRecord,
    /// Of the associated instance: its interface, its owner and private address.
    pub network_interface_id: Option<String>,
    pub network_interface_owner_id: Option<String>,
    pub private_ip: Option<String>,
}

/// The host's Elastic IP wiring: the newest state asked for, and one applier at a time (so the
/// `nft` and `ip` commands run outside the state's lock, and never apply an older state over a
/// newer one).
#[derive(Debug, Default)]
pub(super) struct Wiring {
    /// The newest mappings and this server's bridges, not applied yet.
    desired: Mutex<Option<(Vec<Mapping>, Vec<String>)>>,
    /// Held while applying or removing.
    applying: Mutex<()>,
    /// The host has (or may have, or is about to have) wiring of this server's. Changed only
    /// under `desired`'s lock, so a publish and an applier's record of what it applied are
    /// ordered.
    wired: AtomicBool,
}

/// How AssociateAddress names the address and its target.
#[derive(Debug, Clone, Default)]
pub struct AssociateRequest {
    pub allocation_id: Option<String>,
    pub public_ip: Option<String>,
    pub instance_id: Option<String>,
    pub network_interface_id: Option<String>,
    pub allow_reassociation: bool,
}

pub(super) fn allocation_not_found(id: &str) -> Ec2Error {
    Ec2Error::new(
        ErrorCode::InvalidAllocationIdNotFound,
        format!("The allocation ID '{id}' does not exist"),
    )
}

fn address_not_found(ip: &str) -> Ec2Error {
    Ec2Error::new(
        ErrorCode::InvalidAddressNotFound,
        format!("Address '{ip}' not found."),
    )
}

impl ControlPlane {
    /// AllocateAddress: the lowest free address of the pool (or `public_ip`, when given and free).
    pub fn allocate_address(
        &self,
        who: Account,
        domain: Option<&str>,
        public_ip: Option<&str>,
        tag_specifications: &[model::TagSpecification],
    ) -> Result<AddressRecord, Ec2Error> {
        match domain.filter(|d| !d.is_empty()) {
            None | Some("vpc") => {}
            Some(d) => {
                return Err(Ec2Error::invalid_value(format!(
                    "Value ({d}) for parameter domain is invalid. Only vpc addresses exist here (EC2-Classic is retired)."
                )));
            }
        }
        let tags = validate::tag_specifications("elastic-ip", tag_specifications)?;
        let pool = self.cfg.eip_pool;
        let wanted = match public_ip.filter(|p| !p.is_empty()) {
            None => None,
            Some(p) => Some(
                p.parse::<Ipv4Addr>()
                    .ok()
                    .filter(|a| usable(&pool).any(|u| u == *a))
                    .ok_or_else(|| {
                        Ec2Error::invalid_value(format!(
                            "The address '{p}' is not in this server's Elastic IP pool ({pool})."
                        ))
                    })?,
            ),
        };
        let mut st = self.lock();
        let mine = st
            .addresses
            .values()
            .filter(|a| who.owns(&a.owner_id))
            .count();
        if mine >= MAX_ADDRESSES {
            return Err(Ec2Error::new(
                ErrorCode::AddressLimitExceeded,
                "The maximum number of addresses has been reached.",
            ));
        }
        let taken = |a: Ipv4Addr| st.addresses.values().any(|r| r.public_ip == a.to_string());
        let ip = match wanted {
            Some(a) if taken(a) => {
                return Err(Ec2Error::invalid_value(format!(
                    "The address '{a}' is already allocated."
                )));
            }
            Some(a) => a,
            None => usable(&pool).find(|a| !taken(*a)).ok_or_else(|| {
                Ec2Error::new(
                    ErrorCode::InsufficientAddressCapacity,
                    format!("The Elastic IP pool {pool} has no free address."),
                )
            })?,
        };
        let r = AddressRecord {
            allocation_id: ids::new_id("eipalloc"),
            owner_id: who.id().to_string(),
            public_ip: ip.to_string(),
            association: None,
            tags,
        };
        self.commit(&[Change::PutAddress(r.clone())])?;
        st.addresses.insert(r.allocation_id.clone(), r.clone());
        tracing::info!(allocation_id = %r.allocation_id, public_ip = %r.public_ip, "address allocated");
        Ok(r)
    }

    /// AssociateAddress: returns the association id.
    pub fn associate_address(
        &self,
        who: Account,
        req: &AssociateRequest,
    ) -> Result<String, Ec2Error> {
        let mut st = self.lock();
        let address = self.owned_address(
            &st,
            who,
            req.allocation_id.as_deref(),
            req.public_ip.as_deref(),
        )?;
        let instance_id = match (
            req.instance_id.as_deref().filter(|s| !s.is_empty()),
            req.network_interface_id
                .as_deref()
                .filter(|s| !s.is_empty()),
        ) {
            (None, None) => return Err(Ec2Error::missing("InstanceId")),
            (Some(i), _) => {
                super::check_instance_id(i)?;
                super::instances::visible_instance(&st, who, i)?;
                i.to_string()
            }
            (None, Some(eni)) => st
                .hosts
                .values()
                .filter(|h| who.owns(&h.owner_id) && h.instance.is_some())
                .find(|h| self.instance_network(&st, h).interface_id == eni)
                .map(|h| h.instance_id.clone())
                .ok_or_else(|| {
                    Ec2Error::new(
                        ErrorCode::InvalidNetworkInterfaceIdNotFound,
                        format!("The networkInterface ID '{eni}' does not exist"),
                    )
                })?,
        };
        let host = &st.hosts[&instance_id];
        let Some(i) = host.instance.as_ref() else {
            return Err(Ec2Error::new(
                ErrorCode::UnsupportedOperation,
                format!(
                    "The instance '{instance_id}' is a registered host: it has no interface here."
                ),
            ));
        };
        // A launch still in progress may yet be undone (its record deleted): not a target.
        if i.launching
            || matches!(
                i.state,
                InstanceState::ShuttingDown | InstanceState::Terminated
            )
        {
            return Err(Ec2Error::new(
                ErrorCode::IncorrectInstanceState,
                format!("The instance '{instance_id}' is not in a valid state for this operation."),
            ));
        }
        if let Some(a) = &address.association {
            if a.instance_id == instance_id {
                return Ok(a.association_id.clone());
            }
            if !req.allow_reassociation {
                return Err(Ec2Error::new(
                    ErrorCode::ResourceAlreadyAssociated,
                    format!(
                        "resource {} is already associated with associate-id {}",
                        address.allocation_id, a.association_id
                    ),
                ));
            }
        }
        // One address per interface: the instance's previous one lets go.
        let mut changes: Vec<Change> = st
            .addresses
            .values()
            .filter(|a| {
                a.allocation_id != address.allocation_id && associated_with(a, &instance_id)
            })
            .map(let_go)
            .collect();
        let association_id = ids::new_id("eipassoc");
        changes.push(Change::PutAddress(AddressRecord {
            association: Some(AddressAssociation {
                association_id: association_id.clone(),
                instance_id: instance_id.clone(),
            }),
            ..address.clone()
        }));
        self.commit(&changes)?;
        super::apply(&mut st, changes);
        self.publish_wiring(&st);
        drop(st);
        self.apply_wiring();
        tracing::info!(allocation_id = %address.allocation_id, public_ip = %address.public_ip, instance_id, "address associated");
        Ok(association_id)
    }

    /// DisassociateAddress by association id (or public address).
    pub fn disassociate_address(
        &self,
        who: Account,
        association_id: Option<&str>,
        public_ip: Option<&str>,
    ) -> Result<(), Ec2Error> {
        let mut st = self.lock();
        let address = match association_id.filter(|s| !s.is_empty()) {
            Some(id) => st
                .addresses
                .values()
                .find(|a| {
                    who.owns(&a.owner_id)
                        && a.association
                            .as_ref()
                            .is_some_and(|x| x.association_id == id)
                })
                .cloned()
                .ok_or_else(|| {
                    Ec2Error::new(
                        ErrorCode::InvalidAssociationIdNotFound,
                        format!("The association ID '{id}' does not exist"),
                    )
                })?,
            None => match public_ip.filter(|s| !s.is_empty()) {
                Some(ip) => self.owned_address(&st, who, None, Some(ip))?,
                None => return Err(Ec2Error::missing("AssociationId")),
            },
        };
        if address.association.is_none() {
            return Ok(());
        }
        let change = let_go(&address);
        self.commit(std::slice::from_ref(&change))?;
        super::apply(&mut st, vec![change]);
        self.publish_wiring(&st);
        drop(st);
        self.apply_wiring();
        tracing::info!(allocation_id = %address.allocation_id, "address disassociated");
        Ok(())
    }

    /// ReleaseAddress by allocation id (or public address). As on EC2, an address associated
    /// with an instance of the default VPC lets go and is released; one of another VPC must be
    /// disassociated first (`InvalidIPAddress.InUse`).
    pub fn release_address(
        &self,
        who: Account,
        allocation_id: Option<&str>,
        public_ip: Option<&str>,
    ) -> Result<(), Ec2Error> {
        let mut st = self.lock();
        let address = self.owned_address(&st, who, allocation_id, public_ip)?;
        // Some(whether in the default VPC) when associated.
        let in_default_vpc = address
            .association
            .as_ref()
            .and_then(|x| st.hosts.get(&x.instance_id))
            .map(|h| self.instance_network(&st, h).vpc_id == self.default_vpc(who).vpc_id);
        if in_default_vpc == Some(false) {
            return Err(Ec2Error::new(
                ErrorCode::InvalidIpAddressInUse,
                format!(
                    "The address with allocation id [{}] is in use.",
                    address.allocation_id
                ),
            ));
        }
        self.commit(&[Change::DeleteAddress(address.allocation_id.clone())])?;
        st.addresses.remove(&address.allocation_id);
        if in_default_vpc.is_some() {
            self.publish_wiring(&st);
            drop(st);
            self.apply_wiring();
        }
        tracing::info!(allocation_id = %address.allocation_id, "address released");
        Ok(())
    }

    /// DescribeAddresses.
    pub fn describe_addresses(
        &self,
        who: Account,
        public_ips: &[String],
        allocation_ids: &[String],
        filters: &[model::Filter],
    ) -> Result<Vec<AddressView>, Ec2Error> {
        check_filters(
            filters,
            &[
                "allocation-id",
                "association-id",
                "domain",
                "instance-id",
                "network-border-group",
                "network-interface-id",
                "network-interface-owner-id",
                "private-ip-address",
                "public-ip",
                "tag-key",
            ],
        )?;
        let st = self.lock();
        let mine: Vec<&AddressRecord> = st
            .addresses
            .values()
            .filter(|a| who.owns(&a.owner_id))
            .collect();
        if let Some(id) = allocation_ids
            .iter()
            .find(|id| !mine.iter().any(|a| &a.allocation_id == *id))
        {
            return Err(allocation_not_found(id));
        }
        if let Some(ip) = public_ips
            .iter()
            .find(|ip| !mine.iter().any(|a| &a.public_ip == *ip))
        {
            return Err(address_not_found(ip));
        }
        let mut out: Vec<AddressView> = mine
            .into_iter()
            .filter(|a| allocation_ids.is_empty() || allocation_ids.contains(&a.allocation_id))
            .filter(|a| public_ips.is_empty() || public_ips.contains(&a.public_ip))
            .map(|a| self.address_view(&st, a))
            .filter(|v| {
                let a = &v.record;
                let assoc = a.association.as_ref();
                filters_pass(filters, |name| match name {
                    "allocation-id" => Some(vec![a.allocation_id.clone()]),
                    "association-id" => Some(
                        assoc
                            .map(|x| x.association_id.clone())
                            .into_iter()
                            .collect(),
                    ),
                    "domain" => Some(vec!["vpc".to_string()]),
                    "instance-id" => {
                        Some(assoc.map(|x| x.instance_id.clone()).into_iter().collect())
                    }
                    "network-border-group" => Some(vec![self.cfg.region.clone()]),
                    "network-interface-id" => {
                        Some(v.network_interface_id.clone().into_iter().collect())
                    }
                    "network-interface-owner-id" => {
                        Some(v.network_interface_owner_id.clone().into_iter().collect())
                    }
                    "private-ip-address" => Some(v.private_ip.clone().into_iter().collect()),
                    "public-ip" => Some(vec![a.public_ip.clone()]),
                    other => tag_field(other, &a.tags),
                })
            })
            .collect();
        out.sort_by_key(|v| {
            v.record
                .public_ip
                .parse::<Ipv4Addr>()
                .map(u32::from)
                .unwrap_or(0)
        });
        Ok(out)
    }

    fn address_view(&self, st: &State, a: &AddressRecord) -> AddressView {
        let host = a
            .association
            .as_ref()
            .and_then(|x| st.hosts.get(&x.instance_id));
        let net = host.map(|h| self.instance_network(st, h));
        AddressView {
            record: a.clone(),
            network_interface_id: net.as_ref().map(|n| n.interface_id.clone()),
            network_interface_owner_id: host.map(|h| h.owner_id.clone()),
            private_ip: net.map(|n| n.private_ip),
        }
    }

    /// `who`'s address by allocation id or, failing that, by public address.
    fn owned_address(
        &self,
        st: &State,
        who: Account,
        allocation_id: Option<&str>,
        public_ip: Option<&str>,
    ) -> Result<AddressRecord, Ec2Error> {
        match (
            allocation_id.filter(|s| !s.is_empty()),
            public_ip.filter(|s| !s.is_empty()),
        ) {
            (Some(id), _) => st
                .addresses
                .get(id)
                .filter(|a| who.owns(&a.owner_id))
                .cloned()
                .ok_or_else(|| allocation_not_found(id)),
            (None, Some(ip)) => st
                .addresses
                .values()
                .find(|a| who.owns(&a.owner_id) && a.public_ip == ip)
                .cloned()
                .ok_or_else(|| address_not_found(ip)),
            (None, None) => Err(Ec2Error::missing("AllocationId")),
        }
    }

    /// The Elastic IP of `instance_id`, if one is associated.
    pub(super) fn public_ip_of(&self, st: &State, instance_id: &str) -> Option<String> {
        st.addresses
            .values()
            .find(|a| associated_with(a, instance_id))
            .map(|a| a.public_ip.clone())
    }

    /// At termination: the instance's address lets go (and stays allocated). The caller applies
    /// the new wiring once it has let go of the state ([`ControlPlane::apply_wiring`]).
    pub(super) fn release_addresses_of(&self, st: &mut State, instance_id: &str) {
        let changes: Vec<Change> = st
            .addresses
            .values()
            .filter(|a| associated_with(a, instance_id))
            .map(let_go)
            .collect();
        if changes.is_empty() {
            return;
        }
        match self.commit(&changes) {
            Ok(()) => {
                super::apply(st, changes);
                self.publish_wiring(st);
                tracing::info!(instance_id, "address disassociated at termination");
            }
            Err(e) => {
                tracing::error!(instance_id, error = %e.message, "disassociating at termination")
            }
        }
    }

    /// At start-up: associations with instances that terminated (a crash before their
    /// termination let go of them) end; then the host is wired as the catalog says.
    pub(super) fn recover_addresses(&self, st: &mut State) -> Result<(), Ec2Error> {
        let changes: Vec<Change> = st
            .addresses
            .values()
            .filter(|a| {
                a.association.as_ref().is_some_and(|x| {
                    st.hosts.get(&x.instance_id).is_none_or(|h| {
                        h.instance
                            .as_ref()
                            .is_none_or(|i| i.state == InstanceState::Terminated)
                    })
                })
            })
            .map(let_go)
            .collect();
        if !changes.is_empty() {
            self.commit(&changes)?;
            super::apply(st, changes);
        }
        // Once at start-up even with nothing associated: a server killed before it could
        // unwire left its table and routes, which this replaces.
        self.wiring.wired.store(true, Ordering::Relaxed);
        self.publish_wiring(st);
        self.apply_wiring();
        Ok(())
    }

    /// Records what the host's routes and DNAT should be, from the associations (after each
    /// change, when a VPC's bridge is made, and at start-up); [`ControlPlane::apply_wiring`]
    /// then puts it on the host, outside the state's lock where it can.
    pub(super) fn publish_wiring(&self, st: &State) {
        if elastic::available().is_err() {
            return;
        }
        let maps: Vec<Mapping> = st
            .addresses
            .values()
            .filter_map(|a| {
                let x = a.association.as_ref()?;
                let h = st.hosts.get(&x.instance_id)?;
                if rec(h).state == InstanceState::Terminated {
                    return None;
                }
                let net = self.instance_network(st, h);
                Some(Mapping {
                    public: a.public_ip.parse().ok()?,
                    private: net.private_ip.parse().ok()?,
                    bridge: self.bridge_of(&net.vpc_id),
                    router: Block::parse(&net.subnet_cidr)?.router(),
                })
            })
            .collect();
        let mut desired = self
            .wiring
            .desired
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if maps.is_empty() && desired.is_none() && !self.wiring.wired.load(Ordering::Relaxed) {
            // Nothing to put on the host, nothing to take away, nothing pending to replace.
            return;
        }
        if !maps.is_empty() {
            // Set now, not when applied: a change published before that applier finishes must
            // still be applied (to take these away) even if it maps nothing.
            self.wiring.wired.store(true, Ordering::Relaxed);
        }
        *desired = Some((maps, self.bridges(st)));
    }

    /// Puts the newest published wiring on the host. When it returns, the host has a wiring
    /// at least as new as the caller's last [`ControlPlane::publish_wiring`]. Failures are
    /// logged: the catalog stays the truth and the next change tries again.
    pub(super) fn apply_wiring(&self) {
        let _one = self
            .wiring
            .applying
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let Some((maps, bridges)) = self
            .wiring
            .desired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return;
        };
        let applied = elastic::apply(&self.eip_table(), &self.cfg.eip_pool, &maps, &bridges);
        if let Err(e) = &applied {
            tracing::error!(error = %e, "wiring Elastic IPs");
        }
        // What the host holds is recorded only if nothing was published meanwhile: a newer
        // publish set `wired` for its own wiring (which its applier puts on the host next),
        // and clearing it here would let a later empty publish skip taking that away.
        let desired = self
            .wiring
            .desired
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if desired.is_none() {
            let wired = applied.is_err() || !maps.is_empty();
            self.wiring.wired.store(wired, Ordering::Relaxed);
        }
    }

    /// At shutdown: this server's Elastic IP wiring goes.
    pub(super) fn unwire_addresses(&self) {
        // The state's lock before the applier's, never inside it (boot takes them in that order).
        let bridges = self.bridges(&self.lock());
        let _one = self
            .wiring
            .applying
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if self.wiring.wired.load(Ordering::Relaxed) {
            elastic::remove(&self.eip_table(), &self.cfg.eip_pool, &bridges);
            self.wiring.wired.store(false, Ordering::Relaxed);
        }
    }

    fn eip_table(&self) -> String {
        elastic::table_name(&self.cfg.data_dir.display().to_string())
    }
}

/// The change that lets `a` go of its association.
pub(super) fn let_go(a: &AddressRecord) -> Change {
    Change::PutAddress(AddressRecord {
        association: None,
        ..a.clone()
    })
}

/// Whether `a` is associated with `instance_id`.
pub(super) fn associated_with(a: &AddressRecord, instance_id: &str) -> bool {
    a.association
        .as_ref()
        .is_some_and(|x| x.instance_id == instance_id)
}

/// The pool's addresses an allocation may take: all but the block's first and last in blocks
/// of four or more.
fn usable(pool: &Block) -> impl Iterator<Item = Ipv4Addr> + '_ {
    let n = pool.size();
    let (first, last) = if n >= 4 { (1, n - 2) } else { (0, n - 1) };
    (first..=last).map(|i| pool.nth(i as u32))
}
