//! The Prometheus endpoint: `GET /metrics` in the text exposition format, over a minimal
//! HTTP/1.1 responder (one request per connection).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::control::ControlPlane;

/// A counter's name, help text and reader.
type Counter = (
    &'static str,
    &'static str,
    fn(&crate::exports::IoStats) -> u64,
);

/// Renders every metric.
pub fn render(control: &ControlPlane) -> String {
    let mut out = String::new();
    let (volumes, hosts) = control.counts();
    let _ = writeln!(
        out,
        "# HELP ebs_volumes Volumes in the catalog.\n# TYPE ebs_volumes gauge\nebs_volumes {volumes}"
    );
    let _ = writeln!(
        out,
        "# HELP ebs_hosts Registered hosts.\n# TYPE ebs_hosts gauge\nebs_hosts {hosts}"
    );
    let stats = control.open_volume_stats();
    let counters: [Counter; 7] = [
        ("ebs_volume_read_ops_total", "Completed reads.", |s| {
            s.read_ops.load(Ordering::Relaxed)
        }),
        ("ebs_volume_read_bytes_total", "Bytes read.", |s| {
            s.read_bytes.load(Ordering::Relaxed)
        }),
        ("ebs_volume_write_ops_total", "Completed writes.", |s| {
            s.write_ops.load(Ordering::Relaxed)
        }),
        ("ebs_volume_write_bytes_total", "Bytes written.", |s| {
            s.write_bytes.load(Ordering::Relaxed)
        }),
        ("ebs_volume_flush_ops_total", "Completed flushes.", |s| {
            s.flush_ops.load(Ordering::Relaxed)
        }),
        ("ebs_volume_trim_ops_total", "Completed trims.", |s| {
            s.trim_ops.load(Ordering::Relaxed)
        }),
        ("ebs_volume_errors_total", "Failed requests.", |s| {
            s.errors.load(Ordering::Relaxed)
        }),
    ];
    for (name, help, get) in counters {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (id, s) in &stats {
            let _ = writeln!(out, "{name}{{volume_id=\"{id}\"}} {}", get(s));
        }
    }
    out
}

/// Serves `/metrics` until `shutdown` turns true.
pub async fn run(
    listener: TcpListener,
    control: Arc<ControlPlane>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (mut sock, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let control = Arc::clone(&control);
        tokio::spawn(async move {
            let mut req = Vec::with_capacity(1024);
            let mut buf = [0u8; 1024];
            // Read the request head, bounded in size and time.
            let head = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 8192 {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return false,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                true
            })
            .await;
            if !matches!(head, Ok(true)) {
                return;
            }
            let (status, body) =
                if req.starts_with(b"GET /metrics ") || req.starts_with(b"GET /metrics?") {
                    ("200 OK", render(&control))
                } else {
                    ("404 Not Found", "not found; try /metrics\n".to_string())
                };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}
