//! Command-line configuration of `volume-server` (the fixed interface of DESIGN §3, plus tuning
//! flags with safe defaults).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use storage_engine::EngineKind;

/// Flags that parse but do not make a server together.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A non-loopback gRPC address without a token.
    #[error(
        "--grpc-addr {0} is not a loopback address: give --grpc-token-file FILE so that callers must \
         authenticate (or --grpc-insecure to serve the API to the network without authentication)"
    )]
    GrpcAuthRequired(SocketAddr),
    /// TLS on or required without a certificate.
    #[error("--nbd-tls {0} needs --nbd-tls-cert and --nbd-tls-key")]
    NbdTlsWithoutCert(NbdTlsMode),
    /// A certificate given while TLS is off.
    #[error(
        "--nbd-tls-cert and --nbd-tls-key are given but --nbd-tls is off; add --nbd-tls on or require"
    )]
    NbdCertWithoutTls,
    /// A non-loopback AWS endpoint without credentials.
    #[error(
        "--aws-addr {0} is not a loopback address: give --aws-credentials FILE so that requests must \
         be signed with a key it lists"
    )]
    AwsCredentialsRequired(SocketAddr),
}

/// Whether NBD clients may or must upgrade to TLS (`NBD_OPT_STARTTLS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum NbdTlsMode {
    /// No TLS: STARTTLS is answered `NBD_REP_ERR_UNSUP` (the spec's NOTLS mode).
    #[default]
    Off,
    /// Clients may upgrade; plaintext clients are served too.
    On,
    /// Clients must upgrade first: every other option gets `NBD_REP_ERR_TLS_REQD`, and
    /// `NBD_OPT_EXPORT_NAME` before TLS ends the connection (the spec's FORCEDTLS mode).
    Require,
}

impl std::fmt::Display for NbdTlsMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NbdTlsMode::Off => "off",
            NbdTlsMode::On => "on",
            NbdTlsMode::Require => "require",
        })
    }
}

/// An EBS-compatible block storage server: volumes served over NBD, managed through gRPC
/// (`ebsctl`) and the AWS APIs (the aws CLI, boto3, the AWS SDKs).
#[derive(Debug, Clone, Parser)]
#[command(name = "volume-server", version)]
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
    /// The AWS endpoint (EC2 Query, STS): `aws --endpoint-url http://ADDR` and the AWS SDKs
    /// talk to it (port 0: pick a free port).
    #[arg(long, default_value = "127.0.0.1:4566")]
    pub aws_addr: SocketAddr,
    /// The keys the AWS endpoint accepts: the aws CLI's shared-credentials format, one profile
    /// per key with `aws_access_key_id`, `aws_secret_access_key` and `aws_account_id`. Requests
    /// must then be signed (SigV4) with one of them. Without it the endpoint is for local use:
    /// any key is accepted, and it may only listen on loopback.
    #[arg(long, value_name = "PATH")]
    pub aws_credentials: Option<PathBuf>,
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
    /// Send large cached NBD reads as page cache references with `sendfile` (plain TCP), instead
    /// of copying them into the socket from a mapping of the volume file (the default). Saves
    /// the one remaining copy on the server, but weakens fencing: reply bytes already in socket
    /// buffers when the attachment is detached are read from the page cache as the client
    /// receives them, so they can carry data written after the detach (by the volume's next
    /// attachment). Off by default for that reason.
    #[arg(long)]
    pub nbd_sendfile: bool,
    /// Where Elastic IPs come from (AllocateAddress). Associated addresses are routed into
    /// their instance's VPC bridge from this host only, never off it. The default is
    /// TEST-NET-2 (RFC 5737), which no network routes.
    #[arg(long, value_name = "CIDR", default_value = "198.51.100.0/24", value_parser = parse_pool)]
    pub eip_pool: instance_manager::network::Block,
    /// The KMS root key: 32 bytes as 64 hex digits, wrapping every KMS key's material (and so
    /// every encrypted volume's and snapshot's keys). Made, mode 0600, on first start if
    /// absent. Default: `<data-dir>/kms-root.key`.
    #[arg(long, value_name = "PATH")]
    pub kms_root_key_file: Option<PathBuf>,
    /// Also serve NBD on a Unix socket at this path (made mode 0600; a stale socket left there
    /// is replaced). An attachment's export name works on both: `nbd+unix:///EXPORT?socket=PATH`.
    /// The socket counts as protected for `--nbd-tls require`: it never leaves the machine.
    #[arg(long, value_name = "PATH")]
    pub nbd_socket: Option<PathBuf>,
    /// Close NBD sessions idle for this long (0s: never).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub nbd_idle_timeout: Duration,
    /// A region's snapshot store, `REGION=URL` (repeatable). URL: `file:///DIR`, a directory, or
    /// `s3://BUCKET[/PREFIX][?endpoint=…&region=…&allow_http=true&…]` (any S3-compatible store;
    /// credentials from the `AWS_*` environment or the query). This region's store defaults to
    /// `<data-dir>/snapshots/<region>`; other regions' stores are the sources CopySnapshot can
    /// read.
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
    /// Multiplies every throttle limit (the IOPS, throughput and burst credits of each volume,
    /// and the EBS cap of each instance type) by this factor. 1 is EBS. For benchmarks, where
    /// the throttle should run but not bind (`scripts/bench_compare.py` uses 100), and for
    /// trying a workload against faster volumes. What the API reports is not scaled.
    #[arg(long, default_value_t = 1.0, value_parser = parse_scale)]
    pub throttle_scale: f64,
    /// Runs the billing clock this many times faster than real time (1: real time), for demos
    /// and tests: at 3600 a real second bills an hour.
    #[arg(long, default_value_t = 1.0, value_parser = parse_scale)]
    pub billing_clock_scale: f64,
    /// A price list replacing the built-in one (the JSON shape of `billing/data/prices.json`).
    #[arg(long, value_name = "FILE")]
    pub price_list: Option<PathBuf>,
    /// How long a stopping instance's workload has to exit after SIGTERM before it is killed.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub instance_stop_timeout: Duration,
    /// How long the short transitional states EC2 shows last here (a new volume's `creating`,
    /// an attachment's `attaching` and `detaching`, fast snapshot restore's `enabling` and
    /// `disabling`): long enough for pollers and waiters to see them. The work is done when
    /// the call returns; the states trail it.
    #[arg(long, default_value = "50ms", value_parser = humantime::parse_duration)]
    pub transition_time: Duration,
    /// File holding the gRPC bearer token (a trailing newline is ignored). Every call except
    /// `grpc.health.v1` must then carry `authorization: Bearer <token>`. Required when
    /// --grpc-addr is not a loopback address.
    #[arg(long, value_name = "PATH")]
    pub grpc_token_file: Option<PathBuf>,
    /// Serve gRPC on a non-loopback address without authentication (logs a warning).
    #[arg(long, conflicts_with = "grpc_token_file")]
    pub grpc_insecure: bool,
    /// NBD TLS (STARTTLS, X.509 certificates): off, on (optional for clients) or require.
    /// TLS-PSK is not offered (rustls has no external-PSK support).
    #[arg(long, value_enum, value_name = "MODE", default_value_t = NbdTlsMode::Off)]
    pub nbd_tls: NbdTlsMode,
    /// The NBD server's certificate chain (PEM, leaf first).
    #[arg(long, value_name = "PEM", requires = "nbd_tls_key")]
    pub nbd_tls_cert: Option<PathBuf>,
    /// The private key of --nbd-tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "PEM", requires = "nbd_tls_cert")]
    pub nbd_tls_key: Option<PathBuf>,
}

fn parse_store(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((region, url)) if !region.is_empty() && !url.is_empty() => {
            Ok((region.to_string(), url.to_string()))
        }
        _ => Err(format!("expected REGION=URL, got '{s}'")),
    }
}

fn parse_scale(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() && f > 0.0 && f <= 1e6 => Ok(f),
        _ => Err(format!(
            "expected a factor above 0 and at most 1000000, got '{s}'"
        )),
    }
}

impl Config {
    /// Checks the flags that only make sense together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.grpc_addr.ip().to_canonical().is_loopback()
            && self.grpc_token_file.is_none()
            && !self.grpc_insecure
        {
            return Err(ConfigError::GrpcAuthRequired(self.grpc_addr));
        }
        if !self.aws_addr.ip().to_canonical().is_loopback() && self.aws_credentials.is_none() {
            return Err(ConfigError::AwsCredentialsRequired(self.aws_addr));
        }
        let has_cert = self.nbd_tls_cert.is_some() && self.nbd_tls_key.is_some();
        match self.nbd_tls {
            NbdTlsMode::Off if self.nbd_tls_cert.is_some() || self.nbd_tls_key.is_some() => {
                Err(ConfigError::NbdCertWithoutTls)
            }
            NbdTlsMode::On | NbdTlsMode::Require if !has_cert => {
                Err(ConfigError::NbdTlsWithoutCert(self.nbd_tls))
            }
            _ => Ok(()),
        }
    }

    /// The KMS root key file (`--kms-root-key-file`, default `<data-dir>/kms-root.key`).
    pub fn kms_root_key_file(&self) -> PathBuf {
        self.kms_root_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("kms-root.key"))
    }

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

/// `--eip-pool`: an IPv4 block of at most 65536 addresses (a /16 or longer).
fn parse_pool(s: &str) -> Result<instance_manager::network::Block, String> {
    let b = instance_manager::network::Block::parse(s)
        .ok_or_else(|| format!("{s} is not an IPv4 block such as 198.51.100.0/24"))?;
    if b.prefix < 16 {
        return Err(format!("{s} is larger than a /16"));
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        Config::try_parse_from(std::iter::once("volume-server").chain(args.iter().copied()))
            .unwrap()
    }

    #[test]
    fn non_loopback_aws_endpoint_needs_credentials() {
        assert!(parse(&[]).validate().is_ok());
        assert!(matches!(
            parse(&["--aws-addr", "0.0.0.0:4566"]).validate(),
            Err(ConfigError::AwsCredentialsRequired(_))
        ));
        assert!(
            parse(&["--aws-addr", "0.0.0.0:0", "--aws-credentials", "/x"])
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn non_loopback_grpc_needs_a_token() {
        assert!(parse(&[]).validate().is_ok());
        assert!(parse(&["--grpc-addr", "[::1]:0"]).validate().is_ok());
        assert!(matches!(
            parse(&["--grpc-addr", "0.0.0.0:0"]).validate(),
            Err(ConfigError::GrpcAuthRequired(_))
        ));
        assert!(matches!(
            parse(&["--grpc-addr", "[::ffff:10.0.0.1]:0"]).validate(),
            Err(ConfigError::GrpcAuthRequired(_))
        ));
        assert!(
            parse(&["--grpc-addr", "[::ffff:127.0.0.1]:0"])
                .validate()
                .is_ok()
        );
        assert!(
            parse(&["--grpc-addr", "0.0.0.0:0", "--grpc-token-file", "/t"])
                .validate()
                .is_ok()
        );
        assert!(
            parse(&["--grpc-addr", "0.0.0.0:0", "--grpc-insecure"])
                .validate()
                .is_ok()
        );
        assert!(
            Config::try_parse_from([
                "volume-server",
                "--grpc-insecure",
                "--grpc-token-file",
                "/t"
            ])
            .is_err()
        );
    }

    #[test]
    fn nbd_tls_needs_a_certificate() {
        assert!(matches!(
            parse(&["--nbd-tls", "require"]).validate(),
            Err(ConfigError::NbdTlsWithoutCert(NbdTlsMode::Require))
        ));
        let with_cert = ["--nbd-tls-cert", "c.pem", "--nbd-tls-key", "k.pem"];
        assert!(matches!(
            parse(&with_cert).validate(),
            Err(ConfigError::NbdCertWithoutTls)
        ));
        let mut on = with_cert.to_vec();
        on.extend(["--nbd-tls", "on"]);
        assert!(parse(&on).validate().is_ok());
        assert!(Config::try_parse_from(["volume-server", "--nbd-tls-cert", "c.pem"]).is_err());
    }

    #[test]
    fn billing_flags() {
        assert_eq!(parse(&[]).billing_clock_scale, 1.0);
        assert_eq!(
            parse(&["--billing-clock-scale", "3600"]).billing_clock_scale,
            3600.0
        );
        assert!(Config::try_parse_from(["volume-server", "--billing-clock-scale", "0"]).is_err());
        assert_eq!(
            parse(&["--price-list", "p.json"]).price_list,
            Some(PathBuf::from("p.json"))
        );
    }

    #[test]
    fn throttle_scale_is_a_positive_factor() {
        assert_eq!(parse(&[]).throttle_scale, 1.0);
        assert_eq!(parse(&["--throttle-scale", "100"]).throttle_scale, 100.0);
        for bad in ["0", "-1", "NaN", "inf", "1e7", "fast"] {
            assert!(
                Config::try_parse_from(["volume-server", "--throttle-scale", bad]).is_err(),
                "{bad}"
            );
        }
    }
}
