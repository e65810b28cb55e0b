//! The AWS endpoint against the real clients: the aws CLI and boto3 drive volumes end to end
//! (waiters, filters, paging, `--query`), errors carry the codes botocore parses, bad input gets
//! a clear 4xx and the server keeps serving, and with `--aws-credentials` only correctly signed,
//! fresh requests from listed keys get through.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use proto::ebs::v1 as pb;

fn endpoint(server: &Server) -> String {
    server.aws_url()
}

/// `tests/aws/raw.py`: one raw request; (HTTP status, error code or `-`).
fn raw(
    server: &Server,
    key: (&str, &str),
    mode: &str,
    body: Option<&str>,
    service: &str,
) -> (u16, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/aws/raw.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script)
        .arg(endpoint(server))
        .arg(mode)
        .args(body)
        .env("AWS_ACCESS_KEY_ID", key.0)
        .env("AWS_SECRET_ACCESS_KEY", key.1)
        .env("SERVICE", service);
    let out = run(&mut cmd);
    out.assert_success();
    let mut w = out.stdout.split_whitespace();
    let status = w.next().unwrap().parse().unwrap();
    (status, w.next().unwrap_or("-").to_string())
}

#[test]
fn the_aws_cli_drives_volumes_end_to_end() {
    if !require_aws_clients() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());

    let me = json(&aws(&server, &["sts", "get-caller-identity"]));
    assert_eq!(me["Account"], "000000000000");
    let me = json(&aws_as(
        &server,
        "123456789012",
        "x",
        &["sts", "get-caller-identity"],
    ));
    assert_eq!(me["Account"], "123456789012");

    let v = json(&aws(
        &server,
        &[
            "ec2",
            "create-volume",
            "--availability-zone",
            AZ,
            "--size",
            "8",
            "--volume-type",
            "gp3",
            "--iops",
            "4000",
            "--tag-specifications",
            "ResourceType=volume,Tags=[{Key=Name,Value=web}]",
        ],
    ));
    let id = v["VolumeId"].as_str().unwrap().to_string();
    assert!(id.starts_with("vol-"), "{v}");
    assert_eq!(v["Size"], 8);
    assert_eq!(v["Iops"], 4000);
    assert_eq!(v["Throughput"], 125);
    assert_eq!(v["Tags"][0]["Value"], "web");
    // EC2's answer; the waiter then sees it `available` (the states trail for 50 ms here).
    assert_eq!(v["State"], "creating");
    aws(
        &server,
        &["ec2", "wait", "volume-available", "--volume-ids", &id],
    )
    .assert_success();
    // The volume is the one gRPC sees.
    assert_eq!(server.describe_volume(&id).size, 8);

    // Filters and --query.
    let q = aws(
        &server,
        &[
            "ec2",
            "describe-volumes",
            "--filters",
            "Name=tag:Name,Values=web",
            "Name=status,Values=available",
            "--query",
            "Volumes[].[VolumeId,State,VolumeType]",
            "--output",
            "text",
        ],
    );
    q.assert_success();
    assert_eq!(q.stdout.trim(), format!("{id}\tavailable\tgp3"));

    // Paging: the CLI follows NextToken through pages of 5.
    for _ in 0..11 {
        aws(
            &server,
            &[
                "ec2",
                "create-volume",
                "--availability-zone",
                AZ,
                "--size",
                "1",
            ],
        )
        .assert_success();
    }
    let all = json(&aws(
        &server,
        &["ec2", "describe-volumes", "--page-size", "5"],
    ));
    assert_eq!(all["Volumes"].as_array().unwrap().len(), 12, "{all}");
    let some = json(&aws(
        &server,
        &["ec2", "describe-volumes", "--max-items", "7"],
    ));
    assert_eq!(some["Volumes"].as_array().unwrap().len(), 7);
    assert!(some["NextToken"].is_string(), "{some}");

    // Tags.
    aws(
        &server,
        &[
            "ec2",
            "create-tags",
            "--resources",
            &id,
            "--tags",
            "Key=env,Value=test",
        ],
    )
    .assert_success();
    aws(
        &server,
        &[
            "ec2",
            "delete-tags",
            "--resources",
            &id,
            "--tags",
            "Key=Name",
        ],
    )
    .assert_success();
    let tagged = json(&aws(
        &server,
        &["ec2", "describe-volumes", "--volume-ids", &id],
    ));
    assert_eq!(
        tagged["Volumes"][0]["Tags"],
        serde_json::json!([{"Key": "env", "Value": "test"}])
    );

    // Attach to a registered host, detach, delete.
    let host = server.register_host("aws-cli");
    let a = json(&aws(
        &server,
        &[
            "ec2",
            "attach-volume",
            "--volume-id",
            &id,
            "--instance-id",
            &host.instance_id,
            "--device",
            "/dev/sdf",
        ],
    ));
    assert_eq!(a["State"], "attaching");
    aws(
        &server,
        &["ec2", "wait", "volume-in-use", "--volume-ids", &id],
    )
    .assert_success();
    assert_code(
        &aws(&server, &["ec2", "delete-volume", "--volume-id", &id]),
        "VolumeInUse",
    );
    let d = json(&aws(&server, &["ec2", "detach-volume", "--volume-id", &id]));
    assert_eq!(d["InstanceId"], host.instance_id);
    assert_eq!(d["State"], "detaching");
    aws(
        &server,
        &["ec2", "wait", "volume-available", "--volume-ids", &id],
    )
    .assert_success();
    aws(&server, &["ec2", "delete-volume", "--volume-id", &id]).assert_success();
    aws(
        &server,
        &["ec2", "wait", "volume-deleted", "--volume-ids", &id],
    )
    .assert_success();

    // Errors with the codes botocore parses.
    assert_code(
        &aws(
            &server,
            &[
                "ec2",
                "describe-volumes",
                "--volume-ids",
                "vol-0123456789abcdef0",
            ],
        ),
        "InvalidVolume.NotFound",
    );
    assert_code(
        &aws(
            &server,
            &["ec2", "describe-volumes", "--volume-ids", "volume-1"],
        ),
        "InvalidVolumeID.Malformed",
    );
    assert_code(
        &aws(
            &server,
            &[
                "ec2",
                "create-volume",
                "--availability-zone",
                "us-east-9z",
                "--size",
                "1",
            ],
        ),
        "InvalidParameterValue",
    );
    assert_code(
        &aws(
            &server,
            &[
                "ec2",
                "create-volume",
                "--availability-zone",
                AZ,
                "--size",
                "1",
                "--dry-run",
            ],
        ),
        "DryRunOperation",
    );
    let types = json(&aws(
        &server,
        &[
            "ec2",
            "describe-instance-types",
            "--instance-types",
            "m5d.large",
        ],
    ));
    let t = &types["InstanceTypes"][0];
    assert_eq!(t["InstanceType"], "m5d.large", "{types}");
    assert_eq!(t["VCpuInfo"]["DefaultVCpus"], 2);
    assert_eq!(t["MemoryInfo"]["SizeInMiB"], 8192);
    assert_eq!(
        t["ProcessorInfo"]["SupportedArchitectures"],
        serde_json::json!(["x86_64"])
    );
    assert_eq!(t["InstanceStorageInfo"]["Disks"][0]["Type"], "ssd", "{t}");
    assert!(
        t["EbsInfo"]["EbsOptimizedInfo"]["MaximumIops"]
            .as_u64()
            .unwrap()
            > 0
    );
    let paged = json(&aws(
        &server,
        &[
            "ec2",
            "describe-instance-types",
            "--filters",
            "Name=instance-type,Values=t3.*",
            "--page-size",
            "5",
        ],
    ));
    assert!(
        paged["InstanceTypes"].as_array().unwrap().len() >= 7,
        "{paged}"
    );
    assert_code(
        &aws(
            &server,
            &[
                "ec2",
                "describe-instance-types",
                "--instance-types",
                "m9.huge",
            ],
        ),
        "InvalidInstanceType",
    );
    let zones = json(&aws(&server, &["ec2", "describe-availability-zones"]));
    assert_eq!(zones["AvailabilityZones"].as_array().unwrap().len(), 3);

    // The JavaScript SDK v3 (installed into tests/aws/js by `npm install` there).
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/aws/js");
    if !js.join("node_modules/@aws-sdk/client-ec2").exists() {
        skip(
            "the JavaScript SDK is not installed (npm install --prefix volume-server/tests/aws/js)",
        );
    } else if require_tool("node") {
        run(Command::new("node")
            .arg(js.join("volumes.mjs"))
            .arg(endpoint(&server)))
        .assert_success();
    }

    // boto3: paginators, waiters, ClientError.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/aws/boto3_volumes.py");
    run(Command::new("python3").arg(script).arg(endpoint(&server))).assert_success();
    server.stop();
}

#[test]
fn the_aws_cli_drives_snapshots_and_modifications() {
    if !require_aws_clients() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_args(dir.path(), &["--snapshot-min-interval", "0s"]);
    let v = json(&aws(
        &server,
        &[
            "ec2",
            "create-volume",
            "--availability-zone",
            AZ,
            "--size",
            "4",
            "--volume-type",
            "gp3",
        ],
    ));
    let id = v["VolumeId"].as_str().unwrap().to_string();

    // Modify: gp3 → io2 with 8000 IOPS and a larger size.
    let m = json(&aws(
        &server,
        &[
            "ec2",
            "modify-volume",
            "--volume-id",
            &id,
            "--volume-type",
            "io2",
            "--iops",
            "8000",
            "--size",
            "20",
        ],
    ));
    assert_eq!(
        m["VolumeModification"]["ModificationState"], "modifying",
        "{m}"
    );
    assert_eq!(m["VolumeModification"]["TargetIops"], 8000);
    assert_eq!(m["VolumeModification"]["OriginalVolumeType"], "gp3");
    let mods = json(&aws(
        &server,
        &["ec2", "describe-volumes-modifications", "--volume-ids", &id],
    ));
    assert_eq!(mods["VolumesModifications"][0]["TargetSize"], 20, "{mods}");
    let now = json(&aws(
        &server,
        &["ec2", "describe-volumes", "--volume-ids", &id],
    ));
    assert_eq!(now["Volumes"][0]["VolumeType"], "io2");
    assert_eq!(now["Volumes"][0]["Size"], 20);
    let status = json(&aws(
        &server,
        &["ec2", "describe-volume-status", "--volume-ids", &id],
    ));
    assert_eq!(
        status["VolumeStatuses"][0]["VolumeStatus"]["Status"], "ok",
        "{status}"
    );

    // Snapshot, wait, describe with filters, copy, restore, delete.
    let snap = json(&aws(
        &server,
        &[
            "ec2",
            "create-snapshot",
            "--volume-id",
            &id,
            "--description",
            "first",
            "--tag-specifications",
            "ResourceType=snapshot,Tags=[{Key=k,Value=v}]",
        ],
    ));
    let sid = snap["SnapshotId"].as_str().unwrap().to_string();
    assert_eq!(snap["State"], "pending", "{snap}");
    assert_eq!(snap["VolumeSize"], 20);
    aws(
        &server,
        &["ec2", "wait", "snapshot-completed", "--snapshot-ids", &sid],
    )
    .assert_success();
    let found = json(&aws(
        &server,
        &[
            "ec2",
            "describe-snapshots",
            "--owner-ids",
            "self",
            "--filters",
            "Name=tag:k,Values=v",
        ],
    ));
    assert_eq!(found["Snapshots"].as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found["Snapshots"][0]["State"], "completed");
    assert_eq!(found["Snapshots"][0]["Description"], "first");
    // Fast snapshot restore: one zone served, one not.
    let fsr = json(&aws(
        &server,
        &[
            "ec2",
            "enable-fast-snapshot-restores",
            "--availability-zones",
            AZ,
            "us-east-9z",
            "--source-snapshot-ids",
            &sid,
        ],
    ));
    assert_eq!(fsr["Successful"][0]["SnapshotId"], sid.as_str(), "{fsr}");
    assert_eq!(fsr["Successful"][0]["AvailabilityZone"], AZ);
    let err = &fsr["Unsuccessful"][0]["FastSnapshotRestoreStateErrors"][0];
    assert_eq!(err["AvailabilityZone"], "us-east-9z", "{fsr}");
    assert_eq!(err["Error"]["Code"], "InvalidParameterValue", "{fsr}");
    let listed = json(&aws(&server, &["ec2", "describe-fast-snapshot-restores"]));
    assert_eq!(
        listed["FastSnapshotRestores"].as_array().unwrap().len(),
        1,
        "{listed}"
    );
    let off = json(&aws(
        &server,
        &[
            "ec2",
            "disable-fast-snapshot-restores",
            "--availability-zones",
            AZ,
            "--source-snapshot-ids",
            &sid,
        ],
    ));
    assert_eq!(off["Successful"][0]["State"], "disabling", "{off}");
    let copy = json(&aws(
        &server,
        &[
            "ec2",
            "copy-snapshot",
            "--source-region",
            "us-east-1",
            "--source-snapshot-id",
            &sid,
        ],
    ));
    let cid = copy["SnapshotId"].as_str().unwrap().to_string();
    aws(
        &server,
        &["ec2", "wait", "snapshot-completed", "--snapshot-ids", &cid],
    )
    .assert_success();
    let r = json(&aws(
        &server,
        &[
            "ec2",
            "create-volume",
            "--availability-zone",
            "us-east-1b",
            "--snapshot-id",
            &cid,
        ],
    ));
    assert_eq!(r["Size"], 20);
    assert_eq!(r["SnapshotId"], cid.as_str());
    aws(&server, &["ec2", "delete-snapshot", "--snapshot-id", &sid]).assert_success();
    assert_code(
        &aws(
            &server,
            &["ec2", "describe-snapshots", "--snapshot-ids", &sid],
        ),
        "InvalidSnapshot.NotFound",
    );
    assert_code(
        &aws(
            &server,
            &[
                "ec2",
                "create-snapshot",
                "--volume-id",
                "vol-0123456789abcdef0",
            ],
        ),
        "InvalidVolume.NotFound",
    );
    server.stop();
}

#[test]
fn the_aws_cli_runs_instances_from_an_image() {
    if !require_aws_clients() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_args(
        dir.path(),
        &[
            "--snapshot-min-interval",
            "0s",
            "--instance-stop-timeout",
            "2s",
        ],
    );
    let root = json(&aws(
        &server,
        &[
            "ec2",
            "create-volume",
            "--availability-zone",
            AZ,
            "--size",
            "1",
        ],
    ));
    let snap = json(&aws(
        &server,
        &[
            "ec2",
            "create-snapshot",
            "--volume-id",
            root["VolumeId"].as_str().unwrap(),
        ],
    ));
    let sid = snap["SnapshotId"].as_str().unwrap();
    aws(
        &server,
        &["ec2", "wait", "snapshot-completed", "--snapshot-ids", sid],
    )
    .assert_success();
    let ami = json(&aws(
        &server,
        &[
            "ec2",
            "register-image",
            "--name",
            "tiny",
            "--root-device-name",
            "/dev/xvda",
            "--block-device-mappings",
            &format!("DeviceName=/dev/xvda,Ebs={{SnapshotId={sid}}}"),
        ],
    ));
    let ami = ami["ImageId"].as_str().unwrap().to_string();
    let images = json(&aws(
        &server,
        &["ec2", "describe-images", "--owners", "self"],
    ));
    assert_eq!(images["Images"][0]["ImageId"], ami.as_str(), "{images}");
    assert_eq!(
        images["Images"][0]["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"],
        sid
    );

    // User data is the workload; the CLI Base64-encodes it.
    let run = json(&aws(
        &server,
        &[
            "ec2",
            "run-instances",
            "--image-id",
            &ami,
            "--instance-type",
            "t3.micro",
            "--count",
            "1",
            "--user-data",
            "#!/bin/sh\necho hello-from-user-data\nexec sleep 600\n",
            "--block-device-mappings",
            "DeviceName=/dev/sdf,Ebs={VolumeSize=2,VolumeType=gp3,DeleteOnTermination=false}",
            "--tag-specifications",
            "ResourceType=instance,Tags=[{Key=Name,Value=box}]",
        ],
    ));
    let i = run["Instances"][0]["InstanceId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(run["Instances"][0]["State"]["Name"], "pending", "{run}");
    aws(
        &server,
        &["ec2", "wait", "instance-running", "--instance-ids", &i],
    )
    .assert_success();
    let d = json(&aws(
        &server,
        &[
            "ec2",
            "describe-instances",
            "--filters",
            "Name=tag:Name,Values=box",
        ],
    ));
    let inst = &d["Reservations"][0]["Instances"][0];
    assert_eq!(inst["InstanceId"], i.as_str(), "{d}");
    assert_eq!(inst["State"]["Name"], "running");
    assert_eq!(inst["InstanceType"], "t3.micro");
    assert_eq!(
        inst["BlockDeviceMappings"].as_array().unwrap().len(),
        2,
        "{inst}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let out = json(&aws(
            &server,
            &["ec2", "get-console-output", "--instance-id", &i],
        ));
        if out["Output"]
            .as_str()
            .is_some_and(|o| o.contains("hello-from-user-data"))
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{out}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    let stop = json(&aws(
        &server,
        &["ec2", "stop-instances", "--instance-ids", &i],
    ));
    assert_eq!(
        stop["StoppingInstances"][0]["PreviousState"]["Name"], "running",
        "{stop}"
    );
    aws(
        &server,
        &["ec2", "wait", "instance-stopped", "--instance-ids", &i],
    )
    .assert_success();
    json(&aws(
        &server,
        &["ec2", "start-instances", "--instance-ids", &i],
    ));
    aws(
        &server,
        &["ec2", "wait", "instance-running", "--instance-ids", &i],
    )
    .assert_success();
    let img = json(&aws(
        &server,
        &[
            "ec2",
            "create-image",
            "--instance-id",
            &i,
            "--name",
            "from-box",
            "--no-reboot",
        ],
    ));
    let img = img["ImageId"].as_str().unwrap().to_string();
    aws(
        &server,
        &["ec2", "wait", "image-available", "--image-ids", &img],
    )
    .assert_success();
    json(&aws(
        &server,
        &["ec2", "terminate-instances", "--instance-ids", &i],
    ));
    aws(
        &server,
        &["ec2", "wait", "instance-terminated", "--instance-ids", &i],
    )
    .assert_success();
    assert_code(
        &aws(&server, &["ec2", "start-instances", "--instance-ids", &i]),
        "IncorrectInstanceState",
    );
    assert_code(
        &aws(
            &server,
            &[
                "ec2",
                "run-instances",
                "--image-id",
                "ami-0123456789abcdef0",
                "--count",
                "1",
            ],
        ),
        "InvalidAMIID.NotFound",
    );
    aws(&server, &["ec2", "deregister-image", "--image-id", &img]).assert_success();
    server.stop();
}

/// `scripts/import_image.py` imports a raw ext4 image (as `coldsnap upload` would on AWS) and
/// registers an AMI of it; a volume restored from the snapshot holds the image byte for byte
/// and its filesystem checks clean.
#[test]
fn a_raw_image_imports_as_a_snapshot_and_an_ami() {
    if !require_aws_clients() || !require_tools(&["nbdcopy", "mkfs.ext4", "e2fsck"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let host = server.register_host("import");

    // A 40 MiB ext4 image holding a file of random bytes.
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(tree.join("etc/os-release"), "PRETTY_NAME=\"imported\"\n").unwrap();
    let blob: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(tree.join("blob"), &blob).unwrap();
    let image = dir.path().join("image.raw");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(40 << 20)
        .unwrap();
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&tree)
        .arg(&image))
    .assert_success();

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/import_image.py");
    let out = run(Command::new("python3")
        .arg(script)
        .arg(&image)
        .args(["--endpoint", &endpoint(&server)])
        .args(["--name", "imported", "--description", "an ext4 image"]));
    out.assert_success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    let (snapshot, ami) = (lines[0].trim(), lines[1].trim());
    assert!(
        snapshot.starts_with("snap-") && ami.starts_with("ami-"),
        "{}",
        out.stdout
    );

    let images = json(&aws(
        &server,
        &["ec2", "describe-images", "--image-ids", ami],
    ));
    let i = &images["Images"][0];
    assert_eq!(i["Name"], "imported", "{i}");
    assert_eq!(i["RootDeviceName"], "/dev/xvda", "{i}");
    assert_eq!(
        i["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"], snapshot,
        "{i}"
    );
    assert_eq!(i["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"], 1, "{i}");

    let mut c = server.client();
    let restored = server.ok(
        "CreateVolume from the imported snapshot",
        server.block_on(c.create_volume(pb::CreateVolumeRequest {
            availability_zone: AZ.into(),
            snapshot_id: Some(snapshot.into()),
            ..Default::default()
        })),
    );
    server.attach(&restored.volume_id, &host.instance_id);
    let copy = dir.path().join("restored.raw");
    run(Command::new("nbdcopy")
        .arg(server.nbd_uri_of(&restored.volume_id))
        .arg(&copy))
    .assert_success();
    assert_same_range(&image, &copy, 0, 40 << 20);
    assert_zero_range(&copy, 40 << 20, 8 << 20);
    std::fs::File::options()
        .write(true)
        .open(&copy)
        .unwrap()
        .set_len(40 << 20)
        .unwrap();
    run(Command::new("e2fsck").args(["-f", "-n"]).arg(&copy)).assert_success();
    server.stop();
}

/// `scripts/make-debian-ami` builds a minimal Debian 12 root filesystem (mmdebstrap, kept in
/// its cache between runs), imports it and registers the AMI; a volume restored from it holds
/// a clean ext4 filesystem with Debian's os-release, sshd, the `admin` user, and no baked-in SSH
/// host keys.
#[test]
fn the_debian_ami_builds_imports_and_restores() {
    if !require_aws_clients()
        || !require_tools(&["mmdebstrap", "nbdcopy", "mkfs.ext4", "e2fsck", "debugfs"])
    {
        return;
    }
    if euid() != Some(0) {
        skip("mmdebstrap's root mode needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let host = server.register_host("debian");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/make-debian-ami");
    let out = run(Command::new(script).args(["--endpoint-url", &endpoint(&server)]));
    out.assert_success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    let (snapshot, ami) = (lines[0].trim(), lines[1].trim());
    let images = json(&aws(
        &server,
        &[
            "ec2",
            "describe-images",
            "--filters",
            "Name=name,Values=debian-12-amd64",
        ],
    ));
    assert_eq!(images["Images"][0]["ImageId"], ami, "{images}");
    assert_eq!(
        images["Images"][0]["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"],
        2
    );

    let mut c = server.client();
    let restored = server.ok(
        "CreateVolume from the Debian snapshot",
        server.block_on(c.create_volume(pb::CreateVolumeRequest {
            availability_zone: AZ.into(),
            snapshot_id: Some(snapshot.into()),
            ..Default::default()
        })),
    );
    server.attach(&restored.volume_id, &host.instance_id);
    let copy = dir.path().join("root.raw");
    run(Command::new("nbdcopy")
        .arg(server.nbd_uri_of(&restored.volume_id))
        .arg(&copy))
    .assert_success();
    run(Command::new("e2fsck").args(["-f", "-n"]).arg(&copy)).assert_success();
    let debugfs = |request: &str| {
        let out = run(Command::new("debugfs").args(["-R", request]).arg(&copy));
        out.assert_success();
        out.stdout
    };
    assert!(
        debugfs("cat /usr/lib/os-release").contains("Debian GNU/Linux 12 (bookworm)"),
        "not Debian 12"
    );
    assert!(debugfs("stat /usr/sbin/sshd").contains("Type: regular"));
    assert!(
        !debugfs("ls /etc/ssh").contains("ssh_host_"),
        "host keys baked in"
    );
    assert!(debugfs("cat /etc/fstab").contains("LABEL=rootfs"));
    assert!(
        debugfs("cat /etc/passwd").contains("admin:x:"),
        "no admin user"
    );
    assert!(debugfs("cat /etc/sudoers.d/admin").contains("NOPASSWD"));
    server.stop();
}

#[test]
fn the_ebs_direct_apis_upload_restore_and_diff_over_rest_json() {
    if !require_aws_clients() || !require_tools(&["nbdcopy", "qemu-io"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server =
        Server::start_with_args(&dir.path().join("data"), &["--snapshot-min-interval", "0s"]);
    let host = server.register_host("direct");

    // boto3 uploads an image, EC2 restores it, NBD reads it back byte for byte.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/aws/ebs_direct.py");
    let out = run(Command::new("python3")
        .arg(script)
        .arg(endpoint(&server))
        .arg(&host.instance_id)
        .arg(dir.path()));
    out.assert_success();
    let restored = out.stdout.lines().last().unwrap().trim().to_string();
    let uri = server.nbd_uri_of(&restored);
    let copy = dir.path().join("restored.raw");
    run(Command::new("nbdcopy").arg(&uri).arg(&copy)).assert_success();
    let image = dir.path().join("image.bin");
    assert_same_range(&image, &copy, 0, 4 << 20);
    assert_zero_range(&copy, 4 << 20, 4 << 20);

    // ListChangedBlocks between two snapshots of a volume written through NBD (the aws CLI).
    let v = json(&aws(
        &server,
        &[
            "ec2",
            "create-volume",
            "--availability-zone",
            AZ,
            "--size",
            "1",
        ],
    ));
    let vid = v["VolumeId"].as_str().unwrap().to_string();
    aws(
        &server,
        &[
            "ec2",
            "attach-volume",
            "--volume-id",
            &vid,
            "--instance-id",
            &host.instance_id,
            "--device",
            "/dev/sdg",
        ],
    )
    .assert_success();
    let uri = server.nbd_uri_of(&vid);
    assert_qemu_io_ok(&qemu_io(&uri, &["write -P 0x11 0 1M", "flush"]));
    let snap = |server: &Server| {
        let s = json(&aws(
            server,
            &["ec2", "create-snapshot", "--volume-id", &vid],
        ));
        let id = s["SnapshotId"].as_str().unwrap().to_string();
        aws(
            server,
            &["ec2", "wait", "snapshot-completed", "--snapshot-ids", &id],
        )
        .assert_success();
        id
    };
    let first = snap(&server);
    assert_qemu_io_ok(&qemu_io(
        &uri,
        &["write -P 0x22 1M 512k", "write -P 0x33 0 512k", "flush"],
    ));
    let second = snap(&server);
    let changed = json(&aws(
        &server,
        &[
            "ebs",
            "list-changed-blocks",
            "--first-snapshot-id",
            &first,
            "--second-snapshot-id",
            &second,
        ],
    ));
    let indexes: Vec<u64> = changed["ChangedBlocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["BlockIndex"].as_u64().unwrap())
        .collect();
    assert_eq!(indexes, [0, 2], "{changed}");
    let blocks = json(&aws(
        &server,
        &["ebs", "list-snapshot-blocks", "--snapshot-id", &second],
    ));
    let listed: Vec<u64> = blocks["Blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["BlockIndex"].as_u64().unwrap())
        .collect();
    assert_eq!(listed, [0, 1, 2], "{blocks}");
    let token = blocks["Blocks"][2]["BlockToken"].as_str().unwrap();
    let got = dir.path().join("block2");
    aws(
        &server,
        &[
            "ebs",
            "get-snapshot-block",
            "--snapshot-id",
            &second,
            "--block-index",
            "2",
            "--block-token",
            token,
            got.to_str().unwrap(),
        ],
    )
    .assert_success();
    assert_eq!(std::fs::read(&got).unwrap(), vec![0x22u8; 512 << 10]);
    assert_code(
        &aws(
            &server,
            &[
                "ebs",
                "list-snapshot-blocks",
                "--snapshot-id",
                "snap-0123456789abcdef0",
            ],
        ),
        "ResourceNotFoundException",
    );
    server.stop();
}

#[test]
fn bad_requests_get_a_clear_error_and_the_server_keeps_serving() {
    if !require_aws_clients() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let key = ("test", "test");
    let cases: &[(&str, Option<&str>, u16, &str)] = &[
        (
            "signed",
            Some("Action=Frobnicate&Version=2016-11-15"),
            400,
            "InvalidAction",
        ),
        ("signed", Some("Version=2016-11-15"), 400, "MissingAction"),
        (
            "signed",
            Some("Action=CreateVolume&AvailabilityZone=us-east-1a&Size=big"),
            400,
            "InvalidParameterValue",
        ),
        (
            "signed",
            Some("Action=CreateVolume&Size=1"),
            400,
            "MissingParameter",
        ),
        (
            "signed",
            Some("Action=DeleteVolume"),
            400,
            "MissingParameter",
        ),
        (
            "signed",
            Some("Action=DescribeVolumes&MaxResults=-3"),
            400,
            "InvalidParameterValue",
        ),
        (
            "signed",
            Some("Action=DescribeVolumes&Filter.1.Name=colour&Filter.1.Value.1=red"),
            400,
            "InvalidParameterValue",
        ),
        (
            "signed",
            Some("Action=DescribeVolumes&NextToken=%ff%fe"),
            400,
            "InvalidParameterValue",
        ),
        ("signed", Some("%zz=%&&=&Action=DescribeVolumes"), 200, "-"),
        ("unsigned", None, 401, "AuthFailure"),
        ("rebind", None, 401, "AuthFailure"),
        ("big", None, 413, "RequestEntityTooLarge"),
    ];
    for (mode, body, status, code) in cases {
        let got = raw(&server, key, mode, *body, "ec2");
        assert_eq!(got, (*status, code.to_string()), "{mode} {body:?}");
    }
    // Still serving.
    assert_eq!(raw(&server, key, "signed", None, "ec2"), (200, "-".into()));
    assert_eq!(
        raw(
            &server,
            key,
            "signed",
            Some("Action=GetCallerIdentity&Version=2011-06-15"),
            "sts"
        ),
        (200, "-".into())
    );
    assert_eq!(
        raw(&server, key, "signed", None, "kinesis"),
        (400, "InvalidAction".into())
    );
    server.stop();
}

#[test]
fn boto3_everyday_calls_regions_account_attributes_and_tags() {
    if !require_aws_clients() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let west = dir.path().join("west-store");
    std::fs::create_dir_all(&west).unwrap();
    let west_arg = format!("us-west-2={}", west.display());
    let server = Server::start_with_args(
        &dir.path().join("data"),
        &[
            "--snapshot-min-interval",
            "0s",
            "--snapshot-store",
            &west_arg,
        ],
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/aws/boto3_everyday.py");
    run(Command::new("python3").arg(script).arg(endpoint(&server))).assert_success();
    server.stop();
}

/// The transitional states polled through with boto3 and its waiters, on a server that keeps
/// them for 2 s.
#[test]
fn boto3_waiters_wait_through_creating_attaching_and_detaching() {
    if !require_aws_clients() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_args(dir.path(), &["--transition-time", "2s"]);
    let host = server.register_host("transitions");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/aws/boto3_transitions.py");
    run(Command::new("python3")
        .arg(script)
        .arg(endpoint(&server))
        .arg(&host.instance_id)
        .arg("2"))
    .assert_success();
    server.stop();
}

#[test]
fn a_registered_host_is_a_running_instance_to_boto3() {
    if !require_aws_clients() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let host = server.register_host("outside");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/aws/boto3_hosts.py");
    run(Command::new("python3")
        .arg(script)
        .arg(endpoint(&server))
        .arg(&host.instance_id))
    .assert_success();
    server.stop();
}

#[test]
fn boto3_sees_the_default_vpc_subnets_and_security_group() {
    if !require_aws_clients() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_args(dir.path(), &["--snapshot-min-interval", "0s"]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/aws/boto3_network.py");
    run(Command::new("python3").arg(script).arg(endpoint(&server))).assert_success();
    server.stop();
}

#[test]
fn boto3_makes_and_deletes_vpcs_and_subnets() {
    if !require_aws_clients() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_args(dir.path(), &["--snapshot-min-interval", "0s"]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/aws/boto3_vpcs.py");
    run(Command::new("python3").arg(script).arg(endpoint(&server))).assert_success();
    server.stop();
}

/// Every EC2 answer against botocore's model: no element outside the output shape (botocore
/// would drop it silently). Prints how many of the model's members the answers never carry.
#[test]
fn every_ec2_answer_fits_botocores_model() {
    if !require_aws_clients() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_args(dir.path(), &["--snapshot-min-interval", "0s"]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/aws/model_check.py");
    let out = run(Command::new("python3").arg(script).arg(endpoint(&server)));
    out.assert_success();
    eprintln!("{}", out.stdout);
    server.stop();
}

#[test]
fn accounts_see_and_reach_only_their_own_resources() {
    if !require_aws_clients() {
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/aws/accounts.py");
    // With a credentials file: two keys of two accounts.
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("credentials");
    std::fs::write(
        &creds,
        "[alice]\naws_access_key_id = AKIAALICE\naws_secret_access_key = alice-secret\naws_account_id = 111122223333\n\n[bob]\naws_access_key_id = AKIABOB\naws_secret_access_key = bob-secret\naws_account_id = 444455556666\n",
    )
    .unwrap();
    let server = Server::start_with_args(
        &dir.path().join("data"),
        &[
            "--aws-credentials",
            creds.to_str().unwrap(),
            "--snapshot-min-interval",
            "0s",
        ],
    );
    run(Command::new("python3").arg(&script).args([
        endpoint(&server).as_str(),
        "AKIAALICE:alice-secret:111122223333",
        "AKIABOB:bob-secret:444455556666",
    ]))
    .assert_success();
    // gRPC acts for the local account: it sees neither's volumes.
    let mut client = server.client();
    let vols = server
        .block_on(client.describe_volumes(pb::DescribeVolumesRequest::default()))
        .unwrap()
        .into_inner()
        .volumes;
    assert!(vols.is_empty(), "{vols:?}");
    server.stop();

    // Local use, without credentials: a 12-digit key id is the account.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_args(dir.path(), &["--snapshot-min-interval", "0s"]);
    run(Command::new("python3").arg(&script).args([
        endpoint(&server).as_str(),
        "111111111111:x:111111111111",
        "222222222222:y:222222222222",
    ]))
    .assert_success();
    server.stop();
}

#[test]
fn with_credentials_only_listed_keys_signing_fresh_requests_get_through() {
    if !require_aws_clients() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("credentials");
    std::fs::write(
        &creds,
        "[alice]\naws_access_key_id = AKIAALICE\naws_secret_access_key = alice-secret\naws_account_id = 111122223333\n",
    )
    .unwrap();
    let server = Server::start_with_args(
        &dir.path().join("data"),
        &["--aws-credentials", creds.to_str().unwrap()],
    );
    let me = json(&aws_as(
        &server,
        "AKIAALICE",
        "alice-secret",
        &["sts", "get-caller-identity"],
    ));
    assert_eq!(me["Account"], "111122223333");
    json(&aws_as(
        &server,
        "AKIAALICE",
        "alice-secret",
        &[
            "ec2",
            "create-volume",
            "--availability-zone",
            AZ,
            "--size",
            "1",
        ],
    ));
    assert_code(
        &aws_as(&server, "AKIAALICE", "wrong", &["ec2", "describe-volumes"]),
        "AuthFailure",
    );
    assert_code(
        &aws_as(
            &server,
            "AKIAMALLORY",
            "alice-secret",
            &["ec2", "describe-volumes"],
        ),
        "AuthFailure",
    );
    assert_code(
        &aws_as(
            &server,
            "AKIAALICE",
            "wrong",
            &["sts", "get-caller-identity"],
        ),
        "SignatureDoesNotMatch",
    );
    assert_code(
        &aws_as(&server, "AKIAMALLORY", "x", &["sts", "get-caller-identity"]),
        "InvalidClientTokenId",
    );
    let alice = ("AKIAALICE", "alice-secret");
    assert_eq!(
        raw(&server, alice, "stale", None, "ec2"),
        (400, "RequestExpired".into())
    );
    assert_eq!(
        raw(&server, alice, "signed", None, "ec2"),
        (200, "-".into())
    );
    // The EBS block upload signs its checksum instead of its body (UNSIGNED-PAYLOAD).
    let snap = json(&aws_as(
        &server,
        "AKIAALICE",
        "alice-secret",
        &["ebs", "start-snapshot", "--volume-size", "1"],
    ));
    let block = dir.path().join("block");
    std::fs::write(&block, vec![0x5au8; 512 << 10]).unwrap();
    let checksum = {
        use base64::Engine as _;
        use sha2::Digest as _;
        base64::engine::general_purpose::STANDARD
            .encode(sha2::Sha256::digest(vec![0x5au8; 512 << 10]))
    };
    let put = |secret: &str| {
        aws_as(
            &server,
            "AKIAALICE",
            secret,
            &[
                "ebs",
                "put-snapshot-block",
                "--snapshot-id",
                snap["SnapshotId"].as_str().unwrap(),
                "--block-index",
                "0",
                "--block-data",
                block.to_str().unwrap(),
                "--data-length",
                "524288",
                "--checksum",
                &checksum,
                "--checksum-algorithm",
                "SHA256",
            ],
        )
    };
    json(&put("alice-secret"));
    assert_code(&put("wrong"), "InvalidSignatureException");
    assert_code(
        &aws_as(
            &server,
            "AKIAMALLORY",
            "x",
            &["ebs", "start-snapshot", "--volume-size", "1"],
        ),
        "UnrecognizedClientException",
    );
    // A signed request cannot be replayed with another body behind a payload-hash header.
    assert_eq!(
        raw(&server, alice, "swapped", None, "ec2"),
        (400, "IncompleteSignature".into())
    );
    // The secret is never logged.
    let err = server.stderr();
    assert!(
        !err.contains("alice-secret"),
        "the secret was logged: {err}"
    );
    server.stop();
}

#[test]
fn a_network_aws_endpoint_needs_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_volume-server"));
    cmd.arg("--data-dir")
        .arg(dir.path())
        .args(["--grpc-addr", "127.0.0.1:0", "--nbd-addr", "127.0.0.1:0"])
        .args(["--metrics-addr", "127.0.0.1:0", "--aws-addr", "0.0.0.0:0"]);
    let out = run_with_timeout(&mut cmd, SERVER_TIMEOUT);
    out.assert_failure();
    assert!(
        out.stderr.contains("--aws-credentials"),
        "{}",
        out.describe()
    );
    assert!(!out.stdout.contains("listening"), "{}", out.describe());
}
