//! The Prometheus endpoint: `GET /metrics` in the text exposition format, over a minimal
//! HTTP/1.1 responder (one request per connection).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

use proto::ebs::v1 as pb;

use crate::catalog::{VolumeRecord, VolumeType};
use crate::control::{ControlPlane, perf};
use crate::exports::OpenVolume;

/// CloudWatch-style metrics of one volume (`EBS-REFERENCE.md` §7): counters since the volume
/// was opened, gauges and checks as of now. Unattached volumes read all zeroes.
pub fn volume_metrics(v: &VolumeRecord, open: Option<&OpenVolume>) -> pb::VolumeMetrics {
    let mut m = pb::VolumeMetrics {
        volume_id: v.volume_id.clone(),
        ..Default::default()
    };
    let limits = perf::limits(v);
    m.provisioned_iops = limits.ops.map_or(0, |b| b.rate);
    m.provisioned_throughput_bytes = limits.bytes.map_or(0, |b| b.rate);
    let provisioned_iops_type = matches!(v.volume_type, VolumeType::Io1 | VolumeType::Io2);
    if limits.op_credits.is_some() || limits.byte_credits.is_some() {
        m.burst_balance = Some(100.0);
    }
    if provisioned_iops_type {
        m.volume_throughput_percentage = Some(0.0);
    }
    let Some(o) = open else { return m };
    let s = &o.stats;
    let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    m.volume_read_ops = get(&s.read_ops);
    m.volume_write_ops = get(&s.write_ops);
    m.volume_read_bytes = get(&s.read_bytes);
    m.volume_write_bytes = get(&s.write_bytes);
    m.volume_total_read_time = get(&s.read_time_ns) as f64 / 1e9;
    m.volume_total_write_time = get(&s.write_time_ns) as f64 / 1e9;
    m.volume_idle_time = s.idle_seconds();
    m.volume_queue_length = get(&s.inflight);
    m.volume_consumed_read_write_ops = get(&s.ebs_ops);
    m.throttle_wait_time = get(&s.throttled_ns) as f64 / 1e9;
    m.burst_balance = o.throttle.burst_balance().map(|f| f * 100.0);
    let (iops_exceeded, tput_exceeded) = o.throttle.exceeded_checks();
    m.volume_iops_exceeded_check = u32::from(iops_exceeded);
    m.volume_throughput_exceeded_check = u32::from(tput_exceeded);
    if provisioned_iops_type && m.provisioned_iops > 0 {
        let per_second = o.throttle.ops_last_minute() as f64 / 60.0;
        m.volume_throughput_percentage =
            Some((per_second / m.provisioned_iops as f64 * 100.0).min(100.0));
    }
    m
}

/// Renders every metric in the Prometheus text format.
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
    let all: Vec<pb::VolumeMetrics> = control
        .metrics_sources(None, &[])
        .unwrap_or_default()
        .iter()
        .filter(|(_, open)| open.is_some())
        .map(|(v, open)| volume_metrics(v, open.as_ref()))
        .collect();
    type Reader = fn(&pb::VolumeMetrics) -> Option<f64>;
    let series: [(&str, &str, &str, Reader); 16] = [
        (
            "ebs_volume_read_ops_total",
            "counter",
            "VolumeReadOps: completed reads.",
            |m| Some(m.volume_read_ops as f64),
        ),
        (
            "ebs_volume_write_ops_total",
            "counter",
            "VolumeWriteOps: completed writes.",
            |m| Some(m.volume_write_ops as f64),
        ),
        (
            "ebs_volume_read_bytes_total",
            "counter",
            "VolumeReadBytes.",
            |m| Some(m.volume_read_bytes as f64),
        ),
        (
            "ebs_volume_write_bytes_total",
            "counter",
            "VolumeWriteBytes.",
            |m| Some(m.volume_write_bytes as f64),
        ),
        (
            "ebs_volume_read_time_seconds_total",
            "counter",
            "VolumeTotalReadTime.",
            |m| Some(m.volume_total_read_time),
        ),
        (
            "ebs_volume_write_time_seconds_total",
            "counter",
            "VolumeTotalWriteTime.",
            |m| Some(m.volume_total_write_time),
        ),
        (
            "ebs_volume_idle_time_seconds_total",
            "counter",
            "VolumeIdleTime: seconds with no I/O in flight.",
            |m| Some(m.volume_idle_time),
        ),
        (
            "ebs_volume_queue_length",
            "gauge",
            "VolumeQueueLength: requests in flight or throttled.",
            |m| Some(m.volume_queue_length as f64),
        ),
        (
            "ebs_volume_throughput_percentage",
            "gauge",
            "VolumeThroughputPercentage: io1/io2 delivered IOPS over the last minute, % of provisioned.",
            |m| m.volume_throughput_percentage,
        ),
        (
            "ebs_volume_consumed_read_write_ops_total",
            "counter",
            "VolumeConsumedReadWriteOps: operations in 256 KiB (SSD) / 1 MiB (HDD) units.",
            |m| Some(m.volume_consumed_read_write_ops as f64),
        ),
        (
            "ebs_volume_burst_balance_percent",
            "gauge",
            "BurstBalance: % of burst credits left (gp2, st1, sc1, standard).",
            |m| m.burst_balance,
        ),
        (
            "ebs_volume_iops_exceeded_check",
            "gauge",
            "VolumeIOPSExceededCheck: 1 if demand exceeded provisioned IOPS in the last minute.",
            |m| Some(f64::from(m.volume_iops_exceeded_check)),
        ),
        (
            "ebs_volume_throughput_exceeded_check",
            "gauge",
            "VolumeThroughputExceededCheck: 1 if demand exceeded provisioned throughput in the last minute.",
            |m| Some(f64::from(m.volume_throughput_exceeded_check)),
        ),
        (
            "ebs_volume_throttle_wait_seconds_total",
            "counter",
            "Seconds requests were held by the throttle (summed over requests).",
            |m| Some(m.throttle_wait_time),
        ),
        (
            "ebs_volume_provisioned_iops",
            "gauge",
            "IOPS limit in force (0: unlimited).",
            |m| Some(m.provisioned_iops as f64),
        ),
        (
            "ebs_volume_provisioned_throughput_bytes",
            "gauge",
            "Throughput limit in force, bytes/s (0: unlimited).",
            |m| Some(m.provisioned_throughput_bytes as f64),
        ),
    ];
    for (name, kind, help, get) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for m in &all {
            if let Some(v) = get(m) {
                let _ = writeln!(out, "{name}{{volume_id=\"{}\"}} {v}", m.volume_id);
            }
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
