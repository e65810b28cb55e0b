//! Elastic IP addresses on the host. An associated address is reachable from this host only:
//! a host route sends it into its instance's VPC bridge, and an nftables table of this server
//! DNATs it to the instance's private address. Connections made on the host are marked by
//! their Elastic IP's bridge, and each bridge's mark selects a routing table of its own that
//! holds its instances' private addresses, so a translated packet leaves through the right
//! bridge even when another VPC (of this server or another on the host) has the same block.
//! The subnet's router address is the source, so the instance answers on its link without a
//! default route.
//!
//! Reassociating replaces the maps in one nftables transaction: new connections go to the new
//! instance at once, established ones keep their translation until they end. Addresses of the
//! pool that are not associated have no route: connecting fails at once.
//!
//! Nothing here forwards a packet off the machine: the pool is never routed anywhere but into
//! this server's bridges, which have forwarding off, and only connections made on the host
//! are translated.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use crate::network::{Block, NetError, ip, link_exists};

/// One associated address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// The Elastic IP.
    pub public: Ipv4Addr,
    /// The instance's private address.
    pub private: Ipv4Addr,
    /// The instance's VPC bridge.
    pub bridge: String,
    /// Its subnet's router address (on the bridge): the source the host uses.
    pub router: Ipv4Addr,
}

/// Whether this host can wire Elastic IPs: root, `ip` and `nft`.
pub fn available() -> Result<(), String> {
    crate::network::available()?;
    match Command::new("nft").arg("--version").output() {
        Ok(o) if o.status.success() => Ok(()),
        _ => Err("nft (nftables) is not installed".into()),
    }
}

/// The nftables table of the server whose data directory is `scope`.
pub fn table_name(scope: &str) -> String {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(scope.as_bytes());
    let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
    format!("ebs_eip_{}", &hex[..12])
}

/// The packet mark and routing table of `bridge`'s Elastic IPs.
fn mark_of(bridge: &str) -> u32 {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(bridge.as_bytes());
    0x0eb0_0000 | u32::from(u16::from_be_bytes([h[0], h[1]]))
}

/// Makes the host match `maps`: the table's maps, the routes of `pool`, and the marks' rules
/// and routing tables of `bridges` (this server's bridges; routes on other interfaces are left
/// alone). Mappings whose bridge does not exist (no instance of that VPC has booted) get
/// nothing.
pub fn apply(
    table: &str,
    pool: &Block,
    maps: &[Mapping],
    bridges: &[String],
) -> Result<(), NetError> {
    let live: Vec<&Mapping> = maps.iter().filter(|m| link_exists(&m.bridge)).collect();
    let targets: Vec<String> = live
        .iter()
        .map(|m| format!("{} : {}", m.public, m.private))
        .collect();
    let marks: Vec<String> = live
        .iter()
        .map(|m| format!("{} : {:#x}", m.public, mark_of(&m.bridge)))
        .collect();
    // Made, deleted and made again in one transaction: the maps change atomically. The mark
    // is set on every packet (before NAT, on the Elastic IP), so each reroute after the
    // translation finds the bridge's table. With nothing mapped, the table just goes.
    let mut script = format!("table ip {table} {{}}\ndelete table ip {table}\n");
    if !live.is_empty() {
        script.push_str(&format!(
            "table ip {table} {{\n\
             \tmap eip {{ type ipv4_addr : ipv4_addr; elements = {{ {} }} }}\n\
             \tmap marks {{ type ipv4_addr : mark; elements = {{ {} }} }}\n\
             \tchain route_mark {{ type route hook output priority -150; policy accept; ip daddr {pool} meta mark set ip daddr map @marks; }}\n\
             \tchain output {{ type nat hook output priority -100; policy accept; ip daddr {pool} dnat to ip daddr map @eip; }}\n\
             }}\n",
            targets.join(", "),
            marks.join(", ")
        ));
    }
    nft(&script)?;
    for (dst, dev) in pool_routes(pool)? {
        let wanted = live.iter().any(|m| m.public == dst && m.bridge == dev);
        if !wanted && bridges.contains(&dev) {
            ip(&["route", "del", &format!("{dst}/32"), "dev", &dev])?;
        }
    }
    for m in &live {
        ip(&[
            "route",
            "replace",
            &format!("{}/32", m.public),
            "dev",
            &m.bridge,
            "src",
            &m.router.to_string(),
        ])?;
    }
    for bridge in bridges {
        let mark = mark_of(bridge).to_string();
        // Made again from scratch: a rule and a table per bridge, whatever was there before.
        while ip(&["rule", "del", "fwmark", &mark, "lookup", &mark]).is_ok() {}
        let _ = ip(&["route", "flush", "table", &mark]);
        let mine: Vec<&&Mapping> = live.iter().filter(|m| &m.bridge == bridge).collect();
        if mine.is_empty() {
            continue;
        }
        ip(&[
            "rule", "add", "fwmark", &mark, "lookup", &mark, "priority", "9000",
        ])?;
        for m in mine {
            ip(&[
                "route",
                "replace",
                &format!("{}/32", m.private),
                "dev",
                bridge,
                "src",
                &m.router.to_string(),
                "table",
                &mark,
            ])?;
        }
    }
    Ok(())
}

/// Takes this server's table, its routes in `pool`, and its bridges' rules away (at shutdown).
pub fn remove(table: &str, pool: &Block, bridges: &[String]) {
    if let Err(e) = nft(&format!("table ip {table} {{}}\ndelete table ip {table}\n")) {
        tracing::warn!(table, error = %e, "removing the Elastic IP table");
    }
    if let Ok(routes) = pool_routes(pool) {
        for (dst, dev) in routes.into_iter().filter(|(_, dev)| bridges.contains(dev)) {
            let _ = ip(&["route", "del", &format!("{dst}/32"), "dev", &dev]);
        }
    }
    for bridge in bridges {
        let mark = mark_of(bridge).to_string();
        while ip(&["rule", "del", "fwmark", &mark, "lookup", &mark]).is_ok() {}
        let _ = ip(&["route", "flush", "table", &mark]);
    }
}

/// The host routes inside `pool`, as (destination, device).
fn pool_routes(pool: &Block) -> Result<Vec<(Ipv4Addr, String)>, NetError> {
    let out = ip(&["-4", "-j", "route", "show", "root", &pool.to_string()])?;
    let rows: Vec<serde_json::Value> = serde_json::from_str(out.trim()).unwrap_or_default();
    Ok(rows
        .iter()
        .filter_map(|r| {
            let dst = r.get("dst")?.as_str()?;
            let dst: Ipv4Addr = dst.trim_end_matches("/32").parse().ok()?;
            let dev = r.get("dev")?.as_str()?.to_string();
            Some((dst, dev))
        })
        .collect())
}

fn nft(script: &str) -> Result<(), NetError> {
    let err = |detail: String| NetError {
        command: "nft -f -".to_string(),
        detail,
    };
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| err(e.to_string()))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(script.as_bytes())
        .map_err(|e| err(e.to_string()))?;
    let out = child.wait_with_output().map_err(|e| err(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(err(String::from_utf8_lossy(&out.stderr).trim().to_string()))
    }
}
