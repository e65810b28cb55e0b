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

/// Whether this host can wire Elastic IPs: root, `ip` and `nft` (looked for once).
pub fn available() -> Result<(), String> {
    static AVAILABLE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    AVAILABLE
        .get_or_init(|| {
            crate::network::available()?;
            match Command::new("nft").arg("--version").output() {
                Ok(o) if o.status.success() => Ok(()),
                _ => Err("nft (nftables) is not installed".into()),
            }
        })
        .clone()
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
    // 24 bits of the name's hash: two bridges (of this server or another) sharing a mark
    // would share a table.
    0x0e00_0000 | u32::from_be_bytes([0, h[0], h[1], h[2]])
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
    // What is there now: the pool's routes, the marks' rules and tables.
    let rules = mark_rules()?;
    let tables = mark_tables(bridges)?;
    // Two `ip` batches: first what goes (forced: a race with another change may have taken it
    // already), then what is added or replaced. Nothing that stays is taken down meanwhile, so
    // the other addresses' connections keep their routes through a change.
    let mut clear = String::new();
    for (dst, dev) in pool_routes(pool)? {
        let wanted = live.iter().any(|m| m.public == dst && m.bridge == dev);
        if !wanted && bridges.contains(&dev) {
            clear.push_str(&format!("route del {dst}/32 dev {dev}\n"));
        }
    }
    let mut set = String::new();
    for m in &live {
        set.push_str(&format!(
            "route replace {}/32 dev {} src {}\n",
            m.public, m.bridge, m.router
        ));
    }
    for bridge in bridges {
        let mark = mark_of(bridge);
        let mine: Vec<&&Mapping> = live.iter().filter(|m| &m.bridge == bridge).collect();
        let ruled = rules.iter().filter(|r| **r == mark).count();
        if mine.is_empty() {
            for _ in 0..ruled {
                clear.push_str(&format!("rule del fwmark {mark} lookup {mark}\n"));
            }
        } else if ruled == 0 {
            set.push_str(&format!(
                "rule add fwmark {mark} lookup {mark} priority 9000\n"
            ));
        }
        for dst in tables.iter().filter(|(t, _)| *t == mark).map(|(_, d)| d) {
            if !mine.iter().any(|m| m.private == *dst) {
                clear.push_str(&format!("route del {dst}/32 table {mark}\n"));
            }
        }
        for m in mine {
            set.push_str(&format!(
                "route replace {}/32 dev {bridge} src {} table {mark}\n",
                m.private, m.router
            ));
        }
    }
    ip_batch(&clear, true)?;
    ip_batch(&set, false)
}

/// The marks of the host's `fwmark … lookup …` rules (one entry per rule).
fn mark_rules() -> Result<Vec<u32>, NetError> {
    let out = ip(&["-j", "rule", "show"])?;
    let rows: Vec<serde_json::Value> = serde_json::from_str(out.trim()).unwrap_or_default();
    Ok(rows
        .iter()
        .filter_map(|r| {
            let mark = r.get("fwmark")?.as_str()?;
            u32::from_str_radix(mark.trim_start_matches("0x"), 16).ok()
        })
        .collect())
}

/// The routes of the bridges' mark tables, as (table, destination).
fn mark_tables(bridges: &[String]) -> Result<Vec<(u32, Ipv4Addr)>, NetError> {
    let mut out = Vec::new();
    for bridge in bridges {
        let mark = mark_of(bridge);
        // A table never used may not exist yet: nothing in it.
        let text =
            ip(&["-4", "-j", "route", "show", "table", &mark.to_string()]).unwrap_or_default();
        let rows: Vec<serde_json::Value> = serde_json::from_str(text.trim()).unwrap_or_default();
        out.extend(rows.iter().filter_map(|r| {
            let dst = r.get("dst")?.as_str()?;
            Some((mark, dst.trim_end_matches("/32").parse().ok()?))
        }));
    }
    Ok(out)
}

/// Takes this server's table, its routes in `pool`, and its bridges' rules away (at shutdown).
pub fn remove(table: &str, pool: &Block, bridges: &[String]) {
    if let Err(e) = nft(&format!("table ip {table} {{}}\ndelete table ip {table}\n")) {
        tracing::warn!(table, error = %e, "removing the Elastic IP table");
    }
    let mut clear = String::new();
    if let Ok(routes) = pool_routes(pool) {
        for (dst, dev) in routes.into_iter().filter(|(_, dev)| bridges.contains(dev)) {
            clear.push_str(&format!("route del {dst}/32 dev {dev}\n"));
        }
    }
    for bridge in bridges {
        let mark = mark_of(bridge);
        clear.push_str(&format!(
            "rule del fwmark {mark} lookup {mark}\nrule del fwmark {mark} lookup {mark}\nroute flush table {mark}\n"
        ));
    }
    if let Err(e) = ip_batch(&clear, true) {
        tracing::warn!(error = %e, "removing the Elastic IP routes");
    }
}

/// Runs `commands` (one `ip` command a line) in one `ip -batch`; with `forced`, commands that
/// fail are skipped (the batch goes on and only a failure to run `ip` is an error).
fn ip_batch(commands: &str, forced: bool) -> Result<(), NetError> {
    if commands.is_empty() {
        return Ok(());
    }
    let mut args = vec!["-batch", "-"];
    if forced {
        args.insert(0, "-force");
    }
    match run_with_input("ip", &args, commands) {
        Err(e) if !forced || e.command.starts_with("spawn") => Err(e),
        _ => Ok(()),
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
    run_with_input("nft", &["-f", "-"], script)
}

/// Runs `program args` with `input` on its stdin; an error names the command and its stderr
/// (or, starting with `spawn`, why it could not run).
pub(crate) fn run_with_input(program: &str, args: &[&str], input: &str) -> Result<(), NetError> {
    let command = format!("{program} {}", args.join(" "));
    let err = |detail: String| NetError {
        command: command.clone(),
        detail,
    };
    let spawn_err = |e: std::io::Error| NetError {
        command: format!("spawn {command}"),
        detail: e.to_string(),
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(input.as_bytes())
        .map_err(spawn_err)?;
    let out = child.wait_with_output().map_err(spawn_err)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(err(String::from_utf8_lossy(&out.stderr).trim().to_string()))
    }
}
