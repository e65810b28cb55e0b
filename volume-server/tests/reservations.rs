//! Multi-Attach io2 with NVMe-style reservations and fencing, driven by real NBD clients
//! (qemu-io): who may read and write under each reservation type, preempt-and-abort, force
//! detach under a running fio write job, and reservations surviving a restart.

mod common;

use std::time::{Duration, Instant};

use common::*;
use proto::ebs::v1 as pb;

const WE: i32 = 1;
const EA: i32 = 2;
const WE_RO: i32 = 3;

struct Cluster {
    srv: Server,
    volume_id: String,
    a: (String, String),
    b: (String, String),
}

/// A 16 GiB Multi-Attach io2 volume.
fn multi_attach_io2(srv: &Server) -> pb::Volume {
    let mut c = srv.client();
    srv.ok(
        "CreateVolume",
        srv.block_on(c.create_volume(pb::CreateVolumeRequest {
            availability_zone: AZ.into(),
            size: Some(16),
            volume_type: Some("io2".into()),
            iops: Some(16_000),
            multi_attach_enabled: Some(true),
            ..Default::default()
        })),
    )
}

/// A Multi-Attach io2 volume attached to hosts A and B: (instance id, NBD URI) each.
fn cluster(srv: Server) -> Cluster {
    let v = multi_attach_io2(&srv);
    let host = |name: &str| {
        let h = srv.register_host(name);
        let a = srv.attach(&v.volume_id, &h.instance_id);
        (h.instance_id, a.nbd_uri)
    };
    let a = host("node-a");
    let b = host("node-b");
    Cluster {
        volume_id: v.volume_id,
        a,
        b,
        srv,
    }
}

impl Cluster {
    fn register(&self, host: &str, key: u64) -> pb::ReservationStatus {
        let mut c = self.srv.client();
        let req = pb::ReservationRegisterRequest {
            volume_id: self.volume_id.clone(),
            instance_id: host.into(),
            key,
            action: "register".into(),
            new_key: 0,
        };
        self.srv.ok(
            "ReservationRegister",
            self.srv.block_on(c.reservation_register(req)),
        )
    }

    fn acquire(
        &self,
        host: &str,
        key: u64,
        rtype: i32,
        action: &str,
        preempt_key: u64,
    ) -> pb::ReservationStatus {
        let mut c = self.srv.client();
        let req = pb::ReservationAcquireRequest {
            volume_id: self.volume_id.clone(),
            instance_id: host.into(),
            key,
            r#type: rtype,
            action: action.into(),
            preempt_key,
        };
        self.srv.ok(
            "ReservationAcquire",
            self.srv.block_on(c.reservation_acquire(req)),
        )
    }

    fn release(&self, host: &str, key: u64, rtype: i32) {
        let mut c = self.srv.client();
        let req = pb::ReservationReleaseRequest {
            volume_id: self.volume_id.clone(),
            instance_id: host.into(),
            key,
            r#type: rtype,
            clear: false,
        };
        self.srv.ok(
            "ReservationRelease",
            self.srv.block_on(c.reservation_release(req)),
        );
    }

    fn report(&self) -> pb::ReservationStatus {
        report_of(&self.srv, &self.volume_id)
    }

    /// DetachVolume of `host`'s attachment.
    fn detach(&self, host: &str) {
        let mut c = self.srv.client();
        self.srv.ok(
            "DetachVolume",
            self.srv.block_on(c.detach_volume(pb::DetachVolumeRequest {
                volume_id: self.volume_id.clone(),
                instance_id: Some(host.into()),
                ..Default::default()
            })),
        );
    }
}

/// ReservationReport of `volume_id`.
fn report_of(srv: &Server, volume_id: &str) -> pb::ReservationStatus {
    let mut c = srv.client();
    srv.ok(
        "ReservationReport",
        srv.block_on(c.reservation_report(pb::ReservationReportRequest {
            volume_id: volume_id.into(),
        })),
    )
}

/// Whether qemu-io's command `cmd` succeeded on `uri`.
fn io_ok(uri: &str, cmd: &str) -> bool {
    let out = qemu_io_unchecked(uri, &[cmd]);
    let text = out.combined();
    let failed = text.contains("failed")
        || text.contains("Operation not permitted")
        || !out.status.success();
    !failed
}

#[test]
fn reservation_types_decide_who_reads_and_writes() {
    if !require_tool("qemu-io") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let k = cluster(Server::start(dir.path()));
    let ((a, ua), (b, ub)) = (k.a.clone(), k.b.clone());
    // No reservation: both write.
    assert!(io_ok(&ua, "write -P 0x11 0 4k"));
    assert!(io_ok(&ub, "write -P 0x22 4k 4k"));
    k.register(&a, 0xa);
    k.register(&b, 0xb);

    // Write Exclusive held by A: B reads, B's writes are refused (EPERM) and do not land.
    k.acquire(&a, 0xa, WE, "acquire", 0);
    assert!(io_ok(&ua, "write -P 0x33 0 4k"));
    assert!(
        !io_ok(&ub, "write -P 0x44 0 4k"),
        "B must not write under A's write-exclusive"
    );
    assert!(
        io_ok(&ub, "read -P 0x33 0 4k"),
        "B still reads, and A's data is what it sees"
    );
    k.release(&a, 0xa, WE);

    // Exclusive Access held by A: B can neither read nor write.
    k.acquire(&a, 0xa, EA, "acquire", 0);
    assert!(!io_ok(&ub, "read 0 4k"));
    assert!(io_ok(&ua, "read -P 0x33 0 4k"));
    k.release(&a, 0xa, EA);

    // Write Exclusive - Registrants Only: registered B writes too.
    k.acquire(&a, 0xa, WE_RO, "acquire", 0);
    assert!(io_ok(&ub, "write -P 0x55 8k 4k"));
    let r = k.report();
    assert_eq!(r.r#type, WE_RO);
    assert_eq!(r.holder_instance_id, a);
    assert_eq!(r.registrants.len(), 2);
    k.release(&a, 0xa, WE_RO);

    // B preempts-and-aborts A: afterwards A's writes fail and none land.
    k.acquire(&a, 0xa, EA, "acquire", 0);
    let r = k.acquire(&b, 0xb, WE, "preempt-abort", 0xa);
    assert_eq!(r.holder_instance_id, b);
    assert!(
        r.registrants.iter().all(|x| x.instance_id != a),
        "A was unregistered"
    );
    assert!(
        !io_ok(&ua, "write -P 0x66 0 4k"),
        "the preempted host cannot write"
    );
    assert!(
        io_ok(&ub, "read -P 0x33 0 4k"),
        "A's refused write did not land"
    );
    assert!(
        io_ok(&ua, "read -P 0x33 0 4k"),
        "write-exclusive still lets A read"
    );
}

#[test]
fn reservations_survive_restart() {
    if !require_tool("qemu-io") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let k = cluster(Server::start(dir.path()));
    let ((a, _), (b, _)) = (k.a.clone(), k.b.clone());
    k.register(&a, 7);
    k.register(&b, 8);
    k.acquire(&a, 7, WE, "acquire", 0);
    let before = k.report();
    let Cluster { srv, volume_id, .. } = k;
    srv.stop();
    let srv = Server::start(dir.path());
    assert_eq!(report_of(&srv, &volume_id), before);
    // And it is enforced: B's write through its (re-served) attachment is refused.
    let vol = srv.describe_volume(&volume_id);
    let ub = &vol
        .attachments
        .iter()
        .find(|x| x.instance_id == b)
        .unwrap()
        .nbd_uri;
    assert!(!io_ok(ub, "write -P 0x1 0 4k"));
}

fn region_digest(path: &std::path::Path, len: usize) -> Vec<u8> {
    use std::io::Read;
    let mut buf = vec![0u8; len];
    std::fs::File::open(path)
        .unwrap()
        .read_exact(&mut buf)
        .unwrap();
    // A cheap, order-sensitive fingerprint is enough to see any change.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for chunk in buf.chunks(8) {
        for &b in chunk {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h.to_le_bytes().to_vec()
}

#[test]
fn force_detach_under_fio_fences_the_writer() {
    if !require_tools(&["fio", "qemu-io"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let k = cluster(Server::start(dir.path()));
    let (_, ua) = k.a.clone();
    let file = dir
        .path()
        .join(AZ)
        .join("volumes")
        .join(format!("{}.img", k.volume_id));
    let mut fio = std::process::Command::new("fio")
        .args([
            "--name=w",
            "--ioengine=nbd",
            &format!("--uri={ua}"),
            "--rw=randwrite",
            "--bs=4k",
            "--iodepth=32",
            "--size=64m",
            "--time_based=1",
            "--runtime=30",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let before = region_digest(&file, 64 << 20);
    std::thread::sleep(Duration::from_millis(300));
    assert_ne!(region_digest(&file, 64 << 20), before, "fio is writing");
    let start = Instant::now();
    let mut c = k.srv.client();
    let detach = pb::DetachVolumeRequest {
        volume_id: k.volume_id.clone(),
        instance_id: Some(k.a.0.clone()),
        device: None,
        force: true,
    };
    k.srv
        .ok("DetachVolume", k.srv.block_on(c.detach_volume(detach)));
    eprintln!(
        "fence latency under a QD32 write load: {:?}",
        start.elapsed()
    );
    let fenced = region_digest(&file, 64 << 20);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        region_digest(&file, 64 << 20),
        fenced,
        "no write of the fenced attachment landed after detach returned"
    );
    let status = wait_with_timeout(&mut fio, Duration::from_secs(60), "fio");
    assert!(!status.success(), "fio must see its I/O fail once fenced");
}

/// Several hosts write concurrently (gRPC block I/O) to their own regions while, at random
/// moments, a new host preempts-and-aborts the current write-exclusive holder. A preempted host
/// keeps trying to write; once the preempt returns, its region must never change again.
#[test]
fn random_preempts_never_let_a_fenced_write_land() {
    const HOSTS: usize = 4;
    const REGION: u64 = 4 << 20;
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path());
    let v = multi_attach_io2(&srv);
    let hosts: Vec<(String, String)> = (0..HOSTS)
        .map(|i| {
            let h = srv.register_host(&format!("node-{i}"));
            let a = srv.attach(&v.volume_id, &h.instance_id);
            (
                h.instance_id,
                a.nbd_uri.rsplit('/').next().unwrap().to_string(),
            )
        })
        .collect();
    let k = Cluster {
        srv,
        volume_id: v.volume_id.clone(),
        a: hosts[0].clone(),
        b: hosts[1].clone(),
    };
    for (i, (h, _)) in hosts.iter().enumerate() {
        k.register(h, 100 + i as u64);
    }
    k.acquire(&hosts[0].0, 100, WE, "acquire", 0);
    let file = dir
        .path()
        .join(AZ)
        .join("volumes")
        .join(format!("{}.img", k.volume_id));
    let region = |i: usize| {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(&file).unwrap();
        f.seek(SeekFrom::Start(i as u64 * REGION)).unwrap();
        let mut buf = vec![0u8; REGION as usize];
        f.read_exact(&mut buf).unwrap();
        buf
    };

    // Writers: 4 concurrent streams per host, random 4 KiB blocks in the host's region.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let endpoint = k.srv.endpoint();
    let writers: Vec<_> = hosts
        .iter()
        .enumerate()
        .map(|(i, (_, token))| {
            let (token, stop, endpoint) = (token.clone(), stop.clone(), endpoint.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let client = pb::volume_service_client::VolumeServiceClient::connect(endpoint)
                        .await
                        .unwrap();
                    let mut tasks = Vec::new();
                    for s in 0..4u64 {
                        let (mut client, token, stop) =
                            (client.clone(), token.clone(), stop.clone());
                        tasks.push(tokio::spawn(async move {
                            let mut n = s;
                            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                                n = n
                                    .wrapping_mul(6364136223846793005)
                                    .wrapping_add(1442695040888963407);
                                let block = (n >> 33) % (REGION / 4096);
                                let chunk = pb::WriteBlocksRequest {
                                    attachment_token: token.clone(),
                                    offset: i as u64 * REGION + block * 4096,
                                    data: vec![(n >> 56) as u8 | 1; 4096],
                                    fua: false,
                                };
                                let _ = client
                                    .write_blocks(futures::stream::iter(vec![chunk]))
                                    .await;
                            }
                        }));
                    }
                    for t in tasks {
                        t.await.unwrap();
                    }
                });
            })
        })
        .collect();

    // Random order of takeovers, at random moments.
    let mut order: Vec<usize> = (1..HOSTS).collect();
    let mut seed = std::process::id() as u64 | 1;
    for i in (1..order.len()).rev() {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        order.swap(i, (seed >> 33) as usize % (i + 1));
    }
    let mut holder = 0usize;
    let mut fenced: Vec<(usize, Vec<u8>)> = Vec::new();
    for next in order {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        std::thread::sleep(Duration::from_millis(200 + (seed >> 40) % 400));
        let start = Instant::now();
        k.acquire(
            &hosts[next].0,
            100 + next as u64,
            WE,
            "preempt-abort",
            100 + holder as u64,
        );
        eprintln!(
            "preempt-and-abort of {} by {} took {:?}",
            hosts[holder].0,
            hosts[next].0,
            start.elapsed()
        );
        fenced.push((holder, region(holder)));
        holder = next;
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    assert_ne!(
        region(holder),
        vec![0u8; REGION as usize],
        "the last holder did write"
    );
    for (host, at_fence) in fenced {
        assert!(
            region(host) == at_fence,
            "a write of fenced host {host} landed after its fence point"
        );
    }
}

/// A registration races a detach of the same host, many times: once the detach has returned,
/// the host is never registered (not live, not after `kill -9`), and when it attaches again it
/// registers a key as any new host does.
#[test]
fn a_registration_racing_a_detach_never_outlives_it() {
    let dir = tempfile::tempdir().unwrap();
    let k = cluster(Server::start(dir.path()));
    let (b, _) = k.b.clone();
    let registered =
        |r: &pb::ReservationStatus, host: &str| r.registrants.iter().any(|x| x.instance_id == host);
    for round in 0..40u64 {
        let key = 100 + round;
        std::thread::scope(|s| {
            let reg = s.spawn(|| {
                let mut c = k.srv.client();
                k.srv
                    .block_on(c.reservation_register(pb::ReservationRegisterRequest {
                        volume_id: k.volume_id.clone(),
                        instance_id: b.clone(),
                        key,
                        action: "register".into(),
                        new_key: 0,
                    }))
            });
            k.detach(&b);
            let r = reg.join().unwrap();
            let after = k.report();
            assert!(
                !registered(&after, &b),
                "round {round}: {b} is registered after its detach returned (register: {r:?}): {after:?}"
            );
        });
        k.srv.attach(&k.volume_id, &b);
    }
    // Registered now, then detached, then the server crashes: still not registered.
    k.register(&b, 7);
    k.detach(&b);
    let Cluster { srv, volume_id, .. } = k;
    srv.kill9();
    let srv = Server::start(dir.path());
    let after = report_of(&srv, &volume_id);
    assert!(!registered(&after, &b), "{after:?}");
    let mut c = srv.client();
    srv.attach(&volume_id, &b);
    srv.ok(
        "ReservationRegister after re-attaching",
        srv.block_on(c.reservation_register(pb::ReservationRegisterRequest {
            volume_id,
            instance_id: b.clone(),
            key: 9,
            action: "register".into(),
            new_key: 0,
        })),
    );
    srv.stop();
}
