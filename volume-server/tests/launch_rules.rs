//! RunInstances under races and the root-volume rules, against a real server: one client
//! token launched by 16 concurrent calls makes one instance; the root volume of an instance
//! that is not stopped cannot be detached (nor so deleted), and an instance whose root was
//! detached while stopped does not start.

mod common;

use common::*;
use proto::ebs::v1 as pb;

/// An AMI whose root (`/dev/xvda`) is a snapshot of an empty 1 GiB volume.
fn empty_ami(server: &Server) -> String {
    let v = server.create_volume(1);
    let snap = server.snapshot_completed(&v.volume_id);
    let mut c = server.client();
    server
        .ok(
            "RegisterImage",
            server.block_on(c.register_image(pb::RegisterImageRequest {
                name: "empty".into(),
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
        )
        .image_id
}

fn all_instances(server: &Server) -> Vec<pb::Instance> {
    let mut c = server.client();
    server
        .ok(
            "DescribeInstances",
            server.block_on(c.describe_instances(pb::DescribeInstancesRequest::default())),
        )
        .reservations
        .into_iter()
        .flat_map(|r| r.instances)
        .collect()
}

fn volume_count(server: &Server) -> usize {
    volume_ids(server).len()
}

fn state_of(server: &Server, id: &str) -> String {
    all_instances(server)
        .into_iter()
        .find(|i| i.instance_id == id)
        .and_then(|i| i.state)
        .map(|s| s.name)
        .unwrap_or_default()
}

fn wait_instance(server: &Server, id: &str, want: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while state_of(server, id) != want {
        assert!(std::time::Instant::now() < deadline, "{id} never {want}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn run(server: &Server, ami: &str, token: Option<&str>) -> pb::Reservation {
    let mut c = server.client();
    server.ok(
        "RunInstances",
        server.block_on(c.run_instances(pb::RunInstancesRequest {
            image_id: ami.into(),
            instance_type: Some("t3.micro".into()),
            workload: Some("exec sleep 600".into()),
            client_token: token.map(str::to_owned),
            ..Default::default()
        })),
    )
}

/// An instance of an empty AMI, running: `(instance, root volume id)`.
fn running_instance(server: &Server) -> (pb::Instance, String) {
    let ami = empty_ami(server);
    let i = run(server, &ami, None).instances[0].clone();
    let root = i.block_device_mappings[0]
        .ebs
        .as_ref()
        .unwrap()
        .volume_id
        .clone();
    wait_instance(server, &i.instance_id, "running");
    (i, root)
}

#[test]
fn one_client_token_launches_once_under_concurrent_calls() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let ami = empty_ami(&server);
    let volumes_before = volume_count(&server);
    for round in 0..40 {
        let token = format!("launch-{round}");
        let answers: Vec<pb::Reservation> = std::thread::scope(|s| {
            let calls: Vec<_> = (0..16)
                .map(|_| s.spawn(|| run(&server, &ami, Some(&token))))
                .collect();
            calls.into_iter().map(|c| c.join().unwrap()).collect()
        });
        let ids: std::collections::BTreeSet<(String, String)> = answers
            .iter()
            .map(|r| (r.reservation_id.clone(), r.instances[0].instance_id.clone()))
            .collect();
        assert_eq!(
            ids.len(),
            1,
            "round {round}: one token, several launches: {ids:?}"
        );
        for r in &answers {
            assert_eq!(r.instances.len(), 1, "{r:?}");
        }
    }
    assert_eq!(all_instances(&server).len(), 40);
    assert_eq!(
        volume_count(&server),
        volumes_before + 40,
        "one root volume per launch"
    );
    // A retry later answers with the same reservation.
    let again = run(&server, &ami, Some("launch-0"));
    assert_eq!(again.instances.len(), 1);
    server.stop();
}

#[test]
fn a_root_volume_stays_while_its_instance_is_not_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (i, root) = running_instance(&server);
    let mut c = server.client();
    let detach = |force: bool| {
        let mut c = server.client();
        server.block_on(c.detach_volume(pb::DetachVolumeRequest {
            volume_id: root.clone(),
            force,
            ..Default::default()
        }))
    };
    for force in [false, true] {
        let refused = detach(force).expect_err("detaching a running instance's root");
        assert_eq!(
            ec2_code(&refused).as_deref(),
            Some("OperationNotPermitted"),
            "{refused:?}"
        );
    }
    let refused = server
        .block_on(c.delete_volume(pb::DeleteVolumeRequest {
            volume_id: root.clone(),
        }))
        .expect_err("deleting a running instance's root");
    assert_eq!(ec2_code(&refused).as_deref(), Some("VolumeInUse"));
    assert_eq!(server.describe_volume(&root).state, "in-use");

    // Stopped, the root may be detached; the instance then does not start.
    server.ok(
        "StopInstances",
        server.block_on(c.stop_instances(pb::StopInstancesRequest {
            instance_ids: vec![i.instance_id.clone()],
            ..Default::default()
        })),
    );
    wait_instance(&server, &i.instance_id, "stopped");
    server.ok("DetachVolume of a stopped instance's root", detach(false));
    server.wait_volume_state(&root, "available");
    let refused = server
        .block_on(c.start_instances(pb::InstanceIdsRequest {
            instance_ids: vec![i.instance_id.clone()],
        }))
        .expect_err("starting without a root volume");
    assert_eq!(
        ec2_code(&refused).as_deref(),
        Some("IncorrectInstanceState"),
        "{refused:?}"
    );
    assert_eq!(state_of(&server, &i.instance_id), "stopped");

    // Attached again at the root device, it starts.
    server.ok(
        "AttachVolume at the root device",
        server.block_on(c.attach_volume(pb::AttachVolumeRequest {
            volume_id: root.clone(),
            instance_id: i.instance_id.clone(),
            device: "/dev/xvda".into(),
        })),
    );
    server.ok(
        "StartInstances",
        server.block_on(c.start_instances(pb::InstanceIdsRequest {
            instance_ids: vec![i.instance_id.clone()],
        })),
    );
    wait_instance(&server, &i.instance_id, "running");
    server.stop();
}

/// Concurrent CreateImage calls on one instance, and CreateImage right after a CreateSnapshot of
/// its root, all succeed: CreateImage never fails with an error of CreateSnapshot's limits.
#[test]
fn create_image_is_not_held_to_create_snapshot_limits() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (i, root) = running_instance(&server);
    let create_image = |name: String| {
        let mut c = server.client();
        server.block_on(c.create_image(pb::CreateImageRequest {
            instance_id: i.instance_id.clone(),
            name,
            no_reboot: true,
            ..Default::default()
        }))
    };
    let results: Vec<_> = std::thread::scope(|s| {
        let calls: Vec<_> = (0..4)
            .map(|n| s.spawn(move || create_image(format!("concurrent-{n}"))))
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    for r in results {
        server.ok("concurrent CreateImage", r);
    }
    let mut c = server.client();
    server.ok(
        "CreateSnapshot of the root",
        server.block_on(c.create_snapshot(pb::CreateSnapshotRequest {
            volume_id: root,
            ..Default::default()
        })),
    );
    server.ok(
        "CreateImage right after a CreateSnapshot",
        create_image("after-a-snapshot".into()),
    );
    server.stop();
}

/// The volume files in the data directory (`*.img` under every zone).
fn volume_files(dir: &std::path::Path) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for zone in std::fs::read_dir(dir).unwrap().flatten() {
        let Ok(files) = std::fs::read_dir(zone.path().join("volumes")) else {
            continue;
        };
        for f in files.flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_suffix(".img") {
                out.insert(id.to_string());
            }
        }
    }
    out
}

fn volume_ids(server: &Server) -> std::collections::BTreeSet<String> {
    let mut c = server.client();
    server
        .ok(
            "DescribeVolumes",
            server.block_on(c.describe_volumes(pb::DescribeVolumesRequest::default())),
        )
        .volumes
        .into_iter()
        .map(|v| v.volume_id)
        .collect()
}

/// Finding 7 of issue 18: a launch is all or nothing across a crash. RunInstances of two
/// instances with three volumes each, the server killed (SIGKILL, through `EBS_CRASH_AT`) after
/// each of the call's catalog commits in turn: after a restart either none of it is there or
/// all of it (two instances, each with its three volumes attached), no volume is left over, no
/// volume file without a record, and a retry with the same client token launches exactly once.
#[test]
fn a_crash_at_each_step_of_run_instances_leaves_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ami = {
        let server = Server::start(dir.path());
        let ami = empty_ami(&server);
        server.stop();
        ami
    };
    let request = |token: &str| pb::RunInstancesRequest {
        image_id: ami.clone(),
        instance_type: Some("t3.micro".into()),
        min_count: 2,
        max_count: 2,
        client_token: Some(token.into()),
        block_device_mappings: ["/dev/sdb", "/dev/sdc"]
            .iter()
            .map(|d| pb::BlockDeviceMapping {
                device_name: d.to_string(),
                ebs: Some(pb::EbsBlockDevice {
                    volume_size: Some(1),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let mut crashed = 0;
    for step in 1..=80 {
        let token = format!("crash-{step}");
        let crash_at = format!("run-instances:{step}");
        let server = Server::start_with_env(dir.path(), &[], &[("EBS_CRASH_AT", &crash_at)]);
        let instances_before: std::collections::BTreeSet<String> = all_instances(&server)
            .into_iter()
            .map(|i| i.instance_id)
            .collect();
        let volumes_before = volume_ids(&server);
        let mut c = server.client();
        let answer = server.block_on(c.run_instances(request(&token)));
        if let Ok(r) = answer {
            // Past the call's last commit: it ran to the end.
            assert_eq!(r.into_inner().instances.len(), 2);
            server.stop();
            break;
        }
        let status = server.wait_exit();
        assert!(!status.success(), "step {step}: {status}");
        crashed += 1;

        let server = Server::start(dir.path());
        let launched: Vec<pb::Instance> = all_instances(&server)
            .into_iter()
            .filter(|i| !instances_before.contains(&i.instance_id))
            .collect();
        assert!(
            launched.is_empty() || launched.len() == 2,
            "step {step}: part of a launch survived: {launched:?}"
        );
        let mut made = std::collections::BTreeSet::new();
        for i in &launched {
            assert_eq!(i.block_device_mappings.len(), 3, "step {step}: {i:?}");
            for m in &i.block_device_mappings {
                let ebs = m.ebs.as_ref().unwrap();
                // `attaching` for the transition time after the launch, as on EC2.
                assert!(
                    ebs.status == "attached" || ebs.status == "attaching",
                    "step {step}: {i:?}"
                );
                made.insert(ebs.volume_id.clone());
            }
        }
        let volumes = volume_ids(&server);
        let expected: std::collections::BTreeSet<String> =
            volumes_before.union(&made).cloned().collect();
        assert_eq!(volumes, expected, "step {step}: volumes left over or lost");
        assert_eq!(
            volume_files(dir.path()),
            volumes,
            "step {step}: volume files and records differ"
        );

        // A retry with the same token: one launch, whatever the crash left.
        let retry = run_request(&server, request(&token));
        assert_eq!(retry.instances.len(), 2, "step {step}: {retry:?}");
        if !launched.is_empty() {
            let ids: std::collections::BTreeSet<&String> =
                retry.instances.iter().map(|i| &i.instance_id).collect();
            assert!(
                launched.iter().all(|i| ids.contains(&i.instance_id)),
                "step {step}: the retry launched again"
            );
        }
        let after = all_instances(&server).len();
        assert_eq!(after, instances_before.len() + 2, "step {step}");
        assert_eq!(volume_files(dir.path()), volume_ids(&server), "step {step}");
        server.stop();
    }
    assert!(crashed >= 20, "only {crashed} crash points were reached");
    eprintln!("RunInstances crashed at each of its {crashed} commits; all or nothing after each");
}

fn run_request(server: &Server, req: pb::RunInstancesRequest) -> pb::Reservation {
    let mut c = server.client();
    server.ok("RunInstances", server.block_on(c.run_instances(req)))
}
