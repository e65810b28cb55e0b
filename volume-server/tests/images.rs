//! AMIs against a real server: RegisterImage from snapshots, DescribeImages, DeregisterImage,
//! and the rule that a snapshot an AMI uses cannot be deleted.

mod common;

use common::*;
use proto::ebs::v1 as pb;

fn code<T: std::fmt::Debug>(r: Result<tonic::Response<T>, tonic::Status>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(s) => ec2_code(&s).unwrap_or_else(|| format!("no code: {s:?}")),
    }
}

fn ebs(snapshot: &str, delete: Option<bool>) -> Option<pb::EbsBlockDevice> {
    Some(pb::EbsBlockDevice {
        snapshot_id: Some(snapshot.into()),
        delete_on_termination: delete,
        ..Default::default()
    })
}

fn register(name: &str, root: &str, data: &str) -> pb::RegisterImageRequest {
    pb::RegisterImageRequest {
        name: name.into(),
        description: Some("test image".into()),
        root_device_name: "/dev/xvda".into(),
        block_device_mappings: vec![
            pb::BlockDeviceMapping {
                device_name: "/dev/xvda".into(),
                ebs: ebs(root, None),
                ..Default::default()
            },
            pb::BlockDeviceMapping {
                device_name: "/dev/sdf".into(),
                ebs: ebs(data, Some(false)),
                ..Default::default()
            },
            pb::BlockDeviceMapping {
                device_name: "/dev/sdb".into(),
                virtual_name: Some("ephemeral0".into()),
                ..Default::default()
            },
        ],
        tag_specifications: vec![pb::TagSpecification {
            resource_type: "image".into(),
            tags: vec![pb::Tag {
                key: "Name".into(),
                value: "web".into(),
            }],
        }],
        ..Default::default()
    }
}

#[test]
fn images_register_from_snapshots_and_pin_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start_with_args(&data, &["--snapshot-min-interval", "0s"]);
    let vol = server.create_volume(1).volume_id;
    let root = server.snapshot_completed(&vol);
    let extra = server.snapshot_completed(&vol);
    let mut c = server.client();

    let image_id = server
        .ok(
            "RegisterImage",
            server.block_on(c.register_image(register("web-server 1.0", &root, &extra))),
        )
        .image_id;
    assert!(
        image_id.starts_with("ami-") && image_id.len() == 21,
        "{image_id}"
    );

    // Rules: unique names, the name alphabet, a root mapped to a snapshot, known snapshots.
    assert_eq!(
        code(server.block_on(c.register_image(register("web-server 1.0", &root, &extra)))),
        "InvalidAMIName.Duplicate"
    );
    assert_eq!(
        code(server.block_on(c.register_image(register("x!", &root, &extra)))),
        "InvalidAMIName.Malformed"
    );
    let mut no_root = register("no-root", &root, &extra);
    no_root.root_device_name = "/dev/sda1".into();
    assert_eq!(
        code(server.block_on(c.register_image(no_root))),
        "InvalidParameterValue"
    );
    assert_eq!(
        code(server.block_on(c.register_image(register(
            "ghost",
            "snap-0123456789abcdef0",
            &extra
        )))),
        "InvalidSnapshot.NotFound"
    );
    let mut bad_ephemeral = register("bad-ephemeral", &root, &extra);
    bad_ephemeral.block_device_mappings[2].virtual_name = Some("ephemeral24".into());
    assert_eq!(
        code(server.block_on(c.register_image(bad_ephemeral))),
        "InvalidBlockDeviceMapping"
    );

    // Describe by id, by filters, by owner; a snapshot the AMI uses cannot be deleted.
    let by_id = server.ok(
        "DescribeImages",
        server.block_on(c.describe_images(pb::DescribeImagesRequest {
            image_ids: vec![image_id.clone()],
            ..Default::default()
        })),
    );
    let img = &by_id.images[0];
    assert_eq!(
        (
            img.state.as_str(),
            img.root_device_type.as_str(),
            img.architecture.as_str()
        ),
        ("available", "ebs", "x86_64")
    );
    assert_eq!(img.block_device_mappings.len(), 3);
    let root_ebs = img.block_device_mappings[0].ebs.as_ref().unwrap();
    assert_eq!(
        root_ebs.delete_on_termination,
        Some(true),
        "root defaults to delete"
    );
    let by_snapshot = server.ok(
        "DescribeImages",
        server.block_on(c.describe_images(pb::DescribeImagesRequest {
            filters: vec![
                pb::Filter {
                    name: "block-device-mapping.snapshot-id".into(),
                    values: vec![extra.clone()],
                },
                pb::Filter {
                    name: "tag:Name".into(),
                    values: vec!["w*".into()],
                },
            ],
            owners: vec!["self".into()],
            ..Default::default()
        })),
    );
    assert_eq!(by_snapshot.images.len(), 1);
    let amazon = server.ok(
        "DescribeImages",
        server.block_on(c.describe_images(pb::DescribeImagesRequest {
            owners: vec!["amazon".into()],
            ..Default::default()
        })),
    );
    assert!(amazon.images.is_empty());
    assert_eq!(
        code(
            server.block_on(c.delete_snapshot(pb::DeleteSnapshotRequest {
                snapshot_id: root.clone(),
            }))
        ),
        "InvalidSnapshot.InUse"
    );

    // The AMI survives a restart; once deregistered, its snapshots can go.
    server.stop();
    let server = Server::start_with_args(&data, &["--snapshot-min-interval", "0s"]);
    let mut c = server.client();
    let again = server.ok(
        "DescribeImages",
        server.block_on(c.describe_images(pb::DescribeImagesRequest {
            image_ids: vec![image_id.clone()],
            ..Default::default()
        })),
    );
    assert_eq!(again.images[0].name, "web-server 1.0");
    server.ok(
        "DeregisterImage",
        server.block_on(c.deregister_image(pb::DeregisterImageRequest {
            image_id: image_id.clone(),
        })),
    );
    assert_eq!(
        code(
            server.block_on(c.deregister_image(pb::DeregisterImageRequest {
                image_id: image_id.clone(),
            }))
        ),
        "InvalidAMIID.NotFound"
    );
    assert_eq!(
        code(
            server.block_on(c.describe_images(pb::DescribeImagesRequest {
                image_ids: vec!["ami-xyz".into()],
                ..Default::default()
            }))
        ),
        "InvalidAMIID.Malformed"
    );
    server.ok(
        "DeleteSnapshot",
        server.block_on(c.delete_snapshot(pb::DeleteSnapshotRequest { snapshot_id: root })),
    );
    server.stop();
}

#[test]
fn instance_types_describe_with_filters_and_paging() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut c = server.client();
    let one = server.ok(
        "DescribeInstanceTypes",
        server.block_on(c.describe_instance_types(pb::DescribeInstanceTypesRequest {
            instance_types: vec!["m5d.large".into(), "i3.large".into()],
            ..Default::default()
        })),
    );
    let by_name = |n: &str| {
        one.instance_types
            .iter()
            .find(|t| t.instance_type == n)
            .unwrap_or_else(|| panic!("{n} missing: {one:?}"))
    };
    let m5d = by_name("m5d.large");
    assert_eq!((m5d.default_vcpus, m5d.memory_size_in_mib), (2, 8192));
    let disks = &m5d.instance_storage_info.as_ref().unwrap().disks;
    assert_eq!((disks[0].count, disks[0].size_in_gb), (1, 75));
    let i3 = by_name("i3.large");
    assert_eq!(
        i3.instance_storage_info.as_ref().unwrap().disks[0].size_in_gb,
        475
    );
    assert_eq!(
        code(
            server.block_on(c.describe_instance_types(pb::DescribeInstanceTypesRequest {
                instance_types: vec!["m9.huge".into()],
                ..Default::default()
            }))
        ),
        "InvalidInstanceType"
    );
    // Every T family size, 5 per page, none twice.
    let mut seen = vec![];
    let mut token = None;
    loop {
        let page = server.ok(
            "DescribeInstanceTypes",
            server.block_on(c.describe_instance_types(pb::DescribeInstanceTypesRequest {
                filters: vec![pb::Filter {
                    name: "instance-type".into(),
                    values: vec!["t3.*".into()],
                }],
                max_results: Some(5),
                next_token: token.clone(),
                ..Default::default()
            })),
        );
        assert!(page.instance_types.len() <= 5);
        seen.extend(page.instance_types.into_iter().map(|t| t.instance_type));
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
    let mut dedup = seen.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), seen.len());
    assert!(seen.contains(&"t3.nano".to_string()) && seen.contains(&"t3.2xlarge".to_string()));
    assert!(seen.iter().all(|t| t.starts_with("t3.")), "{seen:?}");
}
