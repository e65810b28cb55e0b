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

#[test]
fn the_debian_ami_boots_keeps_its_changes_and_images_them() {
    if !require_boot() {
        return;
    }
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
        .arg(&ami));
    out.assert_success();
    server.stop();
    // Nothing of the instances is left on the host.
    let loops = run(Command::new("losetup").arg("-l"));
    assert!(
        !loops.stdout.contains(dir.path().to_str().unwrap()),
        "loop devices left: {}",
        loops.stdout
    );
}
