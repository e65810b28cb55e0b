//! Writes the seed corpora, `corpus/<target>/`, replacing what is there:
//! * hand-made inputs from [`ebs_fuzz::seeds`] (every option, command and error path);
//! * byte streams captured from real NBD clients (`nbdinfo`, `nbdcopy`, `qemu-io`, when
//!   installed) talking to the harness's export through a recording proxy: the bytes up to the
//!   end of the handshake (the first `OPT_GO`/`OPT_EXPORT_NAME`) seed `nbd_handshake`, the rest
//!   (after the negotiated mode byte) `nbd_request`.
//!
//! Run from anywhere: `cargo run --manifest-path fuzz/Cargo.toml --example gen_corpus`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use ebs_fuzz::{EXPORT_NAME, Harness, handshake_end, harness, mode_byte, seeds};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use volume_server::nbd::{handshake, session};

/// What one client sent: its handshake, the negotiated mode byte, its transmission phase.
struct Capture {
    handshake: Vec<u8>,
    mode: u8,
    transmission: Vec<u8>,
}

/// Runs `cmd` (with `{url}` replaced) against the export, recording what it sends over one
/// connection. `None` if the tool is missing.
async fn capture(h: &'static Harness, cmd: &[&str]) -> Option<Capture> {
    let front = TcpListener::bind("127.0.0.1:0").await.ok()?;
    let url = format!(
        "nbd://127.0.0.1:{}/{EXPORT_NAME}",
        front.local_addr().ok()?.port()
    );
    let mut child = Command::new(cmd[0])
        .args(cmd[1..].iter().map(|a| a.replace("{url}", &url)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| eprintln!("skipping {}: {e}", cmd[0]))
        .ok()?;
    let (client, _) = tokio::time::timeout(Duration::from_secs(10), front.accept())
        .await
        .ok()?
        .ok()?;
    let (to_server, server) = h.connect().await;
    let served = tokio::spawn(async move {
        let (neg, stream) = handshake::negotiate(server, &h.exports, &h.tls_off, || false)
            .await
            .ok()?;
        let mode = mode_byte(neg.structured, neg.base_allocation);
        let (_stop, stop_rx) = watch::channel(false);
        let cfg = session::SessionConfig {
            idle_timeout: None,
            sendfile: false,
        };
        let _ = session::serve(stream, neg, cfg, stop_rx).await;
        Some(mode)
    });
    let (mut client_rd, mut client_wr) = client.into_split();
    let (mut server_rd, mut server_wr) = to_server.into_split();
    let up = async {
        let mut sent = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = client_rd.read(&mut buf).await {
            sent.extend_from_slice(&buf[..n]);
            if server_wr.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = server_wr.shutdown().await;
        sent
    };
    let down = async {
        let _ = tokio::io::copy(&mut server_rd, &mut client_wr).await;
        let _ = client_wr.shutdown().await;
    };
    let (sent, ()) = tokio::join!(up, down);
    // A client that ends without a session (e.g. after listing exports) seeds the handshake
    // only.
    let (at, mode) = match served.await.ok()? {
        Some(mode) => (handshake_end(&sent)?, mode),
        None => (sent.len(), 0),
    };
    let status = child.wait().ok()?;
    if !status.success() {
        eprintln!("warning: {cmd:?} exited with {status}");
    }
    Some(Capture {
        handshake: sent[..at].to_vec(),
        mode,
        transmission: sent[at..].to_vec(),
    })
}

fn write_all(dir: &Path, seeds: &[(String, Vec<u8>)]) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("create corpus dir");
    for (name, bytes) in seeds {
        std::fs::write(dir.join(name), bytes).expect("write seed");
    }
    let total: usize = seeds.iter().map(|(_, b)| b.len()).sum();
    println!("{}: {} seeds, {total} bytes", dir.display(), seeds.len());
}

/// Adds a seed unless another client already sent the same bytes.
fn push_new(seeds: &mut Vec<(String, Vec<u8>)>, name: String, bytes: Vec<u8>) {
    if !seeds.iter().any(|(_, b)| *b == bytes) {
        seeds.push((name, bytes));
    }
}

fn named(seeds: Vec<seeds::Seed>) -> Vec<(String, Vec<u8>)> {
    seeds.into_iter().map(|(n, b)| (n.to_string(), b)).collect()
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut handshakes = named(seeds::handshakes());
    let mut requests = named(seeds::requests());

    let clients: [(&str, &[&str]); 5] = [
        ("nbdinfo", &["nbdinfo", "{url}"]),
        ("nbdinfo_map", &["nbdinfo", "--map", "{url}"]),
        ("nbdinfo_list", &["nbdinfo", "--list", "{url}"]),
        ("nbdcopy", &["nbdcopy", "--connections=1", "{url}", "null:"]),
        (
            "qemu_io",
            &[
                "qemu-io",
                "-f",
                "raw",
                "-c",
                "write -P 0xab 0 4k",
                "-c",
                "read -P 0xab 0 4k",
                "-c",
                "write -z 64k 64k",
                "-c",
                "discard 128k 64k",
                "-c",
                "flush",
                "{url}",
            ],
        ),
    ];
    let h = harness();
    for (name, cmd) in clients {
        eprintln!("capturing {name}");
        let Some(c) = h.rt.block_on(capture(h, cmd)) else {
            eprintln!("no capture from {name}");
            continue;
        };
        push_new(&mut handshakes, format!("captured_{name}"), c.handshake);
        if !c.transmission.is_empty() {
            let mut input = vec![c.mode];
            input.extend_from_slice(&c.transmission);
            push_new(&mut requests, format!("captured_{name}"), input);
        }
    }

    write_all(&root.join("nbd_handshake"), &handshakes);
    write_all(&root.join("nbd_request"), &requests);
    write_all(&root.join("snapshot_manifest"), &named(seeds::manifests()));
    write_all(&root.join("snapshot_block"), &named(seeds::blocks()));
}
