//! Instances that boot their AMI: the Debian AMI from `scripts/make-debian-ami`, launched through
//! the AWS endpoint, runs inside its root volume in its own namespaces; boto3 drives it and
//! `nsenter` looks inside (see `tests/aws/boto3_boot.py` for what is checked).

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

fn aws_endpoint(server: &Server) -> String {
    format!("http://{}", server.aws_addr)
}

/// Builds (or takes from its cache) the Debian AMI and registers it; returns its id.
fn debian_ami(server: &Server) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/make-debian-ami");
    let out = run(Command::new(script).args(["--endpoint-url", &aws_endpoint(server)]));
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

#[test]
fn the_debian_ami_boots_keeps_its_changes_and_images_them() {
    if !require_boot() {
        return;
    }
    remove_leftovers();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("nbd.sock");
    let server = Server::start_with_args(
        &dir.path().join("data"),
        &["--nbd-socket", socket.to_str().unwrap()],
    );
    let ami = debian_ami(&server);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/aws/boto3_boot.py");
    let out = run(Command::new("python3")
        .arg(script)
        .arg(aws_endpoint(&server))
        .arg(&ami)
        .arg(server.metrics_addr.to_string()));
    out.assert_success();
    server.stop();
    // Nothing of the instances is left on the host: no loop device, namespace or bridge.
    let loops = run(Command::new("losetup").arg("-l"));
    assert!(
        !loops.stdout.contains(dir.path().to_str().unwrap()),
        "loop devices left: {}",
        loops.stdout
    );
    let netns = run(Command::new("ip").args(["netns", "list"]));
    assert!(
        !netns.stdout.contains("ebs-i-"),
        "namespaces left: {}",
        netns.stdout
    );
    let bridges = run(Command::new("ip").args(["-o", "-4", "addr", "show"]));
    assert!(
        !bridges
            .stdout
            .lines()
            .any(|l| l.contains("ebsb") && l.contains("172.31.")),
        "bridges left: {}",
        bridges.stdout
    );
}
