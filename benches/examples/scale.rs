//! Scale measurement: a release `volume-server` with 1,000 volumes in its catalog.
//!
//! Measures DescribeVolumes latency (all volumes, paged, and one id), the server's RSS idle
//! and with 64 NBD connections open (64 `qemu-io` processes holding an attachment each), and
//! start-up time with the full catalog. Prints a Markdown table.
//!
//! ```sh
//! cargo build --release
//! cargo run --release -p benches --example scale -- [VOLUMES] [CONNECTIONS]
//! ```

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use proto::ebs::v1 as pb;
use proto::ebs::v1::volume_service_client::VolumeServiceClient;
use tonic::transport::Channel;

type Client = VolumeServiceClient<Channel>;

/// A running server: its process and gRPC address.
struct Server {
    child: Child,
    grpc: String,
}

/// Starts the release server on `dir`; returns it and how long it took to print `listening`.
fn start(dir: &std::path::Path) -> (Server, Duration) {
    let exe = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/release/volume-server"
    );
    let t = Instant::now();
    let mut child = Command::new(exe)
        .arg("--data-dir")
        .arg(dir)
        .args(["--grpc-addr", "127.0.0.1:0", "--nbd-addr", "127.0.0.1:0"])
        .args(["--metrics-addr", "127.0.0.1:0", "--aws-addr", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start target/release/volume-server (cargo build --release first)");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("listening line");
    let took = t.elapsed();
    let grpc = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("grpc="))
        .expect("grpc= in the listening line")
        .to_string();
    (Server { child, grpc }, took)
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

async fn timed<F, Fut>(n: usize, mut f: F) -> (f64, f64)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f().await;
        times.push(t.elapsed());
    }
    times.sort();
    (percentile(&times, 0.5), percentile(&times, 0.99))
}

async fn describe_all(c: &mut Client) -> usize {
    let mut n = 0;
    let mut token = None;
    loop {
        let page = c
            .describe_volumes(pb::DescribeVolumesRequest {
                max_results: Some(500),
                next_token: token,
                ..Default::default()
            })
            .await
            .expect("DescribeVolumes")
            .into_inner();
        n += page.volumes.len();
        token = page.next_token;
        if token.is_none() {
            return n;
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let volumes = args.first().copied().unwrap_or(1000);
    let connections = args.get(1).copied().unwrap_or(64).min(volumes);
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut server, first_start) = start(dir.path());
    let mut c = Client::connect(format!("http://{}", server.grpc))
        .await
        .expect("connect");

    let t = Instant::now();
    let mut ids = Vec::with_capacity(volumes);
    for _ in 0..volumes {
        let v = c
            .create_volume(pb::CreateVolumeRequest {
                availability_zone: "us-east-1a".into(),
                size: Some(8),
                volume_type: Some("gp3".into()),
                ..Default::default()
            })
            .await
            .expect("CreateVolume")
            .into_inner();
        ids.push(v.volume_id);
    }
    let create_s = t.elapsed().as_secs_f64();
    assert_eq!(describe_all(&mut c).await, volumes);
    let (all_p50, all_p99) = timed(50, || {
        let mut c = c.clone();
        async move {
            describe_all(&mut c).await;
        }
    })
    .await;
    let (one_p50, one_p99) = timed(500, || {
        let mut c = c.clone();
        let id = ids[ids.len() / 2].clone();
        async move {
            c.describe_volumes(pb::DescribeVolumesRequest {
                volume_ids: vec![id],
                ..Default::default()
            })
            .await
            .expect("DescribeVolumes");
        }
    })
    .await;
    std::thread::sleep(Duration::from_secs(1));
    let rss_idle = rss_mib(server.child.id());

    // 64 NBD connections: one attachment per volume, one qemu-io holding each open.
    let host = c
        .register_host(pb::RegisterHostRequest {
            name: "scale".into(),
            availability_zone: "us-east-1a".into(),
            ..Default::default()
        })
        .await
        .expect("RegisterHost")
        .into_inner()
        .instance_id;
    let devices = (b'f'..=b'z').flat_map(|a| {
        std::iter::once(format!("/dev/sd{}", a as char)).chain((b'b'..=b'c').flat_map(move |x| {
            (b'a'..=b'z').map(move |y| format!("/dev/xvd{}{}", x as char, y as char))
        }))
    });
    let mut holders = vec![];
    let mut hosts = vec![host];
    let mut on_host = 0;
    for (id, device) in ids.iter().take(connections).zip(devices.cycle()) {
        if on_host == 26 {
            // EBS allows 26 attachments per instance: spread over several hosts.
            hosts.push(
                c.register_host(pb::RegisterHostRequest {
                    name: format!("scale{}", hosts.len()),
                    availability_zone: "us-east-1a".into(),
                    ..Default::default()
                })
                .await
                .expect("RegisterHost")
                .into_inner()
                .instance_id,
            );
            on_host = 0;
        }
        on_host += 1;
        let a = c
            .attach_volume(pb::AttachVolumeRequest {
                volume_id: id.clone(),
                instance_id: hosts.last().cloned().unwrap_or_default(),
                device,
            })
            .await
            .expect("AttachVolume")
            .into_inner();
        holders.push(
            Command::new("qemu-io")
                .args([
                    "-f",
                    "raw",
                    "-c",
                    "read 0 4k",
                    "-c",
                    "sleep 20000",
                    &a.nbd_uri,
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("qemu-io"),
        );
    }
    std::thread::sleep(Duration::from_secs(5));
    let rss_busy = rss_mib(server.child.id());
    for mut h in holders {
        let _ = h.kill();
        let _ = h.wait();
    }

    // Start-up with the full catalog.
    drop(c);
    let _ = Command::new("kill")
        .args(["-s", "TERM", &server.child.id().to_string()])
        .status();
    let _ = server.child.wait();
    let (mut again, restart) = start(dir.path());
    let _ = again.child.kill();
    let _ = again.child.wait();

    println!("| measure ({volumes} volumes in the catalog) | value |");
    println!("|---|---:|");
    println!(
        "| CreateVolume, {volumes} one after another | {:.1} ms each |",
        create_s * 1e3 / volumes as f64
    );
    println!("| DescribeVolumes, all (pages of 500): p50 / p99 | {all_p50:.2} / {all_p99:.2} ms |");
    println!("| DescribeVolumes, one id: p50 / p99 | {one_p50:.3} / {one_p99:.3} ms |");
    println!("| server RSS, idle | {rss_idle:.1} MiB |");
    println!("| server RSS, {connections} NBD connections open | {rss_busy:.1} MiB |");
    println!(
        "| start-up, empty catalog | {:.0} ms |",
        first_start.as_secs_f64() * 1e3
    );
    println!(
        "| start-up, {volumes} volumes ({connections} attached) | {:.0} ms |",
        restart.as_secs_f64() * 1e3
    );
}
