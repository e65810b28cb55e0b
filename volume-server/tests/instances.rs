//! Instances against a real server: RunInstances from an AMI whose root holds an ext4
//! filesystem, workloads that read their root device and write markers over NBD, the EC2
//! lifecycle (reboot, stop, start, terminate) with its effects on EBS and instance store,
//! InstanceInitiatedShutdownBehavior, CreateImage, and re-adoption after a crash of the server.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::*;
use proto::ebs::v1 as pb;

const WAIT: Duration = Duration::from_secs(60);

fn code<T: std::fmt::Debug>(r: Result<tonic::Response<T>, tonic::Status>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(s) => ec2_code(&s).unwrap_or_else(|| format!("no code: {s:?}")),
    }
}

/// A 1 GiB ext4 image holding `/etc/motd` = `motd`, written to a volume, snapshotted and
/// registered as an AMI with root `/dev/xvda`. Returns the AMI id.
fn ext4_ami(server: &Server, name: &str, motd: &str) -> String {
    ami_of(server, name, Some(motd))
}

/// An AMI whose 1 GiB root holds no filesystem (only a marker at its start): its instances run
/// as plain processes on the host.
fn blank_ami(server: &Server, name: &str) -> String {
    ami_of(server, name, None)
}

/// An AMI whose root is an ext4 filesystem with `motd` as /etc/motd, or with `None` no
/// filesystem at all.
fn ami_of(server: &Server, name: &str, motd: Option<&str>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("root.img");
    let Some(motd) = motd else {
        std::fs::write(&img, b"no filesystem here").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&img)
            .unwrap()
            .set_len(1 << 30)
            .unwrap();
        return register(server, name, &img);
    };
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/motd"), motd).unwrap();
    let img = dir.path().join("root.img");
    let f = std::fs::File::create(&img).unwrap();
    f.set_len(1 << 30).unwrap();
    drop(f);
    run_tool(
        "mkfs.ext4",
        &[
            "-q".as_ref(),
            "-F".as_ref(),
            "-d".as_ref(),
            root.as_os_str(),
            img.as_os_str(),
        ],
    )
    .assert_success();
    register(server, name, &img)
}

/// Copies the 1 GiB image `img` into a new volume, snapshots it, and registers an AMI of it.
fn register(server: &Server, name: &str, img: &Path) -> String {
    let (volume_id, host, uri) = server.attach_new_volume(1);
    run_tool("nbdcopy", &[img.to_str().unwrap(), &uri]).assert_success();
    server.detach(&volume_id);
    let mut c = server.client();
    server.ok(
        "DeregisterHost",
        server.block_on(c.deregister_host(pb::DeregisterHostRequest { instance_id: host })),
    );
    let snap = server.snapshot_completed(&volume_id);
    let image = server.ok(
        "RegisterImage",
        server.block_on(c.register_image(pb::RegisterImageRequest {
            name: name.into(),
            root_device_name: "/dev/xvda".into(),
            block_device_mappings: vec![pb::BlockDeviceMapping {
                device_name: "/dev/xvda".into(),
                ebs: Some(pb::EbsBlockDevice {
                    snapshot_id: Some(snap),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        })),
    );
    image.image_id
}

/// The workload of the lifecycle test: prints the AMI's motd (read from the root device through
/// nbdcopy and debugfs), whether the data volume and instance store carry this test's markers
/// (writing them if not), then "ready", and waits.
const WORKLOAD: &str = r#"
set -u
echo "boot"
nbdcopy "$EBS_ROOT_DEVICE" root.img
echo "motd: $(debugfs -R 'cat /etc/motd' root.img 2>/dev/null)"
rm -f root.img
check() {
  if qemu-io -f raw -t writeback -c "read -P $2 0 4k" "$1" 2>&1 | grep -q 'Pattern verification failed'; then
    echo "$3: absent"
    qemu-io -f raw -t writeback -c "write -P $2 0 4k" -c flush "$1" >/dev/null
  else
    echo "$3: present"
  fi
}
check "$EBS_DEVICE_SDF" 0x4d marker
check "$EBS_DEVICE_EPHEMERAL0" 0x45 ephemeral
echo "devices: $(grep -c NbdUri "$EBS_DEVICES_FILE")"
echo ready
exec sleep 120
"#;

fn describe(server: &Server, id: &str) -> pb::Instance {
    let mut c = server.client();
    let r = server.ok(
        "DescribeInstances",
        server.block_on(c.describe_instances(pb::DescribeInstancesRequest {
            instance_ids: vec![id.into()],
            ..Default::default()
        })),
    );
    r.reservations[0].instances[0].clone()
}

fn wait_state(server: &Server, id: &str, state: &str) -> pb::Instance {
    let deadline = Instant::now() + WAIT;
    loop {
        let i = describe(server, id);
        if i.state.as_ref().unwrap().name == state {
            return i;
        }
        assert!(Instant::now() < deadline, "never {state}: {i:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn console(server: &Server, id: &str) -> String {
    let mut c = server.client();
    let out = server.ok(
        "GetConsoleOutput",
        server.block_on(c.get_console_output(pb::GetConsoleOutputRequest {
            instance_id: id.into(),
        })),
    );
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(out.output)
            .unwrap(),
    )
    .unwrap()
}

/// Waits until the console shows `n` boots that reached "ready"; returns the text of boot `n`.
fn wait_boot(server: &Server, id: &str, n: usize) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = console(server, id);
        let boots: Vec<&str> = text.split("boot\n").skip(1).collect();
        if boots.len() >= n && boots[n - 1].contains("ready") {
            return boots[n - 1].to_string();
        }
        assert!(
            Instant::now() < deadline,
            "boot {n} never got ready; console:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn launch(server: &Server, req: pb::RunInstancesRequest) -> pb::Reservation {
    let mut c = server.client();
    server.ok("RunInstances", server.block_on(c.run_instances(req)))
}

fn ids(id: &str) -> pb::InstanceIdsRequest {
    pb::InstanceIdsRequest {
        instance_ids: vec![id.into()],
    }
}

fn data_mapping(dot: bool) -> pb::BlockDeviceMapping {
    pb::BlockDeviceMapping {
        device_name: "/dev/sdf".into(),
        ebs: Some(pb::EbsBlockDevice {
            volume_size: Some(1),
            volume_type: Some("gp3".into()),
            delete_on_termination: Some(dot),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn volume_of(i: &pb::Instance, device: &str) -> String {
    i.block_device_mappings
        .iter()
        .find(|m| m.device_name == device)
        .and_then(|m| m.ebs.as_ref())
        .map(|e| e.volume_id.clone())
        .unwrap_or_else(|| panic!("no {device} in {i:?}"))
}

fn volume_exists(server: &Server, id: &str) -> bool {
    let mut c = server.client();
    match server.block_on(c.describe_volumes(pb::DescribeVolumesRequest {
        volume_ids: vec![id.into()],
        ..Default::default()
    })) {
        Ok(_) => true,
        Err(s) => {
            assert_eq!(ec2_code(&s).as_deref(), Some("InvalidVolume.NotFound"));
            false
        }
    }
}

fn tools() -> bool {
    require_tools(&["mkfs.ext4", "debugfs", "nbdcopy", "qemu-io", "nbdinfo"])
}

#[test]
fn lifecycle_keeps_ebs_and_erases_instance_store() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_args(dir.path(), &["--instance-stop-timeout", "5s"]);
    let ami = ext4_ami(&server, "ext4-root", "hello from the AMI");
    let r = launch(
        &server,
        pb::RunInstancesRequest {
            image_id: ami.clone(),
            instance_type: Some("m5d.large".into()),
            block_device_mappings: vec![data_mapping(false)],
            workload: Some(WORKLOAD.into()),
            ..Default::default()
        },
    );
    assert_eq!(r.instances.len(), 1);
    let launched = &r.instances[0];
    assert_eq!(launched.state.as_ref().unwrap().name, "pending");
    let id = launched.instance_id.clone();
    assert_eq!(
        launched.instance_store_devices.len(),
        1,
        "m5d.large: 1 x 75 GB"
    );
    assert_eq!(
        launched.instance_store_devices[0].virtual_name,
        "ephemeral0"
    );
    let running = wait_state(&server, &id, "running");
    let root = volume_of(&running, "/dev/xvda");
    let data = volume_of(&running, "/dev/sdf");
    assert!(running.workload_pid.is_some());
    let first_uri = running.device_uris["/dev/sdf"].clone();

    let boot1 = wait_boot(&server, &id, 1);
    assert!(boot1.contains("motd: hello from the AMI"), "{boot1}");
    assert!(boot1.contains("marker: absent"), "{boot1}");
    assert!(boot1.contains("ephemeral: absent"), "{boot1}");
    assert!(boot1.contains("devices: 3"), "{boot1}");
    let devices: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&running.devices_file).unwrap()).unwrap();
    assert_eq!(devices["InstanceId"], id.as_str());

    // Reboot: same state, workload restarted, instance store kept.
    let mut c = server.client();
    server.ok(
        "RebootInstances",
        server.block_on(c.reboot_instances(ids(&id))),
    );
    let boot2 = wait_boot(&server, &id, 2);
    assert!(boot2.contains("marker: present"), "{boot2}");
    assert!(boot2.contains("ephemeral: present"), "{boot2}");
    assert_eq!(describe(&server, &id).state.unwrap().name, "running");

    // Stop: EBS stays attached, instance store is erased, the old export names die.
    let stop = server.ok(
        "StopInstances",
        server.block_on(c.stop_instances(pb::StopInstancesRequest {
            instance_ids: vec![id.clone()],
            ..Default::default()
        })),
    );
    assert_eq!(
        stop.instances[0].current_state.as_ref().unwrap().name,
        "stopping"
    );
    assert_eq!(
        stop.instances[0].previous_state.as_ref().unwrap().name,
        "running"
    );
    let stopped = wait_state(&server, &id, "stopped");
    assert_eq!(
        stopped.state_reason.as_ref().unwrap().code,
        "Client.UserInitiatedShutdown"
    );
    assert!(stopped.device_uris.is_empty() && stopped.workload_pid.is_none());
    assert_eq!(server.describe_volume(&data).state, "in-use");
    assert!(
        !Path::new(&running.devices_file)
            .with_file_name("ephemeral0.img")
            .exists(),
        "instance store erased on stop"
    );
    run_tool("nbdinfo", &[first_uri.as_str()]).assert_failure();
    // Stopping a stopped instance is not an error; rebooting one is.
    let again = server.ok(
        "StopInstances",
        server.block_on(c.stop_instances(pb::StopInstancesRequest {
            instance_ids: vec![id.clone()],
            ..Default::default()
        })),
    );
    assert_eq!(
        again.instances[0].current_state.as_ref().unwrap().name,
        "stopped"
    );
    assert_eq!(
        code(server.block_on(c.reboot_instances(ids(&id)))),
        "IncorrectInstanceState"
    );

    // Start: the marker is still there, instance store is empty.
    let start = server.ok(
        "StartInstances",
        server.block_on(c.start_instances(ids(&id))),
    );
    assert_eq!(
        start.instances[0].current_state.as_ref().unwrap().name,
        "pending"
    );
    let restarted = wait_state(&server, &id, "running");
    assert_ne!(
        restarted.device_uris["/dev/sdf"], first_uri,
        "new export names"
    );
    let boot3 = wait_boot(&server, &id, 3);
    assert!(boot3.contains("motd: hello from the AMI"), "{boot3}");
    assert!(boot3.contains("marker: present"), "{boot3}");
    assert!(boot3.contains("ephemeral: absent"), "{boot3}");

    // Terminate: the root (DeleteOnTermination by default) goes, the data volume stays.
    let term = server.ok(
        "TerminateInstances",
        server.block_on(c.terminate_instances(ids(&id))),
    );
    assert_eq!(
        term.instances[0].current_state.as_ref().unwrap().name,
        "shutting-down"
    );
    wait_state(&server, &id, "terminated");
    assert!(
        !volume_exists(&server, &root),
        "root deleted on termination"
    );
    assert_eq!(server.describe_volume(&data).state, "available");
    assert_eq!(
        code(server.block_on(c.start_instances(ids(&id)))),
        "IncorrectInstanceState"
    );
    assert_eq!(
        code(server.block_on(c.attach_volume(pb::AttachVolumeRequest {
            volume_id: data.clone(),
            instance_id: id.clone(),
            device: "/dev/sdg".into(),
        }))),
        "IncorrectInstanceState"
    );
}

#[test]
fn workload_exit_follows_shutdown_behavior_and_bad_requests_are_refused() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let ami = ext4_ami(&server, "exit-test", "x");
    let launch_exiting = |behavior: &str| {
        launch(
            &server,
            pb::RunInstancesRequest {
                image_id: ami.clone(),
                instance_type: Some("t3.micro".into()),
                workload: Some("echo bye; exit 3".into()),
                instance_initiated_shutdown_behavior: Some(behavior.into()),
                ..Default::default()
            },
        )
        .instances[0]
            .clone()
    };
    let stops = launch_exiting("stop");
    let terminates = launch_exiting("terminate");
    let stopped = wait_state(&server, &stops.instance_id, "stopped");
    assert_eq!(
        stopped.state_reason.as_ref().unwrap().code,
        "Client.InstanceInitiatedShutdown"
    );
    assert!(console(&server, &stops.instance_id).contains("bye"));
    assert!(volume_exists(&server, &volume_of(&stopped, "/dev/xvda")));
    let terminated = wait_state(&server, &terminates.instance_id, "terminated");
    let gone_root = terminates.block_device_mappings[0]
        .ebs
        .as_ref()
        .unwrap()
        .volume_id
        .clone();
    assert!(!volume_exists(&server, &gone_root), "{terminated:?}");

    // User data runs when no command is given (on the host: the AMI has no filesystem to boot).
    let script = "#!/bin/sh\necho from-user-data\nexit 0\n";
    let ud = launch(
        &server,
        pb::RunInstancesRequest {
            image_id: blank_ami(&server, "user-data"),
            user_data: Some(base64::engine::general_purpose::STANDARD.encode(script)),
            ..Default::default()
        },
    )
    .instances[0]
        .clone();
    assert_eq!(ud.instance_type, "m5.large");
    wait_state(&server, &ud.instance_id, "stopped");
    assert!(console(&server, &ud.instance_id).contains("from-user-data"));

    // Filters and reservations.
    let mut c = server.client();
    let by_state = server.ok(
        "DescribeInstances",
        server.block_on(c.describe_instances(pb::DescribeInstancesRequest {
            filters: vec![pb::Filter {
                name: "instance-state-name".into(),
                values: vec!["stopped".into()],
            }],
            ..Default::default()
        })),
    );
    let found: Vec<&str> = by_state
        .reservations
        .iter()
        .flat_map(|r| r.instances.iter().map(|i| i.instance_id.as_str()))
        .collect();
    assert!(
        found.contains(&stops.instance_id.as_str()) && found.contains(&ud.instance_id.as_str())
    );
    assert!(!found.contains(&terminates.instance_id.as_str()));

    // Errors.
    let bad = |req: pb::RunInstancesRequest| code(server.block_on(c.clone().run_instances(req)));
    assert_eq!(
        bad(pb::RunInstancesRequest {
            image_id: "ami-0123456789abcdef0".into(),
            ..Default::default()
        }),
        "InvalidAMIID.NotFound"
    );
    assert_eq!(
        bad(pb::RunInstancesRequest {
            image_id: ami.clone(),
            instance_type: Some("m5.gigantic".into()),
            ..Default::default()
        }),
        "InvalidParameterValue"
    );
    assert_eq!(
        bad(pb::RunInstancesRequest {
            image_id: ami.clone(),
            block_device_mappings: vec![pb::BlockDeviceMapping {
                device_name: "/dev/xvda".into(),
                no_device: Some(String::new()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        "InvalidBlockDeviceMapping"
    );
    assert_eq!(
        bad(pb::RunInstancesRequest {
            image_id: ami.clone(),
            min_count: 3,
            max_count: 2,
            ..Default::default()
        }),
        "InvalidParameterValue"
    );
    assert_eq!(
        code(server.block_on(c.stop_instances(pb::StopInstancesRequest {
            instance_ids: vec!["i-0123456789abcdef0".into()],
            ..Default::default()
        }))),
        "InvalidInstanceID.NotFound"
    );
    assert_eq!(
        code(
            server.block_on(c.deregister_host(pb::DeregisterHostRequest {
                instance_id: stops.instance_id.clone(),
            }))
        ),
        "OperationNotPermitted"
    );
    // DisableApiTermination.
    let protected = launch(
        &server,
        pb::RunInstancesRequest {
            image_id: ami.clone(),
            disable_api_termination: true,
            ..Default::default()
        },
    )
    .instances[0]
        .instance_id
        .clone();
    assert_eq!(
        code(server.block_on(c.terminate_instances(ids(&protected)))),
        "OperationNotPermitted"
    );
}

#[test]
fn create_image_from_a_running_instance_boots_an_identical_root() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_args(dir.path(), &["--snapshot-min-interval", "0s"]);
    let ami = ext4_ami(&server, "base", "base image");
    // The workload changes its root: a pattern in the last MiB (past the filesystem's data).
    let first = launch(&server,
        pb::RunInstancesRequest {
            image_id: ami,
            workload: Some(
                "qemu-io -f raw -t writeback -c 'write -P 0x77 1023M 1M' -c flush \"$EBS_ROOT_DEVICE\" && echo written; exec sleep 120".into(),
            ),
            ..Default::default()
        },
    )
    .instances[0]
        .instance_id
        .clone();
    wait_state(&server, &first, "running");
    let deadline = Instant::now() + WAIT;
    while !console(&server, &first).contains("written") {
        assert!(Instant::now() < deadline, "{}", console(&server, &first));
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut c = server.client();
    let image = server
        .ok(
            "CreateImage",
            server.block_on(c.create_image(pb::CreateImageRequest {
                instance_id: first.clone(),
                name: "from-instance".into(),
                ..Default::default()
            })),
        )
        .image_id;
    let deadline = Instant::now() + WAIT;
    loop {
        let d = server.ok(
            "DescribeImages",
            server.block_on(c.describe_images(pb::DescribeImagesRequest {
                image_ids: vec![image.clone()],
                ..Default::default()
            })),
        );
        match d.images[0].state.as_str() {
            "available" => break,
            "pending" => {}
            other => panic!("image {other}: {d:?}"),
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    // The instance was rebooted for the image and runs again.
    let running = wait_state(&server, &first, "running");
    // A command of its own: without one, the instance would boot the ext4 root (and mounting
    // it changes it).
    let second = launch(
        &server,
        pb::RunInstancesRequest {
            image_id: image,
            workload: Some("exec sleep 600".into()),
            ..Default::default()
        },
    )
    .instances[0]
        .instance_id
        .clone();
    let booted = wait_state(&server, &second, "running");
    let tmp = tempfile::tempdir().unwrap();
    let copy = |uri: &str, name: &str| {
        let path = tmp.path().join(name);
        run_tool("nbdcopy", &[uri, path.to_str().unwrap()]).assert_success();
        std::fs::read(path).unwrap()
    };
    let a = copy(&running.device_uris["/dev/xvda"], "a.img");
    let b = copy(&booted.device_uris["/dev/xvda"], "b.img");
    assert_eq!(a.len(), 1 << 30);
    assert!(a == b, "the new AMI's root differs from the instance's");
    assert!(a[(1023 << 20)..].iter().all(|&x| x == 0x77));
    for id in [&first, &second] {
        server.ok(
            "TerminateInstances",
            server.block_on(c.terminate_instances(ids(id))),
        );
    }
    wait_state(&server, &first, "terminated");
}

#[test]
fn running_workloads_are_adopted_after_a_crash_and_dead_ones_stopped() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let ami = ext4_ami(&server, "adopt", "x");
    let launch_sleeping = || {
        let id = launch(
            &server,
            pb::RunInstancesRequest {
                image_id: ami.clone(),
                instance_type: Some("m5d.large".into()),
                workload: Some("exec sleep 120".into()),
                ..Default::default()
            },
        )
        .instances[0]
            .instance_id
            .clone();
        wait_state(&server, &id, "running")
    };
    let survivor = launch_sleeping();
    let victim = launch_sleeping();
    server.kill9();
    // While the server is down, one workload dies.
    let victim_pid = victim.workload_pid.unwrap();
    // SAFETY: kill(2) with a pid this test launched; no memory is involved.
    unsafe {
        libc::kill(victim_pid, libc::SIGKILL);
    }
    std::thread::sleep(Duration::from_millis(200));
    let server = Server::start(dir.path());
    let adopted = describe(&server, &survivor.instance_id);
    assert_eq!(adopted.state.as_ref().unwrap().name, "running");
    assert_eq!(adopted.workload_pid, survivor.workload_pid);
    // Its disks serve under the same export names, instance store included (the port is new:
    // the test server listens on port 0).
    assert_eq!(adopted.device_uris.len(), 2);
    for (device, uri) in &adopted.device_uris {
        let (_, before) = split_nbd_uri(&survivor.device_uris[device]);
        let (_, now) = split_nbd_uri(uri);
        assert_eq!(before, now, "{device}");
        run_tool("nbdinfo", &[uri.as_str()]).assert_success();
    }
    let dead = describe(&server, &victim.instance_id);
    assert_eq!(dead.state.as_ref().unwrap().name, "stopped");
    assert_eq!(dead.state_reason.unwrap().code, "Server.InternalError");
    // The adopted workload's own exit is still noticed.
    // SAFETY: as above.
    unsafe {
        libc::kill(survivor.workload_pid.unwrap(), libc::SIGKILL);
    }
    wait_state(&server, &survivor.instance_id, "stopped");
}

fn ebsctl(bin: &Path, server: &Server, args: &[&str]) -> Output {
    run(std::process::Command::new(bin)
        .env_remove("EBS_ENDPOINT")
        .arg("--endpoint")
        .arg(server.endpoint())
        .args(args))
}

fn ebsctl_json(bin: &Path, server: &Server, args: &[&str]) -> serde_json::Value {
    let out = ebsctl(bin, server, args);
    out.assert_success();
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", out.describe()))
}

#[test]
fn ebsctl_instance_commands() {
    let Some(bin) = ebsctl_path() else {
        skip("ebsctl is not built next to the test binary (run `cargo test --workspace`)");
        return;
    };
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let ami = ext4_ami(&server, "cli", "from the cli");
    let fast = ["--delay", "0.2"];
    let r = ebsctl_json(
        &bin,
        &server,
        &[
            "run-instances",
            "--image-id",
            &ami,
            "--instance-type",
            "i3.large",
            "--count",
            "2",
            "--placement",
            "AvailabilityZone=us-east-1b",
            "--block-device-mappings",
            "DeviceName=/dev/sdf,Ebs={VolumeSize=2,VolumeType=gp3,DeleteOnTermination=false}",
            "--tag-specifications",
            "ResourceType=instance,Tags=[{Key=Name,Value=cli}]",
            "--workload",
            "echo \"root is $EBS_ROOT_DEVICE\"; exec sleep 120",
        ],
    );
    let ids: Vec<String> = r["Instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["InstanceId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2, "{r}");
    assert_eq!(r["Instances"][0]["State"]["Name"], "pending");
    assert_eq!(
        r["Instances"][0]["Placement"]["AvailabilityZone"],
        "us-east-1b"
    );
    let mut wait = vec!["wait", "instance-running", "--instance-ids"];
    wait.extend(ids.iter().map(String::as_str));
    wait.extend(fast);
    ebsctl(&bin, &server, &wait).assert_success();
    // Subnets and security groups reach the server: only the default ones exist.
    for (flag, id, code) in [
        (
            "--subnet-id",
            "subnet-0123456789abcdef0",
            "InvalidSubnetID.NotFound",
        ),
        (
            "--security-group-ids",
            "sg-0123456789abcdef0",
            "InvalidGroup.NotFound",
        ),
        ("--security-groups", "web", "InvalidGroup.NotFound"),
    ] {
        let out = ebsctl(
            &bin,
            &server,
            &["run-instances", "--image-id", &ami, flag, id],
        );
        assert_eq!(out.status.code(), Some(254), "{}", out.describe());
        assert!(out.stderr.contains(code), "{}", out.describe());
    }
    let d = ebsctl_json(
        &bin,
        &server,
        &[
            "describe-instances",
            "--filters",
            "Name=tag:Name,Values=cli",
            "Name=instance-state-name,Values=running",
        ],
    );
    let i = &d["Reservations"][0]["Instances"];
    assert_eq!(i.as_array().unwrap().len(), 2, "{d}");
    assert_eq!(i[0]["InstanceType"], "i3.large");
    assert_eq!(
        i[0]["InstanceStoreDevices"][0]["SizeBytes"],
        475_000_000_000u64 & !4095
    );
    assert_eq!(i[0]["BlockDeviceMappings"].as_array().unwrap().len(), 2);
    let deadline = Instant::now() + WAIT;
    loop {
        let c = ebsctl_json(
            &bin,
            &server,
            &["get-console-output", "--instance-id", &ids[0]],
        );
        if c["Output"].as_str().unwrap().contains("root is nbd://") {
            break;
        }
        assert!(Instant::now() < deadline, "{c}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let img = ebsctl_json(
        &bin,
        &server,
        &[
            "create-image",
            "--instance-id",
            &ids[0],
            "--name",
            "cli-image",
            "--no-reboot",
        ],
    );
    let image_id = img["ImageId"].as_str().unwrap().to_string();
    let mut wait_img = vec!["wait", "image-available", "--image-ids", &image_id];
    wait_img.extend(fast);
    ebsctl(&bin, &server, &wait_img).assert_success();

    let stop = ebsctl_json(
        &bin,
        &server,
        &["stop-instances", "--instance-ids", &ids[0]],
    );
    assert_eq!(
        stop["StoppingInstances"][0]["CurrentState"]["Name"],
        "stopping"
    );
    let mut wait_stopped = vec!["wait", "instance-stopped", "--instance-ids", &ids[0]];
    wait_stopped.extend(fast);
    ebsctl(&bin, &server, &wait_stopped).assert_success();
    let start = ebsctl_json(
        &bin,
        &server,
        &["start-instances", "--instance-ids", &ids[0]],
    );
    assert_eq!(
        start["StartingInstances"][0]["PreviousState"]["Name"],
        "stopped"
    );
    ebsctl(
        &bin,
        &server,
        &["reboot-instances", "--instance-ids", &ids[1]],
    )
    .assert_success();
    let out = ebsctl(
        &bin,
        &server,
        &["reboot-instances", "--instance-ids", "i-0123456789abcdef0"],
    );
    out.assert_failure();
    assert!(
        out.stderr.contains("InvalidInstanceID.NotFound"),
        "{}",
        out.describe()
    );

    let mut term = vec!["terminate-instances", "--instance-ids"];
    term.extend(ids.iter().map(String::as_str));
    let t = ebsctl_json(&bin, &server, &term);
    assert_eq!(t["TerminatingInstances"].as_array().unwrap().len(), 2);
    let mut wait_term = vec!["wait", "instance-terminated", "--instance-ids"];
    wait_term.extend(ids.iter().map(String::as_str));
    wait_term.extend(fast);
    ebsctl(&bin, &server, &wait_term).assert_success();
    // The data volumes (DeleteOnTermination=false) outlive their instances.
    let v = ebsctl_json(
        &bin,
        &server,
        &["describe-volumes", "--filters", "Name=size,Values=2"],
    );
    assert_eq!(v["Volumes"].as_array().unwrap().len(), 2, "{v}");
    assert!(
        v["Volumes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["State"] == "available")
    );
}

/// A plain-process instance finds its metadata service where the AWS SDKs look first
/// (`AWS_EC2_METADATA_SERVICE_ENDPOINT`): botocore's own fetchers read its identity document
/// (over an IMDSv2 session) and its region; curl sees v1 answered too.
#[test]
fn a_plain_instance_reads_its_metadata_where_the_sdks_look() {
    let botocore = std::process::Command::new("python3")
        .args(["-c", "import botocore"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !require_tools(&["curl"])
        || (!botocore && !skip("python3 cannot import botocore (pip install boto3)"))
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let ami = blank_ami(&server, "plain");
    const READER: &str = r#"
echo "boot"
echo "endpoint: $AWS_EC2_METADATA_SERVICE_ENDPOINT"
python3 -c '
import json, os, botocore.session, botocore.utils as u
endpoint = os.environ["AWS_EC2_METADATA_SERVICE_ENDPOINT"]
f = u.IMDSFetcher(timeout=2, num_attempts=3, config={"ec2_metadata_service_endpoint": endpoint})
token = f._fetch_metadata_token()
doc = json.loads(f._get_request("latest/dynamic/instance-identity/document", None, token).text)
print("document:", doc["instanceId"], doc["instanceType"], doc["region"])
print("region:", u.IMDSRegionProvider(botocore.session.get_session()).provide())
'
echo "v1: $(curl -s -m 5 "$AWS_EC2_METADATA_SERVICE_ENDPOINT/latest/meta-data/instance-id")"
echo ready
exec sleep 120
"#;
    let r = launch(
        &server,
        pb::RunInstancesRequest {
            image_id: ami,
            instance_type: Some("t3.micro".into()),
            workload: Some(READER.into()),
            ..Default::default()
        },
    );
    let id = r.instances[0].instance_id.clone();
    let boot = wait_boot(&server, &id, 1);
    assert!(boot.contains("endpoint: http://127."), "{boot}");
    assert!(
        boot.contains(&format!("document: {id} t3.micro us-east-1")),
        "{boot}"
    );
    assert!(boot.contains("region: us-east-1"), "{boot}");
    assert!(boot.contains(&format!("v1: {id}")), "{boot}");
    // Stopped, it has no metadata service: the address answers nothing.
    let url = boot
        .lines()
        .find_map(|l| l.strip_prefix("endpoint: "))
        .unwrap()
        .to_string();
    let mut c = server.client();
    server.ok(
        "StopInstances",
        server.block_on(c.stop_instances(pb::StopInstancesRequest {
            instance_ids: vec![id.clone()],
            ..Default::default()
        })),
    );
    wait_state(&server, &id, "stopped");
    let after = run(std::process::Command::new("curl").args([
        "-s",
        "-m",
        "3",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("{url}/latest/meta-data/instance-id"),
    ]));
    assert_eq!(after.stdout.trim(), "000", "{after:?}");
    server.stop();
}
