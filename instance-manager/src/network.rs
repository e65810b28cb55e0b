//! A booted instance's private network on the host: a Linux bridge per VPC with no uplink, a
//! network namespace per instance with a veth on its VPC's bridge, its private address and MAC,
//! and a route to the whole VPC on that link.
//!
//! # Isolation
//!
//! * A bridge holds only its VPC's veths: instances of one VPC reach each other, nothing else.
//! * Instances get no default route, and the bridge has IPv4 forwarding off (the per-interface
//!   switch gates packets arriving on it), so even a route added inside cannot send a packet
//!   through the host to anywhere: nothing is ever routed off the machine.
//! * The host reaches a subnet through the bridge, which holds the subnet's router address
//!   (its base + 1, as the VPC router in AWS), unless another interface of the host already has
//!   an address overlapping it (another VPC with the same block): then that subnet is reachable
//!   from the host only from inside (`ip netns exec`) and through Elastic IPs (whose packets
//!   are routed by mark, see `elastic`), and a warning says so. The bridge still gets the
//!   router address, without a route to the block.
//! * Each instance's port on the bridge drops what does not carry its own MAC and private
//!   address (IP and ARP), EC2's source/destination check: no instance can take a neighbour's
//!   address. Security group rules are not enforced.
//!
//! The instance metadata service: inside each instance's namespace, 169.254.169.254:80 is
//! DNATed to its subnet's router address, where the server listens bound to the bridge (so it
//! knows the VPC a request comes from, and the source address names the instance). The host
//! never holds 169.254.169.254 itself.
//!
//! Everything is done with `ip` (iproute2) and is idempotent: a namespace that survived a
//! restart of the server is taken as it is.

use std::fs;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

/// Failure to set up an instance's network.
#[derive(Debug, thiserror::Error)]
#[error("{command}: {detail}")]
pub struct NetError {
    /// The command that failed.
    pub command: String,
    /// Its stderr or the cause.
    pub detail: String,
}

/// The instance metadata service's address, on every bridge.
pub const METADATA_ADDRESS: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);

/// An IPv4 block, e.g. `172.31.0.0/20`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    /// The first address.
    pub base: Ipv4Addr,
    /// The prefix length.
    pub prefix: u8,
}

impl Block {
    /// Parses `A.B.C.D/N` (N of one or two digits, at most 32); the address is masked to the
    /// block's first.
    pub fn parse(s: &str) -> Option<Block> {
        let (a, n) = s.split_once('/')?;
        let addr: Ipv4Addr = a.parse().ok()?;
        if n.is_empty() || n.len() > 2 || !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let prefix: u8 = n.parse().ok().filter(|&n| n <= 32)?;
        let mut block = Block { base: addr, prefix };
        block.base = Ipv4Addr::from(u32::from(addr) & block.mask());
        Some(block)
    }

    fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        }
    }

    /// Addresses in the block.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// The address `offset` after the first.
    pub fn nth(&self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base).wrapping_add(offset))
    }

    /// Whether `a` is in the block.
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        u32::from(a) & self.mask() == u32::from(self.base) & self.mask()
    }

    /// Whether the two blocks share an address.
    pub fn overlaps(&self, other: &Block) -> bool {
        self.contains(other.base) || other.contains(self.base)
    }

    /// The VPC router's address in a subnet: its base + 1.
    pub fn router(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base) + 1)
    }
}

impl std::fmt::Display for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

/// An instance's network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// The instance.
    pub instance_id: String,
    /// Its VPC.
    pub vpc_id: String,
    /// The VPC's bridge: [`bridge_name`] of the VPC in this server's scope.
    pub bridge: String,
    /// The VPC's block.
    pub vpc: Block,
    /// Its subnet's block.
    pub subnet: Block,
    /// Its private address.
    pub address: Ipv4Addr,
    /// Its MAC address.
    pub mac: String,
}

/// Whether this host can make instance networks: root and `ip`.
pub fn available() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not running as root".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => Ok(()),
        _ => Err("ip (iproute2) is not installed".into()),
    }
}

/// 11 hex digits of a hash of `id`: interface names have at most 15 characters.
fn short(id: &str) -> String {
    let h = Sha256::digest(id.as_bytes());
    h.iter().map(|b| format!("{b:02x}")).collect::<String>()[..11].to_string()
}

/// The bridge of VPC `vpc_id` of the server whose data directory is `scope`: two servers on one
/// host never share a bridge (their default VPCs have the same ids).
pub fn bridge_name(scope: &str, vpc_id: &str) -> String {
    format!("ebsb{}", short(&format!("{scope}\0{vpc_id}")))
}

/// The host end of an instance's veth.
pub fn veth_name(instance_id: &str) -> String {
    format!("ebsv{}", short(instance_id))
}

/// The named network namespace of an instance.
pub fn netns_name(instance_id: &str) -> String {
    format!("ebs-{instance_id}")
}

/// Its path, which the instance's init joins.
pub fn netns_path(instance_id: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(netns_name(instance_id))
}

pub(crate) fn ip(args: &[&str]) -> Result<String, NetError> {
    let command = format!("ip {}", args.join(" "));
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| NetError {
            command: command.clone(),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(NetError {
            command,
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(crate) fn link_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

/// The IPv4 addresses of the host, as (interface, block, address).
fn host_addresses() -> Result<Vec<(String, Block, Ipv4Addr)>, NetError> {
    let out = ip(&["-o", "-4", "addr", "show"])?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let name = words.nth(1)?.to_string();
            let cidr = words.skip_while(|w| *w != "inet").nth(1)?;
            // The interface's own address, and the block it is in (parse masks the address).
            let address = cidr.split_once('/')?.0.parse().ok()?;
            Some((name, Block::parse(cidr)?, address))
        })
        .collect())
}

/// Makes the VPC's bridge (up, forwarding off) and gives it the subnet's router address, unless
/// another interface of the host has an address overlapping the subnet.
fn ensure_bridge(vpc_id: &str, bridge: &str, subnet: &Block) -> Result<(), NetError> {
    if !link_exists(bridge) {
        ip(&["link", "add", bridge, "type", "bridge"])?;
    }
    let forwarding = format!("/proc/sys/net/ipv4/conf/{bridge}/forwarding");
    fs::write(&forwarding, "0").map_err(|e| NetError {
        command: format!("echo 0 > {forwarding}"),
        detail: e.to_string(),
    })?;
    ip(&["link", "set", bridge, "up"])?;
    let router = Block {
        base: subnet.router(),
        prefix: subnet.prefix,
    };
    let addresses = host_addresses()?;
    let ours = addresses
        .iter()
        .any(|(name, b, a)| *name == bridge && *a == router.base && b.prefix == router.prefix);
    let clash = addresses
        .iter()
        .find(|(name, b, _)| *name != bridge && b.overlaps(subnet));
    match (ours, clash) {
        (true, _) => {}
        (false, Some((name, b, _))) => {
            tracing::warn!(
                vpc_id,
                subnet = %subnet,
                interface = name,
                address = %b,
                "the host already has an address overlapping this subnet: it reaches the subnet's instances only from inside their namespaces and through Elastic IPs"
            );
            // The router address all the same, without the route to the block (which the
            // other interface has): instances reach the host at it, and the Elastic IPs'
            // routes use it as their source.
            ip(&[
                "addr",
                "add",
                &router.to_string(),
                "dev",
                bridge,
                "noprefixroute",
            ])?;
        }
        (false, None) => {
            ip(&["addr", "add", &router.to_string(), "dev", bridge])?;
        }
    }
    Ok(())
}

/// Makes (or finds) the instance's namespace with its interface on its VPC's bridge; returns the
/// namespace's path.
pub fn ensure_instance(nic: &Interface) -> Result<PathBuf, NetError> {
    ensure_bridge(&nic.vpc_id, &nic.bridge, &nic.subnet)?;
    let bridge = &nic.bridge;
    let ns = netns_name(&nic.instance_id);
    let path = netns_path(&nic.instance_id);
    let veth = veth_name(&nic.instance_id);
    if path.exists() && link_exists(&veth) {
        // Its bridge may have been made again since (a restart of the server).
        ip(&["link", "set", &veth, "master", bridge, "up"])?;
        metadata_route(&ns, nic.subnet.router())?;
        guard(nic, &veth);
        return Ok(path);
    }
    if path.exists() {
        // Half made (a crash midway): start again.
        let _ = ip(&["netns", "del", &ns]);
    }
    ip(&["netns", "add", &ns])?;
    let made = (|| {
        ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ])?;
        ip(&["link", "set", &veth, "master", bridge, "up"])?;
        let n = |args: &[&str]| {
            let mut all = vec!["-n", ns.as_str()];
            all.extend_from_slice(args);
            ip(&all)
        };
        n(&["link", "set", "lo", "up"])?;
        n(&["link", "set", "eth0", "address", &nic.mac])?;
        let addr = format!("{}/{}", nic.address, nic.subnet.prefix);
        n(&["addr", "add", &addr, "dev", "eth0"])?;
        n(&["link", "set", "eth0", "up"])?;
        // The rest of the VPC on the same link (the VPC router of AWS routes between its
        // subnets; here they share one bridge). No default route: nothing leaves the VPC.
        if nic.vpc != nic.subnet {
            n(&["route", "add", &nic.vpc.to_string(), "dev", "eth0"])?;
        }
        metadata_route(&ns, nic.subnet.router())?;
        guard(nic, &veth);
        Ok(())
    })();
    if let Err(e) = made {
        let _ = ip(&["netns", "del", &ns]);
        return Err(e);
    }
    Ok(path)
}

/// The way to the metadata service inside namespace `ns`: a route to 169.254.169.254 on the
/// link, and a DNAT (an nftables table of the namespace) of its port 80 to the subnet's router
/// address, where the server listens on the bridge. The address itself is never the host's: a
/// host that is itself a cloud VM keeps reaching its own metadata service there.
fn metadata_route(ns: &str, router: Ipv4Addr) -> Result<(), NetError> {
    ip(&[
        "-n",
        ns,
        "route",
        "replace",
        &format!("{METADATA_ADDRESS}/32"),
        "dev",
        "eth0",
    ])?;
    let script = format!(
        "table ip ebs_imds {{}}\n\
         delete table ip ebs_imds\n\
         table ip ebs_imds {{\n\
         \tchain output {{ type nat hook output priority -100; policy accept; \
         ip daddr {METADATA_ADDRESS} tcp dport 80 dnat to {router}:80; }}\n\
         }}\n"
    );
    if let Err(e) =
        crate::elastic::run_with_input("ip", &["netns", "exec", ns, "nft", "-f", "-"], &script)
    {
        // Without nftables the instance runs, without a metadata service.
        tracing::warn!(namespace = ns, error = %e, "the instance's metadata service is not reachable (nft)");
    }
    Ok(())
}

/// Removes an instance's namespace (its veth goes with it). Nothing to do if it has none.
pub fn remove_instance(instance_id: &str) {
    if netns_path(instance_id).exists()
        && let Err(e) = ip(&["netns", "del", &netns_name(instance_id)])
    {
        tracing::warn!(instance_id, error = %e, "removing the instance's network namespace");
    }
    let table = guard_table(instance_id);
    let _ = crate::elastic::run_with_input(
        "nft",
        &["-f", "-"],
        &format!("table bridge {table} {{}}\ndelete table bridge {table}\n"),
    );
}

/// The nftables table that keeps an instance to its own addresses.
fn guard_table(instance_id: &str) -> String {
    format!("ebsg_{}", short(instance_id))
}

/// EC2's source/destination check on the instance's port of the bridge: what enters from its
/// veth must carry its MAC and its private address (IP and ARP), so an instance cannot take a
/// neighbour's address (and with it, say, the neighbour's metadata). One bridge-family table per
/// instance, made again whole each time. Without nftables the port is unguarded (logged).
fn guard(nic: &Interface, veth: &str) {
    let table = guard_table(&nic.instance_id);
    let (mac, addr) = (&nic.mac, nic.address);
    let script = format!(
        "table bridge {table} {{}}\n\
         delete table bridge {table}\n\
         table bridge {table} {{\n\
         \tchain prerouting {{\n\
         \t\ttype filter hook prerouting priority -200; policy accept;\n\
         \t\tiifname \"{veth}\" ether saddr != {mac} drop\n\
         \t\tiifname \"{veth}\" ether type ip ip saddr != {addr} drop\n\
         \t\tiifname \"{veth}\" ether type arp arp saddr ip != {{ {addr}, 0.0.0.0 }} drop\n\
         \t\tiifname \"{veth}\" ether type arp arp saddr ether != {mac} drop\n\
         \t}}\n\
         }}\n"
    );
    if let Err(e) = crate::elastic::run_with_input("nft", &["-f", "-"], &script) {
        tracing::warn!(instance_id = %nic.instance_id, error = %e, "the instance's port is not guarded against address spoofing (nft)");
    }
}

/// Takes a deleted subnet's router address off its VPC's bridge (so a later block that overlaps
/// it is not routed into the bridge).
pub fn remove_router(bridge: &str, subnet: &Block) {
    if link_exists(bridge) {
        let router = Block {
            base: subnet.router(),
            prefix: subnet.prefix,
        };
        let _ = ip(&["addr", "del", &router.to_string(), "dev", bridge]);
    }
}

/// Removes a VPC's bridge, if it has one.
pub fn remove_bridge(bridge: &str) {
    if link_exists(bridge)
        && let Err(e) = ip(&["link", "del", bridge])
    {
        tracing::warn!(bridge, error = %e, "removing a VPC's bridge");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_parse_contain_and_overlap() {
        let vpc = Block::parse("172.31.0.0/16").unwrap();
        let sub = Block::parse("172.31.16.0/20").unwrap();
        assert!(vpc.contains("172.31.200.1".parse().unwrap()));
        assert!(!sub.contains("172.31.0.4".parse().unwrap()));
        assert!(vpc.overlaps(&sub) && sub.overlaps(&vpc));
        assert!(!sub.overlaps(&Block::parse("10.0.0.0/8").unwrap()));
        assert_eq!(sub.router(), "172.31.16.1".parse::<Ipv4Addr>().unwrap());
        assert_eq!(sub.to_string(), "172.31.16.0/20");
        assert_eq!(Block::parse("1.2.3.4/33"), None);
        assert_eq!(Block::parse("10.0.0.0/+8"), None);
        assert_eq!(Block::parse("nonsense"), None);
        assert_eq!(Block::parse("10.0.1.7/16"), Block::parse("10.0.0.0/16"));
        assert_eq!(sub.size(), 4096);
        assert_eq!(sub.nth(4).to_string(), "172.31.16.4");
    }

    #[test]
    fn interface_names_fit_the_kernels_limit() {
        assert!(bridge_name("/var/lib/ebs", "vpc-0123456789abcdef0").len() <= 15);
        assert_ne!(
            bridge_name("/a", "vpc-0123456789abcdef0"),
            bridge_name("/b", "vpc-0123456789abcdef0")
        );
        assert!(veth_name("i-0123456789abcdef0").len() <= 15);
        assert_ne!(
            veth_name("i-0123456789abcdef0"),
            veth_name("i-0123456789abcdef1")
        );
    }
}
