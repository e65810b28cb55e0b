//! Instances that boot their AMI: the Debian AMI from `scripts/make-debian-ami`, launched through
//! the AWS endpoint, runs inside its root volume in its own namespaces; boto3 drives it and
//! `nsenter` looks inside (see `tests/aws/boto3_boot.py` for what is checked); key pairs, the
//! metadata service, SSH and Elastic IPs reach it (`tests/aws/boto3_reach.py`).

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// Root, FUSE and loop devices, and every tool the boot and its test use, or a loud skip.
fn require_boot() -> bool {
    if !require_root_fuse_loop()
        || !require_tools(&[
            "aws",
            "mmdebstrap",
            "nbdfuse",
            "losetup",
            "fusermount3",
            "nsenter",
            "dpkg-deb",
        ])
    {
        return false;
    }
    let boto3 = Command::new("python3")
        .args(["-c", "import boto3"])
        .output()
        .is_ok_and(|o| o.status.success());
    boto3 || skip("python3 cannot import boto3 (pip install boto3)")
}

/// Builds (or takes from its cache) the Debian AMI and registers it; returns its id.
fn debian_ami(server: &Server) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/make-debian-ami");
    let out = run(Command::new(script).args(["--endpoint-url", &server.aws_url()]));
    out.assert_success();
    out.stdout
        .lines()
        .nth(1)
        .expect("an AMI id")
        .trim()
        .to_string()
}

/// Removes what an earlier run whose server was killed may have left: instances whose data
/// directory is gone (their init processes, `nbdfuse` mounts and loop devices), instance
/// namespaces and VPC bridges (a stale bridge holding 172.31.0.1 would keep this run's bridge
/// from getting it).
fn remove_leftovers() {
    let gone = |path: &str| !Path::new(path).exists();
    let ps = run(Command::new("ps").args(["-eo", "pid=,args="]));
    for line in ps.stdout.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let stale = match words.as_slice() {
            [pid, _, "__instance-init", config] if gone(config) => Some(*pid),
            [pid, "nbdfuse", file, ..] if gone(file) => Some(*pid),
            _ => None,
        };
        if let Some(pid) = stale {
            run(Command::new("kill").args(["-9", pid]));
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for point in mounts.lines().filter_map(|l| l.split(' ').nth(4)) {
        if point.contains("/instances/i-") && point.contains("/disks/") {
            run(Command::new("fusermount3").args(["-u", "-z", point]));
        }
    }
    let loops = run(Command::new("losetup").args(["-l", "-n", "-O", "NAME,BACK-FILE"]));
    for line in loops.stdout.lines() {
        if let [name, file] = line.split_whitespace().collect::<Vec<_>>().as_slice()
            && file.contains("/disks/nvme")
            && gone(file)
        {
            run(Command::new("losetup").args(["-d", name]));
        }
    }
    let netns = run(Command::new("ip").args(["netns", "list"]));
    for name in netns
        .stdout
        .split_whitespace()
        .filter(|w| w.starts_with("ebs-i-"))
    {
        run(Command::new("ip").args(["netns", "del", name]));
    }
    // Elastic IP wiring of a server that was killed (its nftables table and routing rules) and
    // its instances' port guards.
    if Command::new("nft").arg("--version").output().is_ok() {
        let tables = run(Command::new("nft").args(["list", "tables"]));
        for name in tables
            .stdout
            .split_whitespace()
            .filter(|w| w.starts_with("ebs_eip_"))
        {
            run(Command::new("nft").args(["delete", "table", "ip", name]));
        }
        // Instances' port guards (bridge family).
        for name in tables
            .stdout
            .split_whitespace()
            .filter(|w| w.starts_with("ebsg_"))
        {
            run(Command::new("nft").args(["delete", "table", "bridge", name]));
        }
    }
    let rules = run(Command::new("ip").args(["rule", "show"]));
    for line in rules.stdout.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let Some(i) = words.iter().position(|w| *w == "fwmark")
            && words.get(i + 1).is_some_and(|m| m.starts_with("0xeb"))
        {
            let mark = words[i + 1];
            run(Command::new("ip").args(["rule", "del", "fwmark", mark]));
        }
    }
    let links = run(Command::new("ip").args(["-o", "link", "show"]));
    for name in links
        .stdout
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n))
        .filter(|n| n.starts_with("ebsb"))
    {
        run(Command::new("ip").args(["link", "del", name]));
    }
}

/// A booting test's setup: a clean host, a server with an NBD socket in a new temporary
/// directory, and the Debian AMI registered.
struct Setup {
    /// Held for the whole test: the booting tests run one at a time. Their servers would
    /// otherwise share the default VPC's block on one host, and only one bridge can hold its
    /// route (the host could not reach the others' instances directly).
    serial: std::sync::MutexGuard<'static, ()>,
    dir: tempfile::TempDir,
    data: std::path::PathBuf,
    server: Server,
    ami: String,
}

impl Setup {
    fn new() -> Setup {
        Setup::with_pool(None)
    }

    /// A setup whose server hands out Elastic IPs from `pool` (the tests run at once, and two
    /// servers must not hand out one address).
    fn with_pool(pool: Option<&str>) -> Setup {
        static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        // Once per test process: a second cleanup would tear down what a test before left
        // for its own checks.
        static CLEAN: std::sync::Once = std::sync::Once::new();
        CLEAN.call_once(remove_leftovers);
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        if let Some(pool) = pool {
            std::fs::write(dir.path().join("eip-pool"), pool).unwrap();
        }
        let server = restart(dir.path(), &data);
        let ami = debian_ami(&server);
        Setup {
            serial,
            dir,
            data,
            server,
            ami,
        }
    }

    /// The server's flags: its NBD socket in `dir`; Elastic IPs from the /28 of TEST-NET-3
    /// named in `dir` (see [`Setup::with_pool`]), else from one no test allocates from.
    fn args_in(dir: &Path) -> [String; 4] {
        let pool = std::fs::read_to_string(dir.join("eip-pool"))
            .unwrap_or_else(|_| "203.0.113.240/28".into());
        [
            "--nbd-socket".into(),
            dir.join("nbd.sock").display().to_string(),
            "--eip-pool".into(),
            pool,
        ]
    }
}

/// A server on the data directory `data` of a [`Setup`] in `dir` (again, after the last one
/// stopped).
fn restart(dir: &Path, data: &Path) -> Server {
    let args = Setup::args_in(dir);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start_with_args(data, &args)
}

#[test]
fn the_debian_ami_boots_keeps_its_changes_and_images_them() {
    if !require_boot() {
        return;
    }
    let Setup {
        serial: _serial,
        dir,
        data,
        server,
        ami,
    } = Setup::new();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/aws/boto3_boot.py");
    let out = run(Command::new("python3")
        .arg(script)
        .arg(server.aws_url())
        .arg(&ami)
        .arg(server.metrics_addr.to_string()));
    out.assert_success();
    // This server's instances and VPCs, to look for on the host once it has stopped (the
    // other tests' servers run meanwhile).
    let instances = aws_text(
        &server,
        &[
            "ec2",
            "describe-instances",
            "--query",
            "Reservations[].Instances[].InstanceId",
        ],
    );
    let vpcs = aws_text(
        &server,
        &["ec2", "describe-vpcs", "--query", "Vpcs[].VpcId"],
    );
    server.stop();
    // Nothing of the instances is left on the host: no loop device, namespace or bridge.
    let loops = run(Command::new("losetup").arg("-l"));
    assert!(
        !loops.stdout.contains(dir.path().to_str().unwrap()),
        "loop devices left: {}",
        loops.stdout
    );
    for id in instances.split_whitespace() {
        let ns = instance_manager::network::netns_path(id);
        assert!(!ns.exists(), "namespace left: {}", ns.display());
    }
    let scope = data.display().to_string();
    for vpc in vpcs.split_whitespace() {
        let bridge = instance_manager::network::bridge_name(&scope, vpc);
        assert!(
            !Path::new("/sys/class/net").join(&bridge).exists(),
            "bridge {bridge} of {vpc} left"
        );
    }
}

/// The first line sshd sends on `ip`:22, retried while the instance starts it.
fn ssh_banner(ip: &str) -> String {
    use std::io::{BufRead, BufReader};
    let addr: std::net::SocketAddr = format!("{ip}:22").parse().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let line = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2))
            .and_then(|s| {
                s.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
                let mut line = String::new();
                BufReader::new(s).read_line(&mut line)?;
                Ok(line)
            });
        match line {
            Ok(l) if !l.is_empty() => return l,
            _ if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(300))
            }
            other => panic!("no SSH banner on {addr}: {other:?}"),
        }
    }
}

/// `aws … --output text ARGS` as the default account; its trimmed stdout.
fn aws_text(server: &Server, args: &[&str]) -> String {
    let out = run(server
        .aws_cli("test", "test")
        .args(["--output", "text"])
        .args(args));
    out.assert_success();
    out.stdout.trim().to_string()
}

/// The host pids of the init processes (leader, PID 1) of `instance_id`, if it runs.
fn init_pids(instance_id: &str) -> Vec<u32> {
    let needle = format!("{instance_id}/boot.json");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let c = String::from_utf8_lossy(&c);
                c.contains("__instance-init") && c.contains(&needle)
            })
        })
        .collect()
}

/// The instance's PID 1 once it has booted.
fn booted_init(instance_id: &str) -> u32 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let pids = init_pids(instance_id);
        for pid in &pids {
            if Path::new(&format!("/proc/{pid}/root/run/ebs-init/booted")).exists() {
                return *pid;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{instance_id} never booted"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn inside(init: u32, script: &str) -> String {
    let out = run(Command::new("nsenter").args([
        "-t",
        &init.to_string(),
        "-a",
        "--",
        "/bin/sh",
        "-c",
        script,
    ]));
    out.assert_success();
    out.stdout
}

/// kill -9 of the server under a running booted instance: what the instance wrote and synced
/// was flushed to its volume, and survives; the restarted server kills the orphaned instance,
/// cleans its disks off the host and marks it stopped; it starts again with the file there.
/// Then a clean stop of the server: even what was not synced is there at the next start.
#[test]
fn a_booted_instance_outlives_a_crash_of_the_server_as_a_stopped_instance() {
    if !require_boot() {
        return;
    }
    let Setup {
        serial: _serial,
        dir,
        data,
        server,
        ami,
    } = Setup::with_pool(Some("203.0.113.16/28"));
    let id = aws_text(
        &server,
        &[
            "ec2",
            "run-instances",
            "--image-id",
            &ami,
            "--instance-type",
            "t3.micro",
            "--query",
            "Instances[0].InstanceId",
        ],
    );
    let init = booted_init(&id);
    // An Elastic IP, wired on the host when the server dies.
    let alloc = aws_text(
        &server,
        &["ec2", "allocate-address", "--query", "AllocationId"],
    );
    aws_text(
        &server,
        &[
            "ec2",
            "associate-address",
            "--allocation-id",
            &alloc,
            "--instance-id",
            &id,
        ],
    );
    let eip = aws_text(
        &server,
        &[
            "ec2",
            "describe-addresses",
            "--query",
            "Addresses[0].PublicIp",
        ],
    );
    assert!(ssh_banner(&eip).starts_with("SSH-2.0-"));
    inside(init, "echo before-crash > /root/f && sync");
    // Written but never synced: may or may not survive; the filesystem must mount either way.
    inside(init, "echo unsynced > /root/g");
    server.kill9();

    let server = restart(dir.path(), &data);
    let state = aws_text(
        &server,
        &[
            "ec2",
            "describe-instances",
            "--instance-ids",
            &id,
            "--query",
            "Reservations[0].Instances[0].[State.Name,StateReason.Code]",
        ],
    );
    assert_eq!(state, "stopped\tServer.InternalError");
    assert!(
        init_pids(&id).is_empty(),
        "the orphaned instance still runs"
    );
    let loops = run(Command::new("losetup").arg("-l"));
    assert!(
        !loops.stdout.contains(data.to_str().unwrap()),
        "loop devices left: {}",
        loops.stdout
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(data.to_str().unwrap()),
        "mounts left: {mounts}"
    );

    aws_text(&server, &["ec2", "start-instances", "--instance-ids", &id]);
    let init = booted_init(&id);
    assert_eq!(inside(init, "cat /root/f"), "before-crash\n");
    // The address kept its association and its wiring: sshd answers on it again.
    assert!(ssh_banner(&eip).starts_with("SSH-2.0-"));

    // A clean stop of the server shuts the instance down through its disks: what it wrote
    // without a sync is there at the next start.
    inside(init, "echo at-clean-stop > /root/h");
    server.stop();
    let server = restart(dir.path(), &data);
    aws_text(&server, &["ec2", "start-instances", "--instance-ids", &id]);
    let init = booted_init(&id);
    assert_eq!(inside(init, "cat /root/h"), "at-clean-stop\n");
    aws_text(
        &server,
        &["ec2", "terminate-instances", "--instance-ids", &id],
    );
    server.stop();
}

/// The EC2 guide's SSH workflow and Elastic IP failover, key pairs and the metadata service
/// (see `tests/aws/boto3_reach.py`); afterwards no Elastic IP wiring is left on the host.
#[test]
fn key_pairs_the_metadata_service_and_elastic_ips_reach_booted_instances() {
    if !require_boot()
        || !require_tools(&["nft", "ssh", "ssh-keygen", "openssl", "puttygen", "curl"])
    {
        return;
    }
    let Setup {
        serial: _serial,
        dir: _dir,
        data,
        server,
        ami,
    } = Setup::with_pool(Some("203.0.113.0/28"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/aws/boto3_reach.py");
    let out = run(Command::new("python3")
        .arg(script)
        .arg(server.aws_url())
        .arg(&ami));
    out.assert_success();
    server.stop();
    // This server's table.
    let table = instance_manager::elastic::table_name(&data.display().to_string());
    let tables = run(Command::new("nft").args(["list", "tables"]));
    assert!(
        !tables.stdout.contains(&table),
        "Elastic IP table {table} left: {}",
        tables.stdout
    );
    let routes = run(Command::new("ip").args(["route", "show", "root", "203.0.113.0/28"]));
    assert!(
        routes.stdout.trim().is_empty(),
        "routes left: {}",
        routes.stdout
    );
}

/// StopInstances, RebootInstances, DetachVolume and AttachVolume on one booted instance at once,
/// three rounds (see `tests/aws/boto3_boot_races.py`).
#[test]
fn racing_calls_on_a_booted_instance_leave_it_consistent() {
    if !require_boot() {
        return;
    }
    let Setup {
        serial: _serial,
        dir: _dir,
        data,
        server,
        ami,
    } = Setup::new();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/aws/boto3_boot_races.py");
    let out = run(Command::new("python3")
        .arg(script)
        .arg(server.aws_url())
        .arg(&ami)
        .arg(&data));
    out.assert_success();
    eprintln!("{}", out.stdout);
    server.stop();
}
