//! Control-plane tests: every validation rule asserts its EC2 error code; state changes survive a
//! reopen of the catalog.

use super::*;

const LOCAL: Account = Account::LOCAL;
use crate::catalog::{RedbCatalog, VolumeType};

struct Fixture {
    dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    exports: Arc<Exports>,
    cp: Arc<ControlPlane>,
}

fn open_at(dir: &Path, rt: &tokio::runtime::Runtime) -> (Arc<Exports>, Arc<ControlPlane>) {
    open_with(dir, rt, std::time::Duration::ZERO)
}

fn open_with(
    dir: &Path,
    rt: &tokio::runtime::Runtime,
    optimization: std::time::Duration,
) -> (Arc<Exports>, Arc<ControlPlane>) {
    let exports = Arc::new(Exports::default());
    let catalog = Arc::new(RedbCatalog::open(&dir.join("catalog.redb")).unwrap());
    let engine = Engine::start(storage_engine::EngineKind::Sync, 2).unwrap();
    let cfg = ControlConfig {
        region: "us-east-1".into(),
        availability_zones: vec!["us-east-1a".into(), "us-east-1b".into()],
        data_dir: dir.to_path_buf(),
        nbd_addr: "127.0.0.1:10809".parse().unwrap(),
        nbd_socket: None,
        nbd_tls_required: false,
        optimization_time: optimization,
        snapshots: SnapshotConfig {
            // "us-west-2" reads this region's own store, as another region's server would:
            // a copy from it sees only the store, never this catalog.
            stores: vec![
                (
                    "us-east-1".into(),
                    snapshot::Store::local(&dir.join("snapshots").join("us-east-1")).unwrap(),
                ),
                (
                    "us-west-2".into(),
                    snapshot::Store::local(&dir.join("snapshots").join("us-east-1")).unwrap(),
                ),
            ],
            min_interval: std::time::Duration::ZERO,
            default_initialization_rate_mib: 0,
            fsr_time_scale: 1.0,
        },
        instance_stop_timeout: std::time::Duration::from_secs(5),
        transition_time: std::time::Duration::from_millis(300),
        throttle_scale: 1.0,
        eip_pool: instance_manager::network::Block::parse("198.51.100.0/24").unwrap(),
        metadata: None,
        kms_root: Arc::new(crate::kms::RootKey::from_bytes([7; 32])),
        billing: Default::default(),
    };
    let cp = ControlPlane::open(
        cfg,
        catalog,
        engine,
        Arc::clone(&exports),
        rt.handle().clone(),
    )
    .unwrap();
    (exports, cp)
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (exports, cp) = open_at(dir.path(), &rt);
    Fixture {
        dir,
        rt,
        exports,
        cp,
    }
}

fn create_req(size: i32, vtype: &str) -> model::CreateVolumeRequest {
    model::CreateVolumeRequest {
        availability_zone: "us-east-1a".into(),
        size: Some(size),
        volume_type: Some(vtype.into()),
        ..Default::default()
    }
}

fn host(cp: &ControlPlane, az: &str) -> String {
    cp.register_host(
        LOCAL,
        model::RegisterHostRequest {
            name: "h".into(),
            availability_zone: az.into(),
            ..Default::default()
        },
    )
    .unwrap()
    .instance_id
}

fn attach_req(v: &str, i: &str, dev: &str) -> model::AttachVolumeRequest {
    model::AttachVolumeRequest {
        volume_id: v.into(),
        instance_id: i.into(),
        device: dev.into(),
    }
}

fn detach_req(v: &str, i: Option<&str>) -> model::DetachVolumeRequest {
    model::DetachVolumeRequest {
        volume_id: v.into(),
        instance_id: i.map(Into::into),
        device: None,
        force: false,
    }
}

fn code<T: std::fmt::Debug>(r: Result<T, Ec2Error>) -> ErrorCode {
    r.expect_err("must fail").code
}

#[test]
fn create_volume_rules() {
    let f = fixture();
    let cp = &f.cp;
    // EC2's answer: `creating`, shown for the transition time (300 ms here) after the file
    // exists; then `available`.
    let v = cp.create_volume(LOCAL, create_req(8, "gp3")).unwrap();
    assert_eq!(v.state, VolumeState::Creating);
    assert!(ids::is_valid_id(&v.volume_id, "vol"));
    let state = || {
        cp.describe_volumes(
            LOCAL,
            model::DescribeVolumesRequest {
                volume_ids: vec![v.volume_id.clone()],
                ..Default::default()
            },
        )
        .unwrap()
        .0[0]
            .state
    };
    assert_eq!(state(), VolumeState::Creating);
    std::thread::sleep(std::time::Duration::from_millis(350));
    assert_eq!(state(), VolumeState::Available);
    assert!(
        f.dir
            .path()
            .join("us-east-1a/volumes")
            .join(format!("{}.img", v.volume_id))
            .exists()
    );

    let mut r = create_req(8, "gp3");
    r.availability_zone.clear();
    assert_eq!(code(cp.create_volume(LOCAL, r)), "MissingParameter");
    let mut r = create_req(8, "gp3");
    r.availability_zone = "us-west-2a".into();
    assert_eq!(code(cp.create_volume(LOCAL, r)), "InvalidParameterValue");
    assert_eq!(
        code(cp.create_volume(LOCAL, create_req(8, "gp9"))),
        "UnknownVolumeType"
    );
    assert_eq!(
        code(cp.create_volume(LOCAL, create_req(0, "gp3"))),
        "InvalidParameterValue"
    );
    let mut r = create_req(8, "gp3");
    r.size = None;
    assert_eq!(code(cp.create_volume(LOCAL, r)), "MissingParameter");
    let mut r = create_req(8, "gp3");
    r.kms_key_id = Some("alias/aws/ebs".into());
    assert_eq!(
        code(cp.create_volume(LOCAL, r)),
        "InvalidParameterCombination"
    );
    let mut r = create_req(8, "gp3");
    r.encrypted = Some(true);
    r.kms_key_id = Some("alias/none".into());
    assert_eq!(code(cp.create_volume(LOCAL, r)), "InvalidParameterValue");
    let mut r = create_req(8, "gp3");
    r.snapshot_id = Some("snap-xyz".into());
    assert_eq!(
        code(cp.create_volume(LOCAL, r)),
        ErrorCode::InvalidSnapshotIdMalformed
    );
    let mut r = create_req(8, "gp3");
    r.snapshot_id = Some("snap-0123456789abcdef0".into());
    assert_eq!(code(cp.create_volume(LOCAL, r)), "InvalidSnapshot.NotFound");
    let mut r = create_req(8, "gp3");
    r.multi_attach_enabled = Some(true);
    assert_eq!(
        code(cp.create_volume(LOCAL, r)),
        "InvalidParameterCombination"
    );
    let mut r = create_req(8, "gp2");
    r.iops = Some(500);
    assert_eq!(
        code(cp.create_volume(LOCAL, r)),
        "InvalidParameterCombination"
    );
    assert_eq!(
        code(cp.create_volume(LOCAL, create_req(8, "io1"))),
        "MissingParameter"
    );

    let mut r = create_req(8, "gp3");
    r.tag_specifications = vec![model::TagSpecification {
        resource_type: "snapshot".into(),
        tags: vec![],
    }];
    assert_eq!(code(cp.create_volume(LOCAL, r)), "InvalidParameterValue");
    let mut r = create_req(8, "gp3");
    r.tag_specifications = vec![model::TagSpecification {
        resource_type: "volume".into(),
        tags: vec![model::Tag {
            key: "aws:x".into(),
            value: "y".into(),
        }],
    }];
    assert_eq!(code(cp.create_volume(LOCAL, r)), "InvalidParameterValue");
}

#[test]
fn client_token_is_idempotent() {
    let f = fixture();
    let mut r = create_req(8, "gp3");
    r.client_token = Some("tok-1".into());
    let a = f.cp.create_volume(LOCAL, r.clone()).unwrap();
    let b = f.cp.create_volume(LOCAL, r.clone()).unwrap();
    assert_eq!(a.volume_id, b.volume_id);
    r.size = Some(9);
    assert_eq!(
        code(f.cp.create_volume(LOCAL, r)),
        "IdempotentParameterMismatch"
    );
    assert_eq!(f.cp.counts().0, 1);
}

#[test]
fn describe_filters_and_pages() {
    let f = fixture();
    let cp = &f.cp;
    let mut ids = Vec::new();
    for i in 0..12 {
        let mut r = create_req(1, if i % 2 == 0 { "gp3" } else { "gp2" });
        if i % 3 == 0 {
            r.availability_zone = "us-east-1b".into();
        }
        r.tag_specifications = vec![model::TagSpecification {
            resource_type: "volume".into(),
            tags: vec![model::Tag {
                key: "n".into(),
                value: i.to_string(),
            }],
        }];
        ids.push(cp.create_volume(LOCAL, r).unwrap().volume_id);
    }
    let desc = |filters: Vec<(&str, &str)>| {
        let filters = filters
            .into_iter()
            .map(|(n, v)| model::Filter {
                name: n.into(),
                values: vec![v.into()],
            })
            .collect();
        cp.describe_volumes(
            LOCAL,
            model::DescribeVolumesRequest {
                filters,
                ..Default::default()
            },
        )
        .unwrap()
        .0
    };
    assert_eq!(desc(vec![]).len(), 12);
    assert_eq!(desc(vec![("volume-type", "gp3")]).len(), 6);
    assert_eq!(desc(vec![("availability-zone", "us-east-1b")]).len(), 4);
    assert_eq!(
        desc(vec![
            ("volume-type", "gp3"),
            ("availability-zone", "us-east-1b")
        ])
        .len(),
        2
    );
    assert_eq!(desc(vec![("tag:n", "1*")]).len(), 3, "1, 10, 11");
    assert_eq!(desc(vec![("status", "in-use")]).len(), 0);

    let h = host(cp, "us-east-1a");
    cp.attach_volume(LOCAL, attach_req(&ids[1], &h, "/dev/sdf"))
        .unwrap();
    let hits = desc(vec![("attachment.instance-id", &h)]);
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].volume_id, ids[1]);
    assert_eq!(desc(vec![("status", "in-use")]).len(), 1);

    // Pagination walks every volume exactly once.
    let mut seen = Vec::new();
    let mut token = None;
    loop {
        let (page, next) = cp
            .describe_volumes(
                LOCAL,
                model::DescribeVolumesRequest {
                    max_results: Some(5),
                    next_token: token,
                    ..Default::default()
                },
            )
            .unwrap();
        assert!(page.len() <= 5);
        seen.extend(page.into_iter().map(|v| v.volume_id));
        match next {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(seen, sorted);

    let bad = |req: model::DescribeVolumesRequest| code(cp.describe_volumes(LOCAL, req));
    assert_eq!(
        bad(model::DescribeVolumesRequest {
            volume_ids: vec!["vol-nope".into()],
            ..Default::default()
        }),
        ErrorCode::InvalidVolumeIdMalformed
    );
    assert_eq!(
        bad(model::DescribeVolumesRequest {
            volume_ids: vec!["vol-0123456789abcdef0".into()],
            ..Default::default()
        }),
        "InvalidVolume.NotFound"
    );
    assert_eq!(
        bad(model::DescribeVolumesRequest {
            volume_ids: vec![ids[0].clone()],
            max_results: Some(5),
            ..Default::default()
        }),
        "InvalidParameterCombination"
    );
    assert_eq!(
        bad(model::DescribeVolumesRequest {
            max_results: Some(4),
            ..Default::default()
        }),
        "InvalidParameterValue"
    );
    // Above the limit is capped, as EC2 does (the aws CLI asks for 1000).
    let (page, _) = cp
        .describe_volumes(
            LOCAL,
            model::DescribeVolumesRequest {
                max_results: Some(1000),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(page.len(), ids.len());
    assert_eq!(
        bad(model::DescribeVolumesRequest {
            next_token: Some("zz".into()),
            ..Default::default()
        }),
        "InvalidParameterValue"
    );
    assert_eq!(
        bad(model::DescribeVolumesRequest {
            filters: vec![model::Filter {
                name: "colour".into(),
                values: vec!["red".into()]
            }],
            ..Default::default()
        }),
        "InvalidParameterValue"
    );
}

#[test]
fn attach_rules() {
    let f = fixture();
    let cp = &f.cp;
    let v = cp
        .create_volume(LOCAL, create_req(8, "gp3"))
        .unwrap()
        .volume_id;
    let h = host(cp, "us-east-1a");
    let hb = host(cp, "us-east-1b");
    assert_eq!(
        code(cp.attach_volume(LOCAL, attach_req(&v, "i-nope", "/dev/sdf"))),
        ErrorCode::InvalidInstanceIdMalformed
    );
    assert_eq!(
        code(cp.attach_volume(LOCAL, attach_req(&v, "i-0123456789abcdef0", "/dev/sdf"))),
        "InvalidInstanceID.NotFound"
    );
    assert_eq!(
        code(cp.attach_volume(LOCAL, attach_req("vol-0123456789abcdef0", &h, "/dev/sdf"))),
        "InvalidVolume.NotFound"
    );
    assert_eq!(
        code(cp.attach_volume(LOCAL, attach_req(&v, &hb, "/dev/sdf"))),
        "InvalidVolume.ZoneMismatch"
    );
    assert_eq!(
        code(cp.attach_volume(LOCAL, attach_req(&v, &h, ""))),
        "MissingParameter"
    );
    assert_eq!(
        code(cp.attach_volume(LOCAL, attach_req(&v, &h, "/dev/nvme0n1"))),
        "InvalidParameterValue"
    );

    let (vid, a) = cp
        .attach_volume(LOCAL, attach_req(&v, &h, "/dev/sdf"))
        .unwrap();
    assert_eq!(vid, v);
    // EC2's answer: `attaching` for the transition time, though the attachment serves I/O.
    assert_eq!(a.state, AttachmentState::Attaching);
    assert!(f.exports.get(&a.token).is_some(), "attachment serves NBD");
    assert!(cp.nbd_uri(&a.token).ends_with(&a.token));

    let h2 = host(cp, "us-east-1a");
    assert_eq!(
        code(cp.attach_volume(LOCAL, attach_req(&v, &h2, "/dev/sdg"))),
        "VolumeInUse"
    );
    assert_eq!(
        code(cp.attach_volume(LOCAL, attach_req(&v, &h, "/dev/sdg"))),
        "VolumeInUse"
    );
    let other = cp
        .create_volume(LOCAL, create_req(8, "gp3"))
        .unwrap()
        .volume_id;
    assert_eq!(
        code(cp.attach_volume(LOCAL, attach_req(&other, &h, "/dev/sdf"))),
        "InvalidDevice.InUse"
    );
    assert_eq!(code(cp.delete_volume(LOCAL, &v)), "VolumeInUse");
}

#[test]
fn multi_attach_limits() {
    let f = fixture();
    let cp = &f.cp;
    let mut r = create_req(100, "io2");
    r.iops = Some(1000);
    r.multi_attach_enabled = Some(true);
    let v = cp.create_volume(LOCAL, r).unwrap().volume_id;
    let mut gens = Vec::new();
    for _ in 0..MAX_MULTI_ATTACH {
        let h = host(cp, "us-east-1a");
        gens.push(
            cp.attach_volume(LOCAL, attach_req(&v, &h, "/dev/sdf"))
                .unwrap()
                .1
                .generation,
        );
    }
    assert!(
        gens.windows(2).all(|w| w[0] < w[1]),
        "generations grow: {gens:?}"
    );
    let h = host(cp, "us-east-1a");
    assert_eq!(
        code(cp.attach_volume(LOCAL, attach_req(&v, &h, "/dev/sdf"))),
        "AttachmentLimitExceeded"
    );
    assert_eq!(
        code(cp.detach_volume(LOCAL, detach_req(&v, None))),
        "MissingParameter"
    );
    assert_eq!(
        code(cp.detach_volume(LOCAL, detach_req(&v, Some(&h)))),
        "InvalidAttachment.NotFound"
    );
}

#[test]
fn detach_fences_and_frees() {
    let f = fixture();
    let cp = &f.cp;
    let v = cp
        .create_volume(LOCAL, create_req(8, "gp3"))
        .unwrap()
        .volume_id;
    let h = host(cp, "us-east-1a");
    assert_eq!(
        code(cp.detach_volume(LOCAL, detach_req(&v, None))),
        "IncorrectState"
    );
    let (_, a) = cp
        .attach_volume(LOCAL, attach_req(&v, &h, "/dev/sdf"))
        .unwrap();
    let export = f.exports.get(&a.token).unwrap();
    let (_, d) = cp.detach_volume(LOCAL, detach_req(&v, Some(&h))).unwrap();
    // EC2's answer, `detaching`, though the attachment is fenced and gone already: the volume
    // shows `in-use` with it `detaching` for the transition time, then `available`.
    assert_eq!(d.state, AttachmentState::Detaching);
    assert!(f.exports.get(&a.token).is_none(), "export removed");
    assert!(export.gate.enter().is_none(), "old attachment is fenced");
    let describe = || {
        cp.describe_volumes(
            LOCAL,
            model::DescribeVolumesRequest {
                volume_ids: vec![v.clone()],
                ..Default::default()
            },
        )
        .unwrap()
        .0
        .remove(0)
    };
    let shown = describe();
    assert_eq!(shown.state, VolumeState::InUse);
    assert_eq!(shown.attachments.len(), 1);
    assert_eq!(shown.attachments[0].state, AttachmentState::Detaching);
    std::thread::sleep(std::time::Duration::from_millis(350));
    let shown = describe();
    assert_eq!(shown.state, VolumeState::Available);
    assert!(shown.attachments.is_empty());
    // Re-attaching gets a new token and a newer generation.
    let (_, b) = cp
        .attach_volume(LOCAL, attach_req(&v, &h, "/dev/sdf"))
        .unwrap();
    assert_ne!(a.token, b.token);
    assert!(b.generation > a.generation);
    cp.detach_volume(LOCAL, detach_req(&v, None)).unwrap();
    cp.delete_volume(LOCAL, &v).unwrap();
    assert_eq!(code(cp.delete_volume(LOCAL, &v)), "InvalidVolume.NotFound");
}

#[test]
fn tags_rules() {
    let f = fixture();
    let cp = &f.cp;
    let v = cp
        .create_volume(LOCAL, create_req(8, "gp3"))
        .unwrap()
        .volume_id;
    let h = host(cp, "us-east-1a");
    let t = |k: &str, val: &str| model::Tag {
        key: k.into(),
        value: val.into(),
    };
    cp.create_tags(
        LOCAL,
        &[v.clone(), h.clone()],
        &[t("Name", "db"), t("env", "prod")],
    )
    .unwrap();
    let tags_of = || {
        cp.describe_volumes(
            LOCAL,
            model::DescribeVolumesRequest {
                volume_ids: vec![v.clone()],
                ..Default::default()
            },
        )
        .unwrap()
        .0[0]
            .tags
            .clone()
    };
    assert_eq!(tags_of().len(), 2);
    assert_eq!(
        cp.describe_hosts(LOCAL, std::slice::from_ref(&h)).unwrap()[0]
            .0
            .tags
            .len(),
        2
    );
    assert_eq!(
        code(cp.create_tags(LOCAL, std::slice::from_ref(&v), &[])),
        "MissingParameter"
    );
    assert_eq!(
        code(cp.create_tags(LOCAL, &[], &[t("a", "b")])),
        "MissingParameter"
    );
    assert_eq!(
        code(cp.create_tags(LOCAL, &["snap-x".into()], &[t("a", "b")])),
        "InvalidID"
    );
    assert_eq!(
        code(cp.create_tags(LOCAL, &["vol-0123456789abcdef0".into()], &[t("a", "b")])),
        "InvalidVolume.NotFound"
    );
    assert_eq!(
        code(cp.create_tags(LOCAL, &["i-0123456789abcdef0".into()], &[t("a", "b")])),
        "InvalidInstanceID.NotFound"
    );
    let many: Vec<model::Tag> = (0..49).map(|i| t(&format!("k{i}"), "")).collect();
    assert_eq!(
        code(cp.create_tags(LOCAL, std::slice::from_ref(&v), &many)),
        "TagLimitExceeded"
    );
    assert_eq!(tags_of().len(), 2, "a failed CreateTags changes nothing");

    // A value that does not match leaves the tag; no value deletes it.
    let dt = |k: &str, val: Option<&str>| model::DeleteTag {
        key: k.into(),
        value: val.map(Into::into),
    };
    cp.delete_tags(
        LOCAL,
        std::slice::from_ref(&v),
        &[dt("Name", Some("other"))],
    )
    .unwrap();
    assert_eq!(tags_of().len(), 2);
    cp.delete_tags(LOCAL, std::slice::from_ref(&v), &[dt("Name", Some("db"))])
        .unwrap();
    assert_eq!(tags_of().len(), 1);
    cp.delete_tags(LOCAL, std::slice::from_ref(&v), &[])
        .unwrap();
    assert!(tags_of().is_empty());
}

#[test]
fn host_rules() {
    let f = fixture();
    let cp = &f.cp;
    let req = |name: &str, az: &str| model::RegisterHostRequest {
        name: name.into(),
        availability_zone: az.into(),
        ..Default::default()
    };
    assert_eq!(
        code(cp.register_host(LOCAL, req("", "us-east-1a"))),
        "MissingParameter"
    );
    assert_eq!(
        code(cp.register_host(LOCAL, req("h", "eu-west-1a"))),
        "InvalidParameterValue"
    );
    assert_eq!(
        code(cp.describe_hosts(LOCAL, &["i-0123456789abcdef0".into()])),
        "InvalidInstanceID.NotFound"
    );
    assert_eq!(
        code(cp.deregister_host(LOCAL, "i-0123456789abcdef0")),
        "InvalidInstanceID.NotFound"
    );
    let h = host(cp, "us-east-1a");
    let v = cp
        .create_volume(LOCAL, create_req(8, "gp3"))
        .unwrap()
        .volume_id;
    let (_, a) = cp
        .attach_volume(LOCAL, attach_req(&v, &h, "/dev/sdf"))
        .unwrap();
    let detached = cp.deregister_host(LOCAL, &h).unwrap();
    assert_eq!(detached.len(), 1);
    assert!(f.exports.get(&a.token).is_none());
    assert!(cp.describe_hosts(LOCAL, &[]).unwrap().is_empty());
    cp.delete_volume(LOCAL, &v).unwrap();
}

#[test]
fn state_survives_reopen() {
    let f = fixture();
    let v =
        f.cp.create_volume(LOCAL, create_req(8, "gp3"))
            .unwrap()
            .volume_id;
    let h = host(&f.cp, "us-east-1a");
    let (_, a) =
        f.cp.attach_volume(LOCAL, attach_req(&v, &h, "/dev/sdf"))
            .unwrap();
    let Fixture { dir, rt, cp, .. } = f;
    // Simulate a crash: no shutdown, just drop.
    drop(cp);
    let (exports, cp) = open_at(dir.path(), &rt);
    let (vols, _) = cp
        .describe_volumes(LOCAL, model::DescribeVolumesRequest::default())
        .unwrap();
    assert_eq!(vols.len(), 1);
    assert_eq!(vols[0].state, VolumeState::InUse);
    assert_eq!(vols[0].attachments[0].token, a.token);
    assert!(
        exports.get(&a.token).is_some(),
        "attachment serves again after restart"
    );
    assert_eq!(cp.describe_hosts(LOCAL, &[]).unwrap().len(), 1);
}

#[test]
fn errors_map_to_grpc_codes_with_ec2_code() {
    let cases = [
        ("InvalidVolume.NotFound", tonic::Code::NotFound),
        ("VolumeInUse", tonic::Code::FailedPrecondition),
        (
            "InvalidVolume.ZoneMismatch",
            tonic::Code::FailedPrecondition,
        ),
        ("AttachmentLimitExceeded", tonic::Code::ResourceExhausted),
        ("InvalidParameterValue", tonic::Code::InvalidArgument),
        ("InternalError", tonic::Code::Internal),
    ];
    for (c, want) in cases {
        let status = Ec2Error::new(ErrorCode::from_name(c).unwrap(), "m").into_status();
        assert_eq!(status.code(), want, "{c}");
        assert_eq!(
            status
                .metadata()
                .get(proto::EC2_ERROR_CODE_KEY)
                .unwrap()
                .to_str()
                .unwrap(),
            c
        );
    }
}

fn modify(v: &str) -> model::ModifyVolumeRequest {
    model::ModifyVolumeRequest {
        volume_id: v.into(),
        ..Default::default()
    }
}

#[test]
fn modify_volume_rules() {
    let f = fixture();
    let cp = &f.cp;
    let v = cp
        .create_volume(LOCAL, create_req(8, "gp3"))
        .unwrap()
        .volume_id;
    let h = host(cp, "us-east-1a");
    let (_, a) = cp
        .attach_volume(LOCAL, attach_req(&v, &h, "/dev/sdf"))
        .unwrap();
    let export = f.exports.get(&a.token).unwrap();
    assert_eq!(export.open.throttle.limits().ops.unwrap().rate, 3000);

    // Live: the attached volume's throttle and size change at once.
    let (_, m) = cp
        .modify_volume(
            LOCAL,
            model::ModifyVolumeRequest {
                iops: Some(4000),
                size: Some(10),
                ..modify(&v)
            },
        )
        .unwrap();
    assert_eq!((m.original.iops, m.target.iops), (Some(3000), Some(4000)));
    assert_eq!(export.open.throttle.limits().ops.unwrap().rate, 4000);
    assert_eq!(export.open.volume.size(), 10 * GIB);

    assert_eq!(
        code(cp.modify_volume(
            LOCAL,
            model::ModifyVolumeRequest {
                size: Some(9),
                ..modify(&v)
            }
        )),
        "InvalidParameterValue"
    );
    assert_eq!(
        code(cp.modify_volume(LOCAL, modify(&v))),
        "InvalidParameterCombination",
        "no change"
    );
    assert_eq!(
        code(cp.modify_volume(
            LOCAL,
            model::ModifyVolumeRequest {
                iops: Some(4000),
                ..modify(&v)
            }
        )),
        "InvalidParameterCombination"
    );
    assert_eq!(
        code(cp.modify_volume(
            LOCAL,
            model::ModifyVolumeRequest {
                volume_type: Some("st1".into()),
                ..modify(&v)
            }
        )),
        "InvalidParameterValue",
        "st1 needs 125 GiB"
    );
    assert_eq!(
        code(cp.modify_volume(
            LOCAL,
            model::ModifyVolumeRequest {
                volume_type: Some("io1".into()),
                ..modify(&v)
            }
        )),
        "InvalidParameterValue",
        "3,000 IOPS on 10 GiB io1 breaks 50:1"
    );
    assert_eq!(
        code(cp.modify_volume(
            LOCAL,
            model::ModifyVolumeRequest {
                throughput: Some(100),
                ..modify(&v)
            }
        )),
        "InvalidParameterValue"
    );
    assert_eq!(
        code(cp.modify_volume(
            LOCAL,
            model::ModifyVolumeRequest {
                multi_attach_enabled: Some(true),
                ..modify(&v)
            }
        )),
        "InvalidParameterCombination"
    );

    // A new type without values gets the API defaults.
    let (_, m) = cp
        .modify_volume(
            LOCAL,
            model::ModifyVolumeRequest {
                volume_type: Some("io2".into()),
                ..modify(&v)
            },
        )
        .unwrap();
    assert_eq!(
        (m.target.volume_type, m.target.iops, m.target.throughput),
        (VolumeType::Io2, Some(3000), None)
    );
    let (_, m) = cp
        .modify_volume(
            LOCAL,
            model::ModifyVolumeRequest {
                volume_type: Some("gp2".into()),
                ..modify(&v)
            },
        )
        .unwrap();
    assert_eq!(
        (m.target.volume_type, m.target.iops),
        (VolumeType::Gp2, Some(100))
    );
    assert!(
        export.open.throttle.limits().op_credits.is_some(),
        "gp2 burst credits apply live"
    );
    // Four in 24 hours (failed calls do not count).
    cp.modify_volume(
        LOCAL,
        model::ModifyVolumeRequest {
            size: Some(20),
            ..modify(&v)
        },
    )
    .unwrap();
    assert_eq!(
        code(cp.modify_volume(
            LOCAL,
            model::ModifyVolumeRequest {
                size: Some(30),
                ..modify(&v)
            }
        )),
        "VolumeModificationRateExceeded"
    );
    let mods = cp
        .describe_volumes_modifications(LOCAL, std::slice::from_ref(&v), &[], None, None)
        .unwrap()
        .0;
    assert_eq!(mods[0].1.target.volume_type, VolumeType::Gp2);
    let completed = model::Filter {
        name: "modification-state".into(),
        values: vec!["completed".into()],
    };
    assert_eq!(
        cp.describe_volumes_modifications(LOCAL, &[], &[completed], None, None)
            .unwrap()
            .0
            .len(),
        1
    );
}

#[test]
fn modification_must_complete_first() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (_, cp) = open_with(dir.path(), &rt, std::time::Duration::from_secs(3600));
    let v = cp
        .create_volume(LOCAL, create_req(8, "gp3"))
        .unwrap()
        .volume_id;
    assert_eq!(
        code(cp.describe_volumes_modifications(LOCAL, std::slice::from_ref(&v), &[], None, None)),
        "InvalidVolumeModification.NotFound"
    );
    assert_eq!(
        code(cp.describe_volumes_modifications(
            LOCAL,
            &["vol-0123456789abcdef0".into()],
            &[],
            None,
            None
        )),
        "InvalidVolume.NotFound"
    );
    cp.modify_volume(
        LOCAL,
        model::ModifyVolumeRequest {
            size: Some(16),
            ..modify(&v)
        },
    )
    .unwrap();
    assert_eq!(
        code(cp.modify_volume(
            LOCAL,
            model::ModifyVolumeRequest {
                size: Some(32),
                ..modify(&v)
            }
        )),
        "IncorrectModificationState"
    );
    let (_, m) = &cp
        .describe_volumes_modifications(LOCAL, &[], &[], None, None)
        .unwrap()
        .0[0];
    assert_eq!(modify::modification_state(m, now_ms()).0, "optimizing");
    assert_eq!(
        std::fs::metadata(
            dir.path()
                .join("us-east-1a/volumes")
                .join(format!("{v}.img"))
        )
        .unwrap()
        .len(),
        16 * GIB
    );
}

#[test]
fn multi_attach_toggle_rules() {
    let f = fixture();
    let cp = &f.cp;
    let mut r = create_req(100, "io2");
    r.iops = Some(1000);
    let v = cp.create_volume(LOCAL, r).unwrap().volume_id;
    let h = host(cp, "us-east-1a");
    cp.attach_volume(LOCAL, attach_req(&v, &h, "/dev/sdf"))
        .unwrap();
    assert_eq!(
        code(cp.modify_volume(
            LOCAL,
            model::ModifyVolumeRequest {
                multi_attach_enabled: Some(true),
                ..modify(&v)
            }
        )),
        "VolumeInUse"
    );
    cp.detach_volume(LOCAL, detach_req(&v, None)).unwrap();
    cp.modify_volume(
        LOCAL,
        model::ModifyVolumeRequest {
            multi_attach_enabled: Some(true),
            ..modify(&v)
        },
    )
    .unwrap();
    assert_eq!(
        code(cp.modify_volume(
            LOCAL,
            model::ModifyVolumeRequest {
                volume_type: Some("gp3".into()),
                ..modify(&v)
            }
        )),
        "InvalidParameterCombination",
        "a Multi-Attach volume keeps its type"
    );
}

/// Waits for snapshot `id` (of `who`) to leave `pending`.
fn wait_completed(cp: &ControlPlane, who: Account, id: &str) {
    for _ in 0..500 {
        let (s, _) = cp
            .describe_snapshots(
                who,
                model::DescribeSnapshotsRequest {
                    snapshot_ids: vec![id.into()],
                    ..Default::default()
                },
            )
            .unwrap();
        match s[0].record.state {
            crate::catalog::SnapshotState::Pending => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            crate::catalog::SnapshotState::Completed => return,
            other => panic!("snapshot {id} ended {other:?}"),
        }
    }
    panic!("snapshot {id} did not complete");
}

#[test]
fn accounts_see_and_touch_only_their_own() {
    let f = fixture();
    let cp = &f.cp;
    let alice = Account::parse("111111111111").unwrap();
    let bob = Account::parse("222222222222").unwrap();
    let no_filters = model::DescribeVolumesRequest::default;

    // Volumes: listed to their owner only; by id another account's is NotFound everywhere.
    let mut r = create_req(8, "gp3");
    r.client_token = Some("same-token".into());
    let va = cp.create_volume(alice, r.clone()).unwrap();
    assert_eq!(va.owner_id, "111111111111");
    // Client tokens are per account: bob's call with alice's token is a new volume.
    let vb = cp.create_volume(bob, r).unwrap();
    assert_ne!(va.volume_id, vb.volume_id);
    let (mine, _) = cp.describe_volumes(alice, no_filters()).unwrap();
    assert_eq!(
        mine.iter().map(|v| &v.volume_id).collect::<Vec<_>>(),
        [&va.volume_id]
    );
    assert!(
        cp.describe_volumes(LOCAL, no_filters())
            .unwrap()
            .0
            .is_empty()
    );
    let by_id = |ids: Vec<String>| model::DescribeVolumesRequest {
        volume_ids: ids,
        ..Default::default()
    };
    let not_found = ErrorCode::InvalidVolumeNotFound;
    assert_eq!(
        code(cp.describe_volumes(bob, by_id(vec![va.volume_id.clone()]))),
        not_found
    );
    assert_eq!(code(cp.delete_volume(bob, &va.volume_id)), not_found);
    let tag = [model::Tag {
        key: "k".into(),
        value: "v".into(),
    }];
    assert_eq!(
        code(cp.create_tags(bob, &[vb.volume_id.clone(), va.volume_id.clone()], &tag)),
        not_found
    );
    assert!(
        cp.describe_volumes(bob, by_id(vec![vb.volume_id.clone()]))
            .unwrap()
            .0[0]
            .tags
            .is_empty(),
        "a CreateTags naming another account's resource changes nothing"
    );
    assert_eq!(
        code(cp.modify_volume(bob, modify(&va.volume_id))),
        not_found
    );
    assert_eq!(
        code(cp.describe_volumes_modifications(
            bob,
            std::slice::from_ref(&va.volume_id),
            &[],
            None,
            None
        )),
        not_found
    );
    assert_eq!(
        code(cp.metrics_sources(Some(bob), std::slice::from_ref(&va.volume_id))),
        not_found
    );
    assert_eq!(cp.metrics_sources(None, &[]).unwrap().len(), 2);

    // Hosts and attachments: both ends must be the caller's.
    let hb = cp
        .register_host(
            bob,
            model::RegisterHostRequest {
                name: "b".into(),
                availability_zone: "us-east-1a".into(),
                ..Default::default()
            },
        )
        .unwrap()
        .instance_id;
    assert_eq!(
        code(cp.attach_volume(bob, attach_req(&va.volume_id, &hb, "/dev/sdf"))),
        not_found
    );
    assert_eq!(
        code(cp.attach_volume(alice, attach_req(&va.volume_id, &hb, "/dev/sdf"))),
        ErrorCode::InvalidInstanceIdNotFound
    );
    assert!(cp.describe_hosts(alice, &[]).unwrap().is_empty());
    assert_eq!(
        code(cp.describe_hosts(alice, std::slice::from_ref(&hb))),
        ErrorCode::InvalidInstanceIdNotFound
    );
    cp.attach_volume(bob, attach_req(&vb.volume_id, &hb, "/dev/sdf"))
        .unwrap();
    assert_eq!(
        code(cp.detach_volume(alice, detach_req(&vb.volume_id, Some(&hb)))),
        not_found
    );
    assert_eq!(
        code(cp.deregister_host(alice, &hb)),
        ErrorCode::InvalidInstanceIdNotFound
    );

    // Snapshots: the owner's; restoring, copying, deleting or describing another's fails.
    let snap = cp
        .create_snapshot(
            alice,
            model::CreateSnapshotRequest {
                volume_id: va.volume_id.clone(),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(snap.owner_id, "111111111111");
    assert_eq!(
        code(cp.create_snapshot(
            bob,
            model::CreateSnapshotRequest {
                volume_id: va.volume_id.clone(),
                ..Default::default()
            },
        )),
        not_found
    );
    wait_completed(cp, alice, &snap.snapshot_id);
    let snaps = |who: Account, owners: &[&str]| {
        cp.describe_snapshots(
            who,
            model::DescribeSnapshotsRequest {
                owner_ids: owners.iter().map(|o| o.to_string()).collect(),
                ..Default::default()
            },
        )
        .unwrap()
        .0
        .len()
    };
    assert_eq!(snaps(alice, &[]), 1);
    assert_eq!(snaps(alice, &["self"]), 1);
    assert_eq!(snaps(alice, &["amazon", "111111111111"]), 1);
    assert_eq!(snaps(alice, &["amazon"]), 0);
    assert_eq!(snaps(bob, &[]), 0);
    assert_eq!(snaps(bob, &["111111111111"]), 0);
    let snap_nf = ErrorCode::InvalidSnapshotNotFound;
    let mut restore = create_req(8, "gp3");
    restore.snapshot_id = Some(snap.snapshot_id.clone());
    assert_eq!(code(cp.create_volume(bob, restore.clone())), snap_nf);
    assert_eq!(
        code(cp.copy_snapshot(
            bob,
            model::CopySnapshotRequest {
                source_snapshot_id: snap.snapshot_id.clone(),
                ..Default::default()
            },
        )),
        snap_nf
    );
    // From "another region", whose catalog is not at hand, the manifest's owner decides.
    let from_west = model::CopySnapshotRequest {
        source_region: "us-west-2".into(),
        source_snapshot_id: snap.snapshot_id.clone(),
        ..Default::default()
    };
    assert_eq!(code(cp.copy_snapshot(bob, from_west.clone())), snap_nf);
    let copied = cp.copy_snapshot(alice, from_west).unwrap();
    assert_eq!(copied.owner_id, "111111111111");
    wait_completed(cp, alice, &copied.snapshot_id);
    assert_eq!(code(cp.delete_snapshot(bob, &snap.snapshot_id)), snap_nf);
    let (ok, failed) = cp
        .enable_fast_snapshot_restores(
            bob,
            model::EnableFastSnapshotRestoresRequest {
                availability_zones: vec!["us-east-1a".into()],
                source_snapshot_ids: vec![snap.snapshot_id.clone()],
            },
        )
        .unwrap();
    assert!(ok.is_empty());
    assert_eq!(failed[0].code, snap_nf);
    let restored = cp.create_volume(alice, restore).unwrap();
    assert_eq!(restored.owner_id, "111111111111");

    // Images: registered from one's own snapshots, seen by the owner, names per account.
    let image = |name: &str| model::RegisterImageRequest {
        name: name.into(),
        root_device_name: "/dev/xvda".into(),
        block_device_mappings: vec![model::BlockDeviceMapping {
            device_name: "/dev/xvda".into(),
            ebs: Some(model::EbsBlockDevice {
                snapshot_id: Some(snap.snapshot_id.clone()),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    assert_eq!(code(cp.register_image(bob, image("img"))), snap_nf);
    let ami = cp.register_image(alice, image("img")).unwrap();
    assert_eq!(ami.owner_id, "111111111111");
    let images = |who: Account| {
        cp.describe_images(who, model::DescribeImagesRequest::default())
            .unwrap()
            .0
            .len()
    };
    assert_eq!((images(alice), images(bob)), (1, 0));
    assert_eq!(
        code(cp.deregister_image(bob, &ami.image_id, false)),
        ErrorCode::InvalidAmiIdNotFound
    );
    assert_eq!(
        code(cp.run_instances(
            bob,
            model::RunInstancesRequest {
                image_id: ami.image_id.clone(),
                min_count: 1,
                max_count: 1,
                ..Default::default()
            },
        )),
        ErrorCode::InvalidAmiIdNotFound
    );

    // Owners survive a restart.
    let Fixture { dir, rt, cp, .. } = f;
    rt.block_on(cp.shutdown());
    drop(cp);
    let (_, cp) = open_at(dir.path(), &rt);
    let (mine, _) = cp.describe_volumes(alice, no_filters()).unwrap();
    assert_eq!(mine.len(), 2);
    assert!(mine.iter().all(|v| v.owner_id == "111111111111"));
    assert_eq!(cp.describe_volumes(bob, no_filters()).unwrap().0.len(), 1);
    assert_eq!(cp.describe_hosts(bob, &[]).unwrap().len(), 1);
}

#[test]
fn records_from_before_accounts_belong_to_the_local_account() {
    let mut json: serde_json::Value = serde_json::to_value(VolumeRecord::for_test(
        "vol-0123456789abcdef0",
        VolumeType::Gp3,
        8,
        None,
        None,
    ))
    .unwrap();
    json.as_object_mut().unwrap().remove("owner_id");
    let v: VolumeRecord = serde_json::from_value(json).unwrap();
    assert_eq!(v.owner_id, "000000000000");
    assert!(LOCAL.owns(&v.owner_id));
}

#[test]
fn fast_snapshot_restore_goes_through_enabling_and_disabling() {
    // The fixture's transition time is 300 ms; optimizing a 1 GiB snapshot at time scale 1
    // takes 60 min / 1024 (3.5 s).
    let f = fixture();
    let cp = &f.cp;
    let v = cp.create_volume(LOCAL, create_req(1, "gp3")).unwrap();
    let snap = cp
        .create_snapshot(
            LOCAL,
            model::CreateSnapshotRequest {
                volume_id: v.volume_id.clone(),
                ..Default::default()
            },
        )
        .unwrap()
        .snapshot_id;
    wait_completed(cp, LOCAL, &snap);
    let pair = || model::EnableFastSnapshotRestoresRequest {
        availability_zones: vec!["us-east-1a".into()],
        source_snapshot_ids: vec![snap.clone()],
    };
    let state = || {
        let (views, _) = cp
            .describe_fast_snapshot_restores(LOCAL, Default::default())
            .unwrap();
        (views[0].state, views[0].optimizing_ms.is_some())
    };
    let (ok, _) = cp.enable_fast_snapshot_restores(LOCAL, pair()).unwrap();
    assert_eq!(ok[0].state, "enabling");
    assert_eq!(state(), ("enabling", false));
    std::thread::sleep(std::time::Duration::from_millis(600));
    assert_eq!(state(), ("optimizing", true));
    let (off, _) = cp
        .disable_fast_snapshot_restores(
            LOCAL,
            model::DisableFastSnapshotRestoresRequest {
                availability_zones: vec!["us-east-1a".into()],
                source_snapshot_ids: vec![snap.clone()],
            },
        )
        .unwrap();
    assert_eq!(off[0].state, "disabling");
    assert_eq!(state().0, "disabling");
    std::thread::sleep(std::time::Duration::from_millis(600));
    assert_eq!(state().0, "disabled");
}

/// Metering: each change of what a volume costs ends its segments and starts new ones in the
/// same commit; after a crash (no shutdown) the segments and the clock are as committed.
#[test]
fn usage_is_metered_with_each_change_and_survives_a_crash() {
    use billing::usage::Meter;
    let f = fixture();
    let v =
        f.cp.create_volume(LOCAL, create_req(100, "gp3"))
            .unwrap()
            .volume_id;
    let mine = |cp: &ControlPlane| cp.meters.segments_of(LOCAL.id()).0;
    let segs = mine(&f.cp);
    assert_eq!(segs.len(), 1, "{segs:?}");
    assert_eq!(
        segs[0].meter,
        Meter::VolumeStorage {
            volume_type: "gp3".into(),
            gib: 100
        }
    );
    assert_eq!(segs[0].end_ms, None);
    f.cp.modify_volume(
        LOCAL,
        model::ModifyVolumeRequest {
            volume_id: v.clone(),
            iops: Some(4000),
            throughput: Some(250),
            ..Default::default()
        },
    )
    .unwrap();
    let segs = mine(&f.cp);
    let open: Vec<&Meter> = segs
        .iter()
        .filter(|s| s.end_ms.is_none())
        .map(|s| &s.meter)
        .collect();
    assert!(open.contains(&&Meter::VolumeIops {
        volume_type: "gp3".into(),
        iops: 1000
    }));
    assert!(open.contains(&&Meter::VolumeThroughput { mibps: 125 }));
    assert_eq!(segs.len(), 3, "the storage segment goes on: {segs:?}");
    assert!(
        f.cp.meters.segments_of("111122223333").0.is_empty(),
        "another account's usage is its own"
    );
    let before = f.cp.billing_now();
    let Fixture { dir, rt, cp, .. } = f;
    drop(cp);
    let (_, cp) = open_at(dir.path(), &rt);
    assert_eq!(mine(&cp), segs, "as committed");
    assert!(cp.billing_now() >= before, "the clock never runs backwards");
    cp.delete_volume(LOCAL, &v).unwrap();
    assert!(mine(&cp).iter().all(|s| s.end_ms.is_some()));
}
