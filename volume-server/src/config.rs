//! Command-line configuration of `volume-server` (the fixed interface of DESIGN §3, plus tuning
//! flags with safe defaults).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use storage_engine::EngineKind;

/// An EBS-compatible block storage server: gRPC control plane, NBD data plane.
#[derive(Debug, Clone, Parser)]
#[command(name = "volume-server", version, about)]
pub struct Config {
    /// Everything the server keeps: catalog, volume files.
    #[arg(long, default_value = "./ebs-data")]
    pub data_dir: PathBuf,
    /// gRPC listen address (port 0: pick a free port).
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,
    /// NBD listen address.
    #[arg(long, default_value = "127.0.0.1:10809")]
    pub nbd_addr: SocketAddr,
    /// Prometheus metrics listen address (`/metrics`).
    #[arg(long, default_value = "127.0.0.1:9898")]
    pub metrics_addr: SocketAddr,
    /// The region this server emulates.
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// Availability zones served (default: <region>a,<region>b,<region>c).
    #[arg(long, value_delimiter = ',')]
    pub availability_zones: Vec<String>,
    /// I/O engine: io_uring or sync (default: io_uring when the kernel allows it).
    #[arg(long, env = "EBS_IO_ENGINE")]
    pub io_engine: Option<EngineKind>,
    /// I/O engine threads (io_uring rings, or sync workers).
    #[arg(long, default_value_t = 1)]
    pub io_threads: usize,
    /// Maximum NBD connections at once.
    #[arg(long, default_value_t = 1024)]
    pub nbd_max_connections: usize,
    /// NBD handshake timeout (e.g. 10s).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub nbd_handshake_timeout: Duration,
    /// How long a volume modification stays `optimizing` before it is `completed` (and the
    /// next modification may start). New limits apply at once either way.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub modification_time: Duration,
    /// Close NBD sessions idle for this long (0s: never).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub nbd_idle_timeout: Duration,
    /// A region's snapshot store, `REGION=URL` (repeatable). URL: `file:///DIR` or a directory.
    /// This region's store defaults to `<data-dir>/snapshots/<region>`; other regions' stores
    /// are the sources CopySnapshot can read.
    #[arg(long = "snapshot-store", value_parser = parse_store)]
    pub snapshot_stores: Vec<(String, String)>,
    /// Minimum time between two CreateSnapshot calls on one volume (EBS: 15s).
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub snapshot_min_interval: Duration,
    /// Background hydration rate of volumes restored from a snapshot without
    /// VolumeInitializationRate, MiB/s (0: as fast as the store allows).
    #[arg(long, default_value_t = 100)]
    pub default_initialization_rate: u32,
    /// How many times faster than the wall clock fast snapshot restore runs its clocks
    /// (optimizing: 60 min per TiB; credits: per hour). For tests and demos.
    #[arg(long, default_value_t = 1.0)]
    pub fsr_time_scale: f64,
    /// How long a stopping instance's workload has to exit after SIGTERM before it is killed.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub instance_stop_timeout: Duration,
}

fn parse_store(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((region, url)) if !region.is_empty() && !url.is_empty() => {
            Ok((region.to_string(), url.to_string()))
        }
        _ => Err(format!("expected REGION=URL, got '{s}'")),
    }
}

impl Config {
    /// The availability zones, defaulted from the region.
    pub fn zones(&self) -> Vec<String> {
        if self.availability_zones.is_empty() {
            ["a", "b", "c"]
                .iter()
                .map(|s| format!("{}{s}", self.region))
                .collect()
        } else {
            self.availability_zones.clone()
        }
    }

    /// The snapshot store URL of every region known, this region's first.
    pub fn stores(&self) -> Vec<(String, String)> {
        let own = self
            .snapshot_stores
            .iter()
            .find(|(r, _)| *r == self.region)
            .map(|(_, u)| u.clone())
            .unwrap_or_else(|| {
                self.data_dir
                    .join("snapshots")
                    .join(&self.region)
                    .display()
                    .to_string()
            });
        let mut out = vec![(self.region.clone(), own)];
        for (r, u) in &self.snapshot_stores {
            if *r != self.region && !out.iter().any(|(o, _)| o == r) {
                out.push((r.clone(), u.clone()));
            }
        }
        out
    }
}
