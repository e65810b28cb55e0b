//! The README's quick start, driven by the real `ebsctl` binary against a real server, plus its error
//! and output formats. `ebsctl` is found next to this test executable (`cargo test --workspace` builds
//! it); without it the tests skip loudly, or fail under `EBS_REQUIRE_INTEROP=1`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("ebs-ebsctl-")
        .tempdir()
        .expect("temp dir")
}

fn ebsctl_or_skip() -> Option<PathBuf> {
    let path = ebsctl_path();
    if path.is_none() {
        skip("ebsctl is not built next to the test binary (run `cargo test --workspace`)");
    }
    path
}

/// Runs `ebsctl --endpoint http://GRPC args…`.
fn ebsctl(bin: &Path, server: &Server, args: &[&str]) -> Output {
    run(Command::new(bin)
        .env_remove("EBS_ENDPOINT")
        .arg("--endpoint")
        .arg(server.endpoint())
        .args(args))
}

/// Runs ebsctl, asserts success and parses its JSON output.
fn ebsctl_json(bin: &Path, server: &Server, args: &[&str]) -> Value {
    let out = ebsctl(bin, server, args);
    out.assert_success();
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", out.describe()))
}

/// `prefix` followed by 17 lowercase hex digits, as AWS ids.
fn assert_aws_id(id: &Value, prefix: &str) -> String {
    let id = id
        .as_str()
        .unwrap_or_else(|| panic!("not a string id: {id}"));
    let hex = id
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{id:?} does not start with {prefix:?}"));
    assert!(
        hex.len() == 17 && hex.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')),
        "{id:?} is not {prefix} + 17 lowercase hex digits"
    );
    id.to_owned()
}

/// Asserts the AWS CLI's error shape: exit 254 and `An error occurred (CODE) when calling the OP operation`.
fn assert_service_error(out: &Output, code: &str, operation: &str) {
    assert_eq!(out.status.code(), Some(254), "{}", out.describe());
    let expected = format!("An error occurred ({code}) when calling the {operation} operation");
    assert!(
        out.stderr.contains(&expected),
        "expected {expected:?}: {}",
        out.describe()
    );
}

#[test]
fn quick_start_with_ebsctl() {
    let Some(bin) = ebsctl_or_skip() else { return };
    if !require_tool("nbdinfo") {
        return;
    }
    let dir = tempdir();
    let server = Server::start(dir.path());
    let az = AZ;

    let volume = ebsctl_json(
        &bin,
        &server,
        &[
            "create-volume",
            "--size",
            "1",
            "--volume-type",
            "gp3",
            "--availability-zone",
            az,
        ],
    );
    let volume_id = assert_aws_id(&volume["VolumeId"], "vol-");
    assert_eq!(volume["State"], "creating", "{volume:#}");
    assert_eq!(volume["Size"], 1, "{volume:#}");
    assert_eq!(volume["VolumeType"], "gp3", "{volume:#}");
    assert_eq!(volume["AvailabilityZone"], az, "{volume:#}");
    assert_eq!(volume["Attachments"], serde_json::json!([]), "{volume:#}");

    ebsctl(
        &bin,
        &server,
        &["wait", "volume-available", "--volume-ids", &volume_id],
    )
    .assert_success();

    let host = ebsctl_json(
        &bin,
        &server,
        &[
            "register-host",
            "--name",
            "quickstart",
            "--availability-zone",
            az,
        ],
    );
    let instance_id = assert_aws_id(&host["InstanceId"], "i-");

    let attachment = ebsctl_json(
        &bin,
        &server,
        &[
            "attach-volume",
            "--volume-id",
            &volume_id,
            "--instance-id",
            &instance_id,
            "--device",
            "/dev/sdf",
        ],
    );
    assert_eq!(attachment["VolumeId"], volume_id.as_str(), "{attachment:#}");
    assert_eq!(
        attachment["InstanceId"],
        instance_id.as_str(),
        "{attachment:#}"
    );
    assert_eq!(attachment["Device"], "/dev/sdf", "{attachment:#}");
    let nbd_uri = attachment["NbdUri"]
        .as_str()
        .unwrap_or_else(|| panic!("no NbdUri: {attachment:#}"))
        .to_owned();
    let (addr, export) = split_nbd_uri(&nbd_uri);
    assert_eq!(addr.port(), server.nbd_addr.port(), "{attachment:#}");
    assert_ne!(
        export, volume_id,
        "the export name is a token, not the volume id"
    );

    // A host can open the printed URI.
    let info = run_tool("nbdinfo", &["--json", &nbd_uri]);
    info.assert_success();
    let info: Value = serde_json::from_str(&info.stdout).expect("nbdinfo JSON");
    assert_eq!(info["exports"][0]["export-size"], GIB, "{info:#}");

    ebsctl(
        &bin,
        &server,
        &["wait", "volume-in-use", "--volume-ids", &volume_id],
    )
    .assert_success();
    let described = ebsctl_json(
        &bin,
        &server,
        &["describe-volumes", "--volume-ids", &volume_id],
    );
    let volumes = described["Volumes"].as_array().expect("Volumes");
    assert_eq!(volumes.len(), 1, "{described:#}");
    assert_eq!(volumes[0]["VolumeId"], volume_id.as_str(), "{described:#}");
    assert_eq!(volumes[0]["State"], "in-use", "{described:#}");
    let attachments = volumes[0]["Attachments"].as_array().expect("Attachments");
    assert_eq!(attachments.len(), 1, "{described:#}");
    assert_eq!(
        attachments[0]["InstanceId"],
        instance_id.as_str(),
        "{described:#}"
    );
    // `attaching` for the transition time after the attach.
    let state = &attachments[0]["State"];
    assert!(state == "attached" || state == "attaching", "{described:#}");
    assert_eq!(attachments[0]["NbdUri"], nbd_uri.as_str(), "{described:#}");
    assert_eq!(attachments[0]["Device"], "/dev/sdf", "{described:#}");

    let detached = ebsctl_json(&bin, &server, &["detach-volume", "--volume-id", &volume_id]);
    assert_eq!(detached["VolumeId"], volume_id.as_str(), "{detached:#}");
    // Fenced: the URI no longer opens.
    run_tool("nbdinfo", &[&nbd_uri]).assert_failure();

    ebsctl(
        &bin,
        &server,
        &["wait", "volume-available", "--volume-ids", &volume_id],
    )
    .assert_success();
    ebsctl(&bin, &server, &["delete-volume", "--volume-id", &volume_id]).assert_success();
    ebsctl(
        &bin,
        &server,
        &["wait", "volume-deleted", "--volume-ids", &volume_id],
    )
    .assert_success();
    let gone = ebsctl(
        &bin,
        &server,
        &["describe-volumes", "--volume-ids", &volume_id],
    );
    assert_service_error(&gone, "InvalidVolume.NotFound", "DescribeVolumes");
    server.stop();
}

#[test]
fn ebsctl_errors_carry_the_ec2_code_and_exit_254() {
    let Some(bin) = ebsctl_or_skip() else { return };
    let dir = tempdir();
    let server = Server::start(dir.path());
    let (volume_id, instance_id, _uri) = server.attach_new_volume(1);

    // An unknown volume.
    let out = ebsctl(
        &bin,
        &server,
        &[
            "attach-volume",
            "--volume-id",
            "vol-0123456789abcdef0",
            "--instance-id",
            &instance_id,
            "--device",
            "/dev/sdg",
        ],
    );
    assert_service_error(&out, "InvalidVolume.NotFound", "AttachVolume");
    assert!(out.stdout.is_empty(), "{}", out.describe());

    // Attaching an attached volume again, and deleting it while attached.
    let out = ebsctl(
        &bin,
        &server,
        &[
            "attach-volume",
            "--volume-id",
            &volume_id,
            "--instance-id",
            &instance_id,
            "--device",
            "/dev/sdg",
        ],
    );
    assert_service_error(&out, "VolumeInUse", "AttachVolume");
    let out = ebsctl(&bin, &server, &["delete-volume", "--volume-id", &volume_id]);
    assert_service_error(&out, "VolumeInUse", "DeleteVolume");

    // Nothing changed.
    let volume = server.describe_volume(&volume_id);
    assert_eq!(volume.state, "in-use", "{volume:?}");
    assert_eq!(volume.attachments.len(), 1, "{volume:?}");
    server.stop();
}

#[test]
fn ebsctl_table_and_text_output() {
    let Some(bin) = ebsctl_or_skip() else { return };
    let dir = tempdir();
    let server = Server::start(dir.path());
    let volume = server.create_volume(1);
    let id = volume.volume_id.as_str();
    server.wait_volume_state(id, "available");

    // --output before the subcommand ...
    let table = ebsctl(
        &bin,
        &server,
        &["--output", "table", "describe-volumes", "--volume-ids", id],
    );
    table.assert_success();
    assert!(
        serde_json::from_str::<Value>(&table.stdout).is_err(),
        "table output must not be JSON: {}",
        table.describe()
    );
    assert!(table.stdout.contains(id), "{}", table.describe());
    assert!(
        table.stdout.contains("DescribeVolumes"),
        "{}",
        table.describe()
    );
    assert!(table.stdout.contains('|'), "{}", table.describe());

    // ... or after it.
    let text = ebsctl(
        &bin,
        &server,
        &["describe-volumes", "--volume-ids", id, "--output", "text"],
    );
    text.assert_success();
    assert!(
        serde_json::from_str::<Value>(&text.stdout).is_err(),
        "text output must not be JSON: {}",
        text.describe()
    );
    let line = text
        .stdout
        .lines()
        .find(|l| l.starts_with("VOLUMES\t"))
        .unwrap_or_else(|| panic!("no VOLUMES line: {}", text.describe()));
    let columns: Vec<&str> = line.split('\t').collect();
    assert!(columns.contains(&id), "{line:?}");
    assert!(columns.contains(&"available"), "{line:?}");
    assert!(columns.contains(&"gp3"), "{line:?}");
    server.stop();
}

/// `describe-volumes` over a result far past gRPC's 4 MiB message limit (2,100 volumes with 50
/// maximum-length tags each, about 40 MiB): the server caps each page by size and `ebsctl`
/// follows the pages, as the aws CLI does, and prints every volume with all its tags.
#[test]
fn describe_volumes_pages_past_the_message_limit() {
    let Some(bin) = ebsctl_or_skip() else {
        return;
    };
    const VOLUMES: usize = 2_100;
    let dir = tempdir();
    let server = Server::start(dir.path());
    let tags: Vec<proto::ebs::v1::Tag> = (0..50)
        .map(|i| proto::ebs::v1::Tag {
            key: format!("{i:02}{}", "k".repeat(126)),
            value: "v".repeat(256),
        })
        .collect();
    std::thread::scope(|s| {
        for t in 0..4 {
            let (server, tags) = (&server, &tags);
            s.spawn(move || {
                let mut c = server.client();
                for _ in (t..VOLUMES).step_by(4) {
                    server.ok(
                        "CreateVolume",
                        server.block_on(c.create_volume(proto::ebs::v1::CreateVolumeRequest {
                            availability_zone: AZ.into(),
                            size: Some(1),
                            tag_specifications: vec![proto::ebs::v1::TagSpecification {
                                resource_type: "volume".into(),
                                tags: tags.clone(),
                            }],
                            ..Default::default()
                        })),
                    );
                }
            });
        }
    });
    let out = ebsctl(&bin, &server, &["describe-volumes"]);
    out.assert_success();
    eprintln!("describe-volumes printed {} MiB", out.stdout.len() >> 20);
    let v: Value = serde_json::from_str(&out.stdout).expect("JSON");
    let volumes = v["Volumes"].as_array().expect("Volumes");
    assert_eq!(volumes.len(), VOLUMES);
    let ids: std::collections::BTreeSet<&str> = volumes
        .iter()
        .map(|v| v["VolumeId"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), VOLUMES, "a volume was listed twice");
    assert!(
        volumes
            .iter()
            .all(|v| v["Tags"].as_array().unwrap().len() == 50),
        "a volume lost tags"
    );
    server.stop();
}

/// `--dry-run` asks the server whether the call would be allowed and changes nothing.
/// `--cli-input-json` takes the parameters as the AWS CLI does, inline
/// or from `file://`, with the command line winning.
#[test]
fn dry_run_and_cli_input_json() {
    let Some(bin) = ebsctl_or_skip() else { return };
    let dir = tempdir();
    let server = Server::start(dir.path());

    let out = ebsctl(
        &bin,
        &server,
        &[
            "create-volume",
            "--availability-zone",
            AZ,
            "--size",
            "1",
            "--dry-run",
        ],
    );
    assert_service_error(&out, "DryRunOperation", "CreateVolume");
    assert!(
        out.stderr
            .contains("Request would have succeeded, but DryRun flag is set.")
    );
    let listed = ebsctl_json(&bin, &server, &["describe-volumes"]);
    assert_eq!(
        listed["Volumes"],
        serde_json::json!([]),
        "a dry run created something"
    );
    // --no-dry-run after --dry-run makes the call.
    let made = ebsctl_json(
        &bin,
        &server,
        &[
            "create-volume",
            "--availability-zone",
            AZ,
            "--size",
            "1",
            "--dry-run",
            "--no-dry-run",
        ],
    );
    let id = assert_aws_id(&made["VolumeId"], "vol-");
    let out = ebsctl(
        &bin,
        &server,
        &["delete-volume", "--volume-id", &id, "--dry-run"],
    );
    assert_service_error(&out, "DryRunOperation", "DeleteVolume");
    let still = ebsctl_json(&bin, &server, &["describe-volumes", "--volume-ids", &id]);
    let state = &still["Volumes"][0]["State"];
    assert!(state == "creating" || state == "available", "{still}");

    // --cli-input-json: every member as a flag; the command line's --size wins over Size.
    let input = dir.path().join("input.json");
    std::fs::write(
        &input,
        r#"{"AvailabilityZone": "us-east-1a", "Size": 3, "VolumeType": "gp3", "Throughput": 250,
            "TagSpecifications": [{"ResourceType": "volume", "Tags": [{"Key": "Name", "Value": "from-json"}]}]}"#,
    )
    .unwrap();
    let file_arg = format!("file://{}", input.display());
    let v = ebsctl_json(
        &bin,
        &server,
        &[
            "create-volume",
            "--cli-input-json",
            &file_arg,
            "--size",
            "4",
        ],
    );
    assert_eq!(v["Size"], 4, "{v}");
    assert_eq!(v["VolumeType"], "gp3", "{v}");
    assert_eq!(v["Throughput"], 250, "{v}");
    assert_eq!(v["Tags"][0]["Value"], "from-json", "{v}");
    let inline = format!(r#"{{"VolumeIds": ["{id}"]}}"#);
    let one = ebsctl_json(
        &bin,
        &server,
        &["describe-volumes", "--cli-input-json", &inline],
    );
    assert_eq!(one["Volumes"].as_array().unwrap().len(), 1, "{one}");
    let dry = format!(r#"{{"VolumeId": "{id}", "DryRun": true}}"#);
    let out = ebsctl(&bin, &server, &["delete-volume", "--cli-input-json", &dry]);
    assert_service_error(&out, "DryRunOperation", "DeleteVolume");
    let bad = ebsctl(
        &bin,
        &server,
        &[
            "delete-volume",
            "--cli-input-json",
            r#"{"VolumeId": "vol-1", "Colour": "red"}"#,
        ],
    );
    assert_eq!(bad.status.code(), Some(252), "{}", bad.describe());
    assert!(
        bad.stderr
            .contains(r#"Unknown parameter in input: "Colour""#),
        "{}",
        bad.describe()
    );
    server.stop();
}
