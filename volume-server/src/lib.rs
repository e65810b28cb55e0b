//! The volume server: an EBS-compatible control plane over gRPC and a data plane over NBD.
//!
//! # Layout
//! * [`config`]: command-line flags.
//! * [`auth`]: the gRPC bearer token.
//! * [`catalog`]: durable records (redb by default) behind a small trait.
//! * [`control`]: volumes, hosts, attachments: the EC2 rules and state machine.
//! * [`datapath`]: one block request, gate → throttle → reservation → volume (NBD and gRPC).
//! * [`exports`]: attachment token → open volume + fencing gate, read by NBD sessions.
//! * [`api`]: the protocols: gRPC (`ebs.v1.VolumeService`) and the AWS endpoint (EC2 Query, STS).
//! * [`nbd`]: the NBD server.
//! * [`metrics`]: the Prometheus endpoint.
//! * [`reservation`]: NVMe-style reservations (who may read and write a Multi-Attach io2 volume).
//!
//! # Paths
//! * Data: NBD request → [`exports::Export`] → fencing gate → [`storage_engine::Volume`] → engine.
//! * Control: gRPC → [`control::ControlPlane`] → catalog transaction → state → volume files /
//!   exports.

pub mod api;
pub mod auth;
pub mod catalog;
pub mod config;
pub mod control;
pub mod datapath;
pub mod exports;
pub mod ids;
pub mod keys;
pub mod kms;
pub mod metrics;
pub mod nbd;
pub mod reservation;

use std::future::Future;
use std::io::Write as _;
use std::sync::Arc;

pub use config::Config;
use storage_engine::Engine;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::interceptor::InterceptedService;

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The data directory could not be created.
    #[error("Cannot create data directory {0}")]
    DataDir(String, #[source] std::io::Error),
    /// A listener could not bind.
    #[error("Cannot listen on {0}")]
    Bind(std::net::SocketAddr, #[source] std::io::Error),
    /// The NBD Unix socket could not be made.
    #[error("Cannot serve NBD on the Unix socket {0}")]
    BindUnix(std::path::PathBuf, #[source] std::io::Error),
    /// The I/O engine did not start.
    #[error("Cannot start the I/O engine")]
    Engine(#[from] storage_engine::EngineError),
    /// The catalog could not be opened.
    #[error("Cannot open the catalog")]
    Catalog(#[from] catalog::CatalogError),
    /// Loading state failed.
    #[error("Cannot load state: {0}")]
    Control(control::Ec2Error),
    /// The KMS root key file could not be read or made.
    #[error(transparent)]
    Kms(#[from] kms::KmsError),
    /// `--price-list` names a file that is not a price list.
    #[error("--price-list: {0}")]
    PriceList(#[from] billing::BillingError),
    /// The AWS endpoint's credentials file could not be used.
    #[error("--aws-credentials: {0}")]
    AwsCredentials(String),
    /// The gRPC server failed.
    #[error("gRPC server failed")]
    Grpc(#[from] tonic::transport::Error),
    /// A snapshot store could not be opened.
    #[error("Cannot open the snapshot store of region {0}")]
    SnapshotStore(String, #[source] snapshot::StoreError),
    /// The flags do not make a server together.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The gRPC token could not be read.
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    /// The NBD TLS credentials could not be loaded.
    #[error(transparent)]
    NbdTls(#[from] nbd::TlsError),
}

/// How long shutdown waits for gRPC clients to close their connections.
const GRPC_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

async fn bind(addr: std::net::SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| ServerError::Bind(addr, e))
}

/// Binds the NBD Unix socket at `path`, mode 0600. A socket already there (left by a server that
/// did not stop cleanly) is replaced; any other file is not.
fn bind_unix(path: &std::path::Path) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a file that is not a socket is in the way",
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // Made under another name and renamed into place once it is 0600, so that no client can
    // connect while its mode is still the umask's.
    let mut staging = path.as_os_str().to_owned();
    staging.push(format!(".{}.new", std::process::id()));
    let staging = std::path::PathBuf::from(staging);
    let _ = std::fs::remove_file(&staging);
    let listener = tokio::net::UnixListener::bind(&staging)?;
    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&staging, path)?;
    Ok(listener)
}

/// Runs the server until `shutdown` completes, then drains: NBD sessions finish in-flight
/// requests, every attachment is fenced, and volumes are closed cleanly.
pub async fn run(cfg: Config, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
    cfg.validate()?;
    let grpc_auth = match &cfg.grpc_token_file {
        Some(path) => auth::BearerAuth::new(&auth::read_token_file(path)?),
        None => auth::BearerAuth::disabled(),
    };
    if cfg.grpc_insecure && !cfg.grpc_addr.ip().to_canonical().is_loopback() {
        tracing::warn!(grpc_addr = %cfg.grpc_addr, "--grpc-insecure: the gRPC API is open to the network without authentication");
    }
    let nbd_tls = match (&cfg.nbd_tls_cert, &cfg.nbd_tls_key) {
        (Some(cert), Some(key)) => nbd::NbdTls::load(cfg.nbd_tls, cert, key)?,
        _ => nbd::NbdTls::off(),
    };
    if nbd_tls.mode != config::NbdTlsMode::Require
        && !cfg.nbd_addr.ip().to_canonical().is_loopback()
    {
        tracing::warn!(nbd_addr = %cfg.nbd_addr, tls = %nbd_tls.mode, "NBD is served to the network without --nbd-tls require: export names and data may travel in clear text");
    }
    std::fs::create_dir_all(&cfg.data_dir)
        .map_err(|e| ServerError::DataDir(cfg.data_dir.display().to_string(), e))?;
    // Every path handed out (a workload's devices file, its directory) must mean the same in
    // another working directory: a relative --data-dir (the default ./ebs-data) is made
    // absolute once, here.
    let mut cfg = cfg;
    cfg.data_dir = std::path::absolute(&cfg.data_dir)
        .map_err(|e| ServerError::DataDir(cfg.data_dir.display().to_string(), e))?;
    let engine = match cfg.io_engine {
        Some(kind) => {
            let e = Engine::start(kind, cfg.io_threads)?;
            tracing::info!(engine = %kind, threads = cfg.io_threads, "I/O engine started");
            e
        }
        None => Engine::start_preferred(cfg.io_threads)?,
    };
    let catalog = Arc::new(catalog::RedbCatalog::open(
        &cfg.data_dir.join("catalog.redb"),
    )?);

    let grpc_listener = bind(cfg.grpc_addr).await?;
    let nbd_listener = bind(cfg.nbd_addr).await?;
    let nbd_unix = match &cfg.nbd_socket {
        Some(path) => Some(bind_unix(path).map_err(|e| ServerError::BindUnix(path.clone(), e))?),
        None => None,
    };
    let metrics_listener = bind(cfg.metrics_addr).await?;
    let aws_listener = bind(cfg.aws_addr).await?;
    let aws_addr = aws_listener
        .local_addr()
        .map_err(|e| ServerError::Bind(cfg.aws_addr, e))?;
    let aws_keys = match &cfg.aws_credentials {
        Some(path) => {
            api::aws::credentials::Keys::load(path).map_err(ServerError::AwsCredentials)?
        }
        None => api::aws::credentials::Keys::Local,
    };
    let (grpc_addr, nbd_addr, metrics_addr) = (
        grpc_listener
            .local_addr()
            .map_err(|e| ServerError::Bind(cfg.grpc_addr, e))?,
        nbd_listener
            .local_addr()
            .map_err(|e| ServerError::Bind(cfg.nbd_addr, e))?,
        metrics_listener
            .local_addr()
            .map_err(|e| ServerError::Bind(cfg.metrics_addr, e))?,
    );

    let mut stores = Vec::new();
    for (region, url) in cfg.stores() {
        let store = snapshot::Store::open(&url)
            .map_err(|e| ServerError::SnapshotStore(region.clone(), e))?;
        tracing::info!(%region, store = store.url(), "snapshot store");
        stores.push((region, store));
    }
    let exports = Arc::new(exports::Exports::default());
    let imds = api::imds::MetadataService::new(tokio::runtime::Handle::current());
    let control_cfg = control::ControlConfig {
        region: cfg.region.clone(),
        availability_zones: cfg.zones(),
        data_dir: cfg.data_dir.clone(),
        nbd_addr,
        nbd_socket: cfg.nbd_socket.clone(),
        nbd_tls_required: cfg.nbd_tls == config::NbdTlsMode::Require,
        optimization_time: cfg.modification_time,
        snapshots: control::SnapshotConfig {
            stores,
            min_interval: cfg.snapshot_min_interval,
            default_initialization_rate_mib: cfg.default_initialization_rate,
            fsr_time_scale: cfg.fsr_time_scale,
        },
        instance_stop_timeout: cfg.instance_stop_timeout,
        transition_time: cfg.transition_time,
        throttle_scale: cfg.throttle_scale,
        eip_pool: cfg.eip_pool,
        metadata: Some(Arc::new(Arc::clone(&imds))),
        kms_root: Arc::new(kms::RootKey::load_or_create(&cfg.kms_root_key_file())?),
        billing: control::metering::BillingConfig {
            prices: Arc::new(match &cfg.price_list {
                Some(path) => billing::prices::PriceList::load(path)?,
                None => billing::prices::PriceList::builtin(),
            }),
            clock_scale: cfg.billing_clock_scale,
        },
    };
    let control = {
        let (exports, rt) = (Arc::clone(&exports), tokio::runtime::Handle::current());
        tokio::task::spawn_blocking(move || {
            control::ControlPlane::open(control_cfg, catalog, engine, exports, rt)
        })
        .await
        .map_err(|e| ServerError::Control(control::Ec2Error::internal(e.to_string())))?
        .map_err(ServerError::Control)?
    };
    imds.bind_control(&control);

    let (stop_tx, stop_rx) = watch::channel(false);
    let nbd_cfg = nbd::NbdConfig {
        handshake_timeout: cfg.nbd_handshake_timeout,
        idle_timeout: (!cfg.nbd_idle_timeout.is_zero()).then_some(cfg.nbd_idle_timeout),
        max_connections: cfg.nbd_max_connections,
        tls: nbd_tls,
        sendfile: cfg.nbd_sendfile,
    };
    // One connection cap for both transports.
    let nbd_permits = Arc::new(tokio::sync::Semaphore::new(cfg.nbd_max_connections));
    let nbd_unix_task = nbd_unix.map(|listener| {
        tokio::spawn(nbd::run(
            nbd::NbdListener::Unix(listener),
            Arc::clone(&exports),
            nbd_cfg.clone(),
            Arc::clone(&nbd_permits),
            stop_rx.clone(),
        ))
    });
    let nbd_task = tokio::spawn(nbd::run(
        nbd::NbdListener::Tcp(nbd_listener),
        Arc::clone(&exports),
        nbd_cfg,
        nbd_permits,
        stop_rx.clone(),
    ));
    let aws_task = tokio::spawn(api::aws::run(
        aws_listener,
        Arc::new(api::aws::AwsApi::new(Arc::clone(&control), aws_keys)),
        stop_rx.clone(),
    ));
    let metrics_task = tokio::spawn(metrics::run(
        metrics_listener,
        Arc::clone(&control),
        stop_rx.clone(),
    ));

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<proto::ebs::v1::volume_service_server::VolumeServiceServer<api::grpc::VolumeApi>>(
        )
        .await;
    // Reflection lists the API and the health service, in both versions of the reflection
    // protocol: v1, and v1alpha, which older clients (Python's grpcio-reflection, older
    // grpcurl) still ask for.
    let reflection_builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_error = |e: tonic_reflection::server::Error| {
        ServerError::Control(control::Ec2Error::internal(e.to_string()))
    };
    let reflection = reflection_builder().build_v1().map_err(reflection_error)?;
    let reflection_v1alpha = reflection_builder()
        .build_v1alpha()
        .map_err(reflection_error)?;
    let api = proto::ebs::v1::volume_service_server::VolumeServiceServer::new(
        api::grpc::VolumeApi::new(Arc::clone(&control), Arc::clone(&exports)),
    )
    // Block I/O chunks are up to 32 MiB.
    .max_decoding_message_size(33 << 20)
    .max_encoding_message_size(33 << 20);
    // Health stays open (probes carry no secret); the API and reflection need the token.
    let reflection = InterceptedService::new(reflection, grpc_auth.clone());
    let reflection_v1alpha = InterceptedService::new(reflection_v1alpha, grpc_auth.clone());
    let api = InterceptedService::new(api, grpc_auth.clone());
    let mut grpc_stop = stop_rx.clone();
    let grpc_task = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(reflection)
            .add_service(reflection_v1alpha)
            .add_service(api)
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(grpc_listener).with_nodelay(Some(true)),
                async move {
                    let _ = grpc_stop.wait_for(|s| *s).await;
                },
            ),
    );

    tracing::info!(%grpc_addr, %nbd_addr, %metrics_addr, %aws_addr, data_dir = %cfg.data_dir.display(), region = %cfg.region, grpc_auth = grpc_auth.enabled(), nbd_tls = %cfg.nbd_tls, "volume-server ready");
    {
        let mut out = std::io::stdout().lock();
        let unix = cfg
            .nbd_socket
            .as_ref()
            .map(|p| format!(" nbd-socket={}", p.display()))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "listening grpc={grpc_addr} nbd={nbd_addr} metrics={metrics_addr} aws={aws_addr}{unix}"
        );
        let _ = out.flush();
    }

    shutdown.await;
    // Booted instances first, while their disks' NBD sessions still serve: they sync and
    // unmount through them.
    control.shut_down_booted().await;
    tracing::info!("shutting down: draining NBD sessions and gRPC calls");
    let _ = stop_tx.send(true);
    let _ = nbd_task.await;
    if let Some(task) = nbd_unix_task {
        let _ = task.await;
    }
    if let Some(path) = &cfg.nbd_socket {
        let _ = std::fs::remove_file(path);
    }
    // gRPC drains in-flight calls, then waits for clients to close their connections; a client
    // that never reads the GOAWAY must not hold the shutdown forever.
    let mut grpc_task = grpc_task;
    let grpc_result = match tokio::time::timeout(GRPC_DRAIN, &mut grpc_task).await {
        Ok(r) => r,
        Err(_) => {
            tracing::warn!(after = ?GRPC_DRAIN, "gRPC clients did not close their connections; stopping anyway");
            grpc_task.abort();
            Ok(Ok(()))
        }
    };
    let _ = metrics_task.await;
    let _ = aws_task.await;
    control.shutdown().await;
    imds.stop_all();
    tracing::info!("volumes closed cleanly; bye");
    match grpc_result {
        Ok(r) => r.map_err(ServerError::Grpc),
        Err(e) => Err(ServerError::Control(control::Ec2Error::internal(
            e.to_string(),
        ))),
    }
}
