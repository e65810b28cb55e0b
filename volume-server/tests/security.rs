//! Access control and hostile clients against a real `volume-server`: the gRPC bearer token,
//! NBD STARTTLS (raw bytes, qemu-io and nbdinfo), handshake stalls, oversized requests,
//! unguessable export names and IDs that try to leave the data directory.
//!
//! Covered elsewhere and not repeated here (`nbd_protocol.rs`): a client that never speaks is
//! dropped after `--nbd-handshake-timeout`, the `--nbd-max-connections` cap closes the N+1th
//! connection, an 8 MiB option gets `NBD_REP_ERR_TOO_BIG`, reads and writes over 32 MiB get
//! `EINVAL` with the write payload discarded.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::ebs::v1 as pb;
use proto::ebs::v1::volume_service_client::VolumeServiceClient;
use tonic::transport::Channel;

mod common;
use common::*;

const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
const OPT_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
const OPT_EXPORT_NAME: u32 = 1;
const OPT_ABORT: u32 = 2;
const OPT_LIST: u32 = 3;
const OPT_STARTTLS: u32 = 5;
const OPT_INFO: u32 = 6;
const OPT_GO: u32 = 7;
const OPT_STRUCTURED_REPLY: u32 = 8;
const OPT_SET_META_CONTEXT: u32 = 10;
const REP_ACK: u32 = 1;
const REP_INFO: u32 = 3;
const REP_ERR_INVALID: u32 = (1 << 31) + 3;
const REP_ERR_POLICY: u32 = (1 << 31) + 2;
const REP_ERR_TLS_REQD: u32 = (1 << 31) + 5;
const REP_ERR_UNKNOWN: u32 = (1 << 31) + 6;
const CMD_READ: u16 = 0;
const CMD_WRITE: u16 = 1;
const SIMPLE_MAGIC: u32 = 0x6744_6698;
const STRUCTURED_MAGIC: u32 = 0x668e_33ef;
const EINVAL: u32 = 22;

// -------------------------------------------------------------------------------------------------
// helpers

/// A server in its own temp dir.
struct Srv {
    srv: Server,
    dir: tempfile::TempDir,
}

fn start(extra: &[&str]) -> Srv {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    Srv {
        srv: Server::start_with_args(&data, extra),
        dir,
    }
}

/// Writes `token` (with a trailing newline, as `echo` would) to a 0600 file in `dir`.
fn token_file(dir: &Path, token: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join("grpc-token");
    std::fs::write(&path, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

type AuthClient = VolumeServiceClient<
    tonic::service::interceptor::InterceptedService<
        Channel,
        Box<dyn FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Send>,
    >,
>;

/// A client that sends `authorization: <header>` (if any) on every call.
fn client_with(srv: &Server, header: Option<&str>) -> AuthClient {
    let channel = srv
        .block_on(Channel::from_shared(srv.endpoint()).unwrap().connect())
        .unwrap();
    let header: Option<tonic::metadata::MetadataValue<_>> = header.map(|h| h.parse().unwrap());
    VolumeServiceClient::with_interceptor(
        channel,
        Box::new(move |mut req: tonic::Request<()>| {
            if let Some(h) = &header {
                req.metadata_mut().insert("authorization", h.clone());
            }
            Ok(req)
        }),
    )
}

fn assert_auth_failure<T: std::fmt::Debug>(what: &str, r: Result<T, tonic::Status>) {
    let status = r.expect_err(what);
    assert_eq!(
        status.code(),
        tonic::Code::Unauthenticated,
        "{what}: {status:?}"
    );
    assert_eq!(ec2_code(&status).as_deref(), Some("AuthFailure"), "{what}");
}

/// CA and server certificate for 127.0.0.1/localhost, made with `openssl` in `dir`, laid out as
/// libnbd and qemu expect (`ca-cert.pem`), plus `server-cert.pem` and `server-key.pem`. `None`
/// (after a loud skip) without openssl.
fn make_certs(dir: &Path) -> Option<PathBuf> {
    if !require_tool("openssl") {
        return None;
    }
    let pki = dir.join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    let p = |name: &str| pki.join(name).to_str().unwrap().to_owned();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = Command::new("openssl");
    ca.args(["req", "-x509"])
        .args(ec)
        .args(["-keyout", &p("ca-key.pem"), "-out", &p("ca-cert.pem")])
        .args(["-days", "2", "-subj", "/CN=ebs-test-ca"])
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
    run(&mut ca).assert_success();
    let mut csr = Command::new("openssl");
    csr.arg("req")
        .args(ec)
        .args(["-keyout", &p("server-key.pem"), "-out", &p("server.csr")])
        .args(["-subj", "/CN=localhost"]);
    run(&mut csr).assert_success();
    std::fs::write(
        pki.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let mut sign = Command::new("openssl");
    sign.args(["x509", "-req", "-in", &p("server.csr")])
        .args(["-CA", &p("ca-cert.pem"), "-CAkey", &p("ca-key.pem")])
        .args(["-CAcreateserial", "-days", "2"])
        .args(["-out", &p("server-cert.pem"), "-extfile", &p("ext.cnf")]);
    run(&mut sign).assert_success();
    Some(pki)
}

/// `--nbd-tls MODE --nbd-tls-cert … --nbd-tls-key …` for the certificates in `pki`.
fn tls_args(mode: &str, pki: &Path) -> Vec<String> {
    vec![
        "--nbd-tls".into(),
        mode.into(),
        "--nbd-tls-cert".into(),
        pki.join("server-cert.pem").display().to_string(),
        "--nbd-tls-key".into(),
        pki.join("server-key.pem").display().to_string(),
    ]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A byte-level NBD client over any stream (plain TCP or TLS).
struct Nbd<S>(S);

impl<S: Read + Write> Nbd<S> {
    fn u32(&mut self) -> u32 {
        let mut b = [0; 4];
        self.0.read_exact(&mut b).unwrap();
        u32::from_be_bytes(b)
    }
    fn u64(&mut self) -> u64 {
        let mut b = [0; 8];
        self.0.read_exact(&mut b).unwrap();
        u64::from_be_bytes(b)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut b = vec![0; n];
        self.0.read_exact(&mut b).unwrap();
        b
    }

    /// Reads the greeting, answers fixed newstyle + no zeroes.
    fn greet(&mut self) {
        assert_eq!(self.u64(), NBDMAGIC);
        assert_eq!(self.u64(), IHAVEOPT);
        let mut flags = [0; 2];
        self.0.read_exact(&mut flags).unwrap();
        self.0.write_all(&3u32.to_be_bytes()).unwrap();
    }

    fn option(&mut self, opt: u32, data: &[u8]) {
        let mut b = IHAVEOPT.to_be_bytes().to_vec();
        b.extend_from_slice(&opt.to_be_bytes());
        b.extend_from_slice(&(data.len() as u32).to_be_bytes());
        b.extend_from_slice(data);
        self.0.write_all(&b).unwrap();
        self.0.flush().unwrap();
    }

    fn option_reply(&mut self, opt: u32) -> (u32, Vec<u8>) {
        assert_eq!(self.u64(), OPT_REPLY_MAGIC);
        assert_eq!(self.u32(), opt);
        let kind = self.u32();
        let len = self.u32() as usize;
        (kind, self.bytes(len))
    }

    /// Sends `opt` and returns the final reply type (after any `REP_INFO`s).
    fn ask(&mut self, opt: u32, data: &[u8]) -> u32 {
        self.option(opt, data);
        loop {
            let (kind, _) = self.option_reply(opt);
            if kind != REP_INFO && kind != 4 {
                return kind;
            }
        }
    }

    fn request(&mut self, cmd: u16, cookie: u64, offset: u64, len: u32, payload: &[u8]) {
        let mut b = Vec::with_capacity(28 + payload.len());
        b.extend_from_slice(&0x2560_9513u32.to_be_bytes());
        b.extend_from_slice(&0u16.to_be_bytes());
        b.extend_from_slice(&cmd.to_be_bytes());
        b.extend_from_slice(&cookie.to_be_bytes());
        b.extend_from_slice(&offset.to_be_bytes());
        b.extend_from_slice(&len.to_be_bytes());
        b.extend_from_slice(payload);
        self.0.write_all(&b).unwrap();
        self.0.flush().unwrap();
    }

    /// A simple reply: (cookie, errno).
    fn simple_reply(&mut self) -> (u64, u32) {
        assert_eq!(self.u32(), SIMPLE_MAGIC);
        let err = self.u32();
        (self.u64(), err)
    }

    /// The data of a structured READ reply (one OFFSET_DATA chunk, as this server sends).
    fn structured_read(&mut self, cookie: u64) -> Vec<u8> {
        assert_eq!(self.u32(), STRUCTURED_MAGIC);
        let mut fl_ty = [0; 4];
        self.0.read_exact(&mut fl_ty).unwrap();
        assert_eq!(u16::from_be_bytes([fl_ty[2], fl_ty[3]]), 1, "OFFSET_DATA");
        assert_eq!(self.u64(), cookie);
        let len = self.u32() as usize;
        let _offset = self.u64();
        self.bytes(len - 8)
    }

    /// Asserts the server hung up (EOF or reset) within the stream's read timeout.
    fn expect_eof(&mut self) {
        let mut b = [0u8; 1];
        match self.0.read(&mut b) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
            other => panic!("expected the server to hang up, got {other:?}"),
        }
    }
}

fn connect(srv: &Server) -> TcpStream {
    let s = TcpStream::connect(srv.nbd_addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

fn go_data(name: &str) -> Vec<u8> {
    let mut d = (name.len() as u32).to_be_bytes().to_vec();
    d.extend_from_slice(name.as_bytes());
    d.extend_from_slice(&0u16.to_be_bytes());
    d
}

fn meta_data(name: &str) -> Vec<u8> {
    let mut d = (name.len() as u32).to_be_bytes().to_vec();
    d.extend_from_slice(name.as_bytes());
    d.extend_from_slice(&1u32.to_be_bytes());
    d.extend_from_slice(&15u32.to_be_bytes());
    d.extend_from_slice(b"base:allocation");
    d
}

/// Upgrades `tcp` with rustls after a STARTTLS ACK, trusting only `pki/ca-cert.pem`.
fn tls_client(
    tcp: TcpStream,
    pki: &Path,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(pki.join("ca-cert.pem")).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

/// The export name of an `nbd://HOST:PORT/NAME` URI.
fn export_of(uri: &str) -> String {
    split_nbd_uri(uri).1
}

/// `VmSize` of `pid`, in bytes.
fn vm_size(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmSize:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

// -------------------------------------------------------------------------------------------------
// gRPC authentication

#[test]
fn grpc_calls_need_the_bearer_token() {
    let dir = tempfile::tempdir().unwrap();
    let token = "tok-0123456789abcdef0123456789abcdef";
    let file = token_file(dir.path(), token);
    let s = start(&["--grpc-token-file", file.to_str().unwrap()]);
    let srv = &s.srv;
    let describe = || pb::DescribeVolumesRequest::default();

    // No header, a wrong token, a near miss, another scheme: AuthFailure.
    let mut c = client_with(srv, None);
    assert_auth_failure("no header", srv.block_on(c.describe_volumes(describe())));
    for bad in [
        "Bearer nope",
        "Bearer tok-0123456789abcdef0123456789abcdee",
        "Bearer tok-0123456789abcdef0123456789abcdef0",
        "Basic tok-0123456789abcdef0123456789abcdef",
        "tok-0123456789abcdef0123456789abcdef",
    ] {
        let mut c = client_with(srv, Some(bad));
        assert_auth_failure(bad, srv.block_on(c.describe_volumes(describe())));
        // Not even the cheap, unauthenticated-looking calls get through.
        assert_auth_failure(
            bad,
            srv.block_on(c.create_volume(pb::CreateVolumeRequest {
                availability_zone: AZ.into(),
                size: Some(1),
                ..Default::default()
            })),
        );
    }

    // The right token: the API works.
    let mut c = client_with(srv, Some(&format!("Bearer {token}")));
    let v = srv.ok(
        "CreateVolume",
        srv.block_on(c.create_volume(pb::CreateVolumeRequest {
            availability_zone: AZ.into(),
            size: Some(1),
            ..Default::default()
        })),
    );
    let listed = srv.ok(
        "DescribeVolumes",
        srv.block_on(c.describe_volumes(describe())),
    );
    assert_eq!(listed.volumes.len(), 1);
    assert_eq!(listed.volumes[0].volume_id, v.volume_id);
    // The scheme is case-insensitive (RFC 7235).
    let mut c = client_with(srv, Some(&format!("bearer {token}")));
    srv.ok(
        "DescribeVolumes",
        srv.block_on(c.describe_volumes(describe())),
    );

    // Health stays open to probes without a secret.
    let health = srv.block_on(async {
        let channel = Channel::from_shared(srv.endpoint())?.connect().await?;
        let mut h = tonic_health::pb::health_client::HealthClient::new(channel);
        let r = h
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await?;
        Ok::<_, Box<dyn std::error::Error>>(r.into_inner().status)
    });
    assert_eq!(health.unwrap(), 1, "SERVING without a token");

    // Reflection describes the API: it needs the token. Both protocol versions: v1, and v1alpha,
    // which Python's grpcio-reflection and older grpcurl use. The two generated modules have the
    // same shape, hence a macro.
    macro_rules! reflect {
        ($version:ident, $header:expr) => {
            srv.block_on(async {
                use tonic_reflection::pb::$version as r;
                let channel = Channel::from_shared(srv.endpoint())
                    .unwrap()
                    .connect()
                    .await
                    .unwrap();
                let header: Option<tonic::metadata::MetadataValue<_>> =
                    $header.map(|h: String| h.parse().unwrap());
                let mut client =
                    r::server_reflection_client::ServerReflectionClient::with_interceptor(
                        channel,
                        move |mut req: tonic::Request<()>| {
                            if let Some(h) = &header {
                                req.metadata_mut().insert("authorization", h.clone());
                            }
                            Ok(req)
                        },
                    );
                let request = r::ServerReflectionRequest {
                    host: String::new(),
                    message_request: Some(
                        r::server_reflection_request::MessageRequest::ListServices(String::new()),
                    ),
                };
                let mut replies = client
                    .server_reflection_info(futures::stream::iter(vec![request]))
                    .await?
                    .into_inner();
                let first = replies.message().await?;
                let names: Vec<String> = match first.and_then(|r| r.message_response) {
                    Some(r::server_reflection_response::MessageResponse::ListServicesResponse(
                        l,
                    )) => l.service.into_iter().map(|s| s.name).collect(),
                    other => panic!("not a service list: {other:?}"),
                };
                Ok::<_, tonic::Status>(names)
            })
        };
    }
    assert_auth_failure("reflection without a token", reflect!(v1, None));
    let bearer = || Some(format!("Bearer {token}"));
    let names = reflect!(v1, bearer()).unwrap();
    for service in ["ebs.v1.VolumeService", "grpc.health.v1.Health"] {
        assert!(names.iter().any(|n| n == service), "{service} in {names:?}");
    }
    let names_v1alpha = reflect!(v1alpha, bearer()).unwrap();
    assert!(
        names_v1alpha.iter().any(|n| n == "ebs.v1.VolumeService"),
        "{names_v1alpha:?}"
    );

    // ebsctl: --token-file, EBS_TOKEN_FILE and EBS_TOKEN send the header; without them,
    // the AWS-style error names AuthFailure.
    let Some(ebsctl) = ebsctl_path() else {
        skip("ebsctl is not built next to the test binary (run `cargo test --workspace`)");
        return;
    };
    let ebsctl = |env: &[(&str, &str)], args: &[&str]| {
        let mut cmd = Command::new(&ebsctl);
        cmd.args(["--endpoint", &srv.endpoint(), "--output", "json"])
            .args(args)
            .env_remove("EBS_TOKEN")
            .env_remove("EBS_TOKEN_FILE")
            .env_remove("EBS_ENDPOINT");
        for (k, v) in env {
            cmd.env(k, v);
        }
        run(&mut cmd)
    };
    let out = ebsctl(&[], &["describe-volumes"]);
    out.assert_failure();
    assert!(
        out.stderr.contains("AuthFailure"),
        "names the EC2 code: {}",
        out.describe()
    );
    let file = file.to_str().unwrap();
    for (env, args) in [
        (vec![], vec!["describe-volumes", "--token-file", file]),
        (vec![("EBS_TOKEN_FILE", file)], vec!["describe-volumes"]),
        (vec![("EBS_TOKEN", token)], vec!["describe-volumes"]),
    ] {
        let out = ebsctl(&env, &args);
        out.assert_success();
        assert!(out.stdout.contains(&v.volume_id), "{}", out.describe());
    }
    let out = ebsctl(&[("EBS_TOKEN", "wrong")], &["describe-volumes"]);
    out.assert_failure();
    assert!(out.stderr.contains("AuthFailure"), "{}", out.describe());
}

#[test]
fn grpc_on_a_network_address_needs_a_token_or_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let server = |extra: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_volume-server"));
        cmd.arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--nbd-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0"])
            .args(["--aws-addr", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "warn");
        cmd
    };
    // 0.0.0.0 without a token: refuses to start, and says what to do.
    let out = run_with_timeout(&mut server(&["--grpc-addr", "0.0.0.0:0"]), SERVER_TIMEOUT);
    out.assert_failure();
    assert!(
        out.stderr.contains("--grpc-token-file") && out.stderr.contains("--grpc-insecure"),
        "{}",
        out.describe()
    );
    assert!(!out.stdout.contains("listening"), "{}", out.describe());
    // A non-loopback IPv6 address too.
    let out = run_with_timeout(&mut server(&["--grpc-addr", "[::]:0"]), SERVER_TIMEOUT);
    out.assert_failure();
    assert!(
        out.stderr.contains("--grpc-token-file"),
        "{}",
        out.describe()
    );

    // The escape hatch starts, with a warning; so does a token.
    let file = token_file(dir.path(), "tok-0123456789abcdef0123456789abcdef");
    for extra in [
        vec!["--grpc-insecure"],
        vec!["--grpc-token-file", file.to_str().unwrap()],
    ] {
        let mut args = vec!["--grpc-addr", "0.0.0.0:0"];
        args.extend(&extra);
        let mut cmd = server(&args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = KillOnDrop(cmd.spawn().unwrap());
        let mut stdout = LineReader::new(child.0.stdout.take().unwrap());
        let line = stdout.wait_for("listening ", SERVER_TIMEOUT);
        let (grpc, _, _) = parse_listening(&line);
        let _ = child.0.kill();
        let _ = child.0.wait();
        let mut stderr = String::new();
        child
            .0
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        if extra[0] == "--grpc-insecure" {
            assert!(stderr.contains("without authentication"), "warns: {stderr}");
        }
        assert!(grpc.ip().is_unspecified(), "{line}");
    }
}

// -------------------------------------------------------------------------------------------------
// NBD TLS

#[test]
fn nbd_tls_require_refuses_plaintext_clients() {
    let dir = tempfile::tempdir().unwrap();
    let Some(pki) = make_certs(dir.path()) else {
        return;
    };
    let s = start(&strs(&tls_args("require", &pki)));
    let srv = &s.srv;
    let (_, _, uri) = srv.attach_new_volume(1);
    let token = export_of(&uri);

    // Byte by byte: every option but STARTTLS and ABORT gets TLS_REQD, negotiation goes on.
    let mut c = Nbd(connect(srv));
    c.greet();
    assert_eq!(c.ask(OPT_GO, &go_data(&token)), REP_ERR_TLS_REQD);
    assert_eq!(c.ask(OPT_INFO, &go_data(&token)), REP_ERR_TLS_REQD);
    assert_eq!(c.ask(OPT_LIST, &[]), REP_ERR_TLS_REQD);
    assert_eq!(c.ask(OPT_STRUCTURED_REPLY, &[]), REP_ERR_TLS_REQD);
    assert_eq!(c.ask(99, b"x"), REP_ERR_TLS_REQD);
    // An oversized option is skipped and still answered TLS_REQD.
    let big = vec![0u8; 100 << 10];
    assert_eq!(c.ask(42, &big), REP_ERR_TLS_REQD);
    // EXPORT_NAME cannot be refused politely: the server hangs up.
    c.option(OPT_EXPORT_NAME, token.as_bytes());
    c.expect_eof();
    // ABORT is still answered.
    let mut c = Nbd(connect(srv));
    c.greet();
    assert_eq!(c.ask(OPT_ABORT, &[]), REP_ACK);
    // A client without fixed newstyle can only send EXPORT_NAME: hung up too.
    let mut c = Nbd(connect(srv));
    assert_eq!(c.u64(), NBDMAGIC);
    c.bytes(10);
    c.0.write_all(&0u32.to_be_bytes()).unwrap();
    c.option(OPT_EXPORT_NAME, token.as_bytes());
    c.expect_eof();

    // Real clients without TLS fail.
    if require_tools(&["qemu-io", "nbdinfo"]) {
        let out = qemu_io_unchecked(&uri, &["read 0 4k"]);
        out.assert_failure();
        assert!(out.combined().contains("TLS"), "{}", out.describe());
        run_tool("nbdinfo", &[uri.as_str()]).assert_failure();
    }
}

/// With `--nbd-tls require`, the Unix socket (0600, never off the machine) serves plaintext
/// clients, and refuses STARTTLS on it with `ERR_POLICY`; TCP still requires TLS.
#[test]
fn nbd_tls_require_lets_the_unix_socket_serve_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let Some(pki) = make_certs(dir.path()) else {
        return;
    };
    if !require_tools(&["qemu-io"]) {
        return;
    }
    let socket = dir.path().join("nbd.sock");
    let mut args = tls_args("require", &pki);
    args.extend(["--nbd-socket".to_string(), socket.display().to_string()]);
    let s = start(&strs(&args));
    let srv = &s.srv;
    let (_, _, uri) = srv.attach_new_volume(1);
    let token = export_of(&uri);
    let unix = format!("nbd+unix:///{token}?socket={}", socket.display());
    qemu_io(&unix, &["write -P 0x3c 0 64k", "read -P 0x3c 0 64k"]);
    qemu_io_unchecked(&uri, &["read 0 4k"]).assert_failure();

    let mut c = Nbd(std::os::unix::net::UnixStream::connect(&socket).unwrap());
    c.greet();
    assert_eq!(c.ask(OPT_STARTTLS, &[]), REP_ERR_POLICY);
    assert_eq!(c.ask(OPT_ABORT, &[]), REP_ACK);
}

#[test]
fn nbd_tls_clients_read_and_write() {
    let dir = tempfile::tempdir().unwrap();
    let Some(pki) = make_certs(dir.path()) else {
        return;
    };
    if !require_tools(&["qemu-io", "nbdinfo"]) {
        return;
    }
    let s = start(&strs(&tls_args("require", &pki)));
    let srv = &s.srv;
    let (_, _, uri) = srv.attach_new_volume(1);
    let token = export_of(&uri);
    let port = srv.nbd_addr.port();

    let qemu_tls = |commands: &[&str]| {
        let mut cmd = Command::new("qemu-io");
        cmd.args(["-t", "writeback", "--object"])
            .arg(format!(
                "tls-creds-x509,id=tls0,endpoint=client,dir={}",
                pki.display()
            ))
            .arg("--image-opts");
        for c in commands {
            cmd.args(["-c", c]);
        }
        cmd.arg(format!(
            "driver=nbd,server.type=inet,server.host=127.0.0.1,server.port={port},\
             export={token},tls-creds=tls0"
        ));
        let out = run(&mut cmd);
        assert_qemu_io_ok(&out);
        out
    };
    // Writes, large ones included (several TLS records per request), then reads them back in
    // a new session.
    qemu_tls(&[
        "write -P 0xab 0 1M",
        "write -P 0xcd 40M 64k",
        "aio_write -P 0x11 64M 32M",
        "aio_write -P 0x22 96M 32M",
        "aio_flush",
        "read -P 0xab 0 1M",
    ]);
    qemu_tls(&[
        "read -P 0xab 0 1M",
        "read -P 0 1M 64k",
        "read -P 0xcd 40M 64k",
        "read -P 0x11 64M 32M",
        "read -P 0x22 96M 32M",
    ]);
    // libnbd negotiates TLS and sees the export.
    let nbds = format!(
        "nbds://127.0.0.1:{port}/{token}?tls-certificates={}",
        pki.display()
    );
    let out = run_tool("nbdinfo", &[nbds.as_str()]);
    out.assert_success();
    assert!(out.stdout.contains("with TLS"), "{}", out.describe());
    assert!(out.stdout.contains("1073741824"), "{}", out.describe());
    // A client that trusts another CA refuses the server.
    let other = tempfile::tempdir().unwrap();
    let other = make_certs(other.path()).unwrap();
    let bad = format!(
        "nbds://127.0.0.1:{port}/{token}?tls-certificates={}",
        other.display()
    );
    let out = run_tool("nbdinfo", &[bad.as_str()]);
    out.assert_failure();
}

#[test]
fn nbd_starttls_follows_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    let Some(pki) = make_certs(dir.path()) else {
        return;
    };
    // `on`: TLS is optional; plaintext clients are still served.
    let s = start(&strs(&tls_args("on", &pki)));
    let srv = &s.srv;
    let (_, _, uri) = srv.attach_new_volume(1);
    let token = export_of(&uri);

    let mut plain = Nbd(connect(srv));
    plain.greet();
    assert_eq!(plain.ask(OPT_GO, &go_data(&token)), REP_ACK);
    plain.request(CMD_WRITE, 1, 0, 4096, &[0x5a; 4096]);
    assert_eq!(plain.simple_reply(), (1, 0));

    let mut c = Nbd(connect(srv));
    c.greet();
    // Negotiated in plaintext, then forgotten once TLS starts.
    assert_eq!(c.ask(OPT_STRUCTURED_REPLY, &[]), REP_ACK);
    // STARTTLS takes no data.
    assert_eq!(c.ask(OPT_STARTTLS, b"x"), REP_ERR_INVALID);
    assert_eq!(c.ask(OPT_STARTTLS, &[]), REP_ACK);
    let mut c = Nbd(tls_client(c.0, &pki));
    // No new greeting: the next bytes are option replies, inside TLS.
    assert_eq!(
        c.ask(OPT_STARTTLS, &[]),
        REP_ERR_INVALID,
        "TLS already active"
    );
    assert_eq!(
        c.ask(OPT_SET_META_CONTEXT, &meta_data(&token)),
        REP_ERR_INVALID,
        "structured replies from before TLS were reset"
    );
    assert_eq!(c.ask(OPT_GO, &go_data("not-an-export")), REP_ERR_UNKNOWN);
    assert_eq!(c.ask(OPT_STRUCTURED_REPLY, &[]), REP_ACK);
    assert_eq!(c.ask(OPT_GO, &go_data(&token)), REP_ACK);
    c.request(CMD_READ, 7, 0, 4096, &[]);
    assert_eq!(
        c.structured_read(7),
        vec![0x5a; 4096],
        "what plaintext wrote"
    );
    c.request(CMD_WRITE, 8, 8192, 4096, &[0xa5; 4096]);
    assert_eq!(c.simple_reply(), (8, 0));
    plain.request(CMD_READ, 2, 8192, 4096, &[]);
    assert_eq!(plain.simple_reply(), (2, 0));
    assert_eq!(plain.bytes(4096), vec![0xa5; 4096], "what TLS wrote");
    // Disconnect cleanly: NBD_CMD_DISC, then the server closes TLS.
    c.request(2, 9, 0, 0, &[]);
    c.expect_eof();
}

#[test]
fn nbd_tls_handshake_that_stalls_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let Some(pki) = make_certs(dir.path()) else {
        return;
    };
    let mut args = tls_args("require", &pki);
    args.extend(["--nbd-handshake-timeout".into(), "1s".into()]);
    let s = start(&strs(&args));
    let mut c = Nbd(connect(&s.srv));
    c.greet();
    assert_eq!(c.ask(OPT_STARTTLS, &[]), REP_ACK);
    // No ClientHello: the server gives up after the handshake timeout.
    let t = Instant::now();
    c.expect_eof();
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
}

// -------------------------------------------------------------------------------------------------
// hostile clients

#[test]
fn nbd_slow_client_is_dropped_after_the_handshake_timeout() {
    let s = start(&["--nbd-handshake-timeout", "1s"]);
    let (_, _, uri) = s.srv.attach_new_volume(1);
    let token = export_of(&uri);
    // Slowloris: keeps the connection busy with one byte at a time, never finishing an option.
    let mut c = Nbd(connect(&s.srv));
    c.greet();
    let mut msg = IHAVEOPT.to_be_bytes().to_vec();
    msg.extend_from_slice(&OPT_GO.to_be_bytes());
    msg.extend_from_slice(&(go_data(&token).len() as u32).to_be_bytes());
    msg.extend_from_slice(&go_data(&token));
    let t = Instant::now();
    let mut closed = false;
    for b in &msg[..msg.len() - 1] {
        if c.0.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        closed || t.elapsed() >= Duration::from_secs(1),
        "the drip lasted past the timeout"
    );
    c.expect_eof();
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
}

#[test]
fn nbd_oversized_requests_are_refused_without_allocating() {
    let s = start(&[]);
    let (_, _, uri) = s.srv.attach_new_volume(1);
    let token = export_of(&uri);
    let pid = s.srv.pid();
    let before = vm_size(pid);

    // A 4 GiB write announces its payload: far past the maximum, so the server hangs up (as
    // the spec allows) rather than read it, and nothing was buffered for it. (Up to 64 MiB an
    // oversized write is read, discarded and answered EINVAL: see nbd_protocol.)
    let mut c = Nbd(connect(&s.srv));
    c.greet();
    assert_eq!(c.ask(OPT_GO, &go_data(&token)), REP_ACK);
    c.request(CMD_WRITE, 1, 0, u32::MAX, &[]);
    c.expect_eof();
    // A 4 GiB read: EINVAL, no data.
    let mut r = Nbd(connect(&s.srv));
    r.greet();
    assert_eq!(r.ask(OPT_GO, &go_data(&token)), REP_ACK);
    r.request(CMD_READ, 2, 0, u32::MAX, &[]);
    assert_eq!(r.simple_reply(), (2, EINVAL));
    r.request(CMD_READ, 3, 0, 4096, &[]);
    assert_eq!(r.simple_reply(), (3, 0), "the session goes on");
    r.bytes(4096);
    // A 4 GiB option: skipped as it arrives, never buffered.
    let mut o = Nbd(connect(&s.srv));
    o.greet();
    let mut hdr = IHAVEOPT.to_be_bytes().to_vec();
    hdr.extend_from_slice(&42u32.to_be_bytes());
    hdr.extend_from_slice(&u32::MAX.to_be_bytes());
    o.0.write_all(&hdr).unwrap();
    o.0.write_all(&vec![0u8; 4 << 20]).unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let after = vm_size(pid);
    assert!(
        after < before + (1 << 30),
        "the server mapped {} MiB more for oversized requests",
        (after.saturating_sub(before)) >> 20
    );
    drop((c, o));
    // Still serving.
    r.request(CMD_READ, 4, 0, 4096, &[]);
    assert_eq!(r.simple_reply(), (4, 0));
}

/// A client that sends hundreds of 4 MiB reads and never reads a reply: the server holds about
/// its byte budget (64 MiB of reads in flight or replies queued), not 256 × 4 MiB.
#[test]
fn nbd_a_client_that_never_reads_replies_cannot_grow_the_server() {
    let s = start(&[]);
    // io2 at 64,000 IOPS: fast enough (4,000 MB/s) that the throttle is not what bounds memory.
    let mut grpc = s.srv.client();
    let volume = s.srv.ok(
        "CreateVolume",
        s.srv.block_on(grpc.create_volume(pb::CreateVolumeRequest {
            availability_zone: "us-east-1a".into(),
            size: Some(64),
            volume_type: Some("io2".into()),
            iops: Some(64_000),
            ..Default::default()
        })),
    );
    let host = s.srv.register_host("no-reader");
    let uri = s.srv.attach(&volume.volume_id, &host.instance_id).nbd_uri;
    let token = export_of(&uri);
    let pid = s.srv.pid();
    let rss = || {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
            * 1024
    };
    let before = rss();
    let mut c = Nbd(connect(&s.srv));
    c.greet();
    assert_eq!(c.ask(OPT_GO, &go_data(&token)), REP_ACK);
    c.0.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    // 300 reads of 4 MiB: 1.2 GiB asked for. The requests themselves are 28 bytes each.
    for i in 0..300u64 {
        let offset = (i % 64) * (4 << 20);
        c.request(CMD_READ, i, offset, 4 << 20, &[]);
    }
    std::thread::sleep(Duration::from_secs(2));
    let grown = rss().saturating_sub(before);
    assert!(
        grown < 256 << 20,
        "the server holds {} MiB for a client that reads nothing",
        grown >> 20
    );
    // Reading the replies drains everything: every one arrives, in some order.
    c.0.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..300 {
        let (cookie, err) = c.simple_reply();
        assert_eq!(err, 0);
        c.bytes(4 << 20);
        seen.insert(cookie);
    }
    assert_eq!(seen.len(), 300);
}

#[test]
fn export_names_are_unguessable() {
    let s = start(&[]);
    let srv = &s.srv;
    let (vol_a, host, uri_a) = srv.attach_new_volume(1);
    let vol_b = srv.create_volume(1).volume_id;
    let host_b = srv.register_host("other-host").instance_id;
    let uri_b = srv.attach(&vol_b, &host_b).nbd_uri;
    let (a, b) = (export_of(&uri_a), export_of(&uri_b));
    for t in [&a, &b] {
        assert_eq!(t.len(), 32, "128 bits in hex: {t}");
        assert!(t.bytes().all(|c| c.is_ascii_hexdigit()), "{t}");
        assert!(!t.contains(&vol_a[4..]) && !t.contains(&vol_b[4..]), "{t}");
    }
    assert_ne!(a, b);
    // Re-attaching issues a new name; the old one stops working.
    srv.detach(&vol_a);
    srv.wait_volume_state(&vol_a, "available");
    let a2 = export_of(&srv.attach(&vol_a, &host).nbd_uri);
    assert_ne!(a2, a);

    let mut c = Nbd(connect(srv));
    c.greet();
    // Export names are never listed.
    c.option(OPT_LIST, &[]);
    assert_eq!(c.option_reply(OPT_LIST), (REP_ACK, vec![]));
    // The old name, a near miss, the volume id: unknown.
    let mut near = a2.clone().into_bytes();
    near[31] = if near[31] == b'0' { b'1' } else { b'0' };
    let near = String::from_utf8(near).unwrap();
    for name in [a.as_str(), near.as_str(), vol_a.as_str(), &a2[..31], ""] {
        assert_eq!(c.ask(OPT_GO, &go_data(name)), REP_ERR_UNKNOWN, "{name:?}");
    }
    assert_eq!(c.ask(OPT_GO, &go_data(&a2)), REP_ACK);
}

#[test]
fn ids_cannot_name_paths_outside_the_data_dir() {
    let s = start(&[]);
    let srv = &s.srv;
    // Something to aim at, one level above the data dir.
    let outside = s.dir.path().join("etc");
    std::fs::create_dir_all(&outside).unwrap();
    let mut c = srv.client();

    let bad_vols = [
        "vol-../../etc",
        "vol-../x",
        "../x",
        "vol-0123456789abcdef0/../../x",
        "vol-/etc/passwd",
        "vol-0123456789abcdef",
    ];
    let bad_snaps = ["snap-../../etc", "../x", "snap-0123456789abcdef0/.."];
    let bad_instances = ["i-../../etc", "../x", "i-0123456789abcdef0/.."];

    let mut results: Vec<(String, Option<String>)> = Vec::new();
    let mut check = |what: String, r: Result<(), tonic::Status>| {
        results.push((what, r.err().map(|s| ec2_code(&s).unwrap_or_default())));
    };
    for id in bad_vols {
        let id = id.to_string();
        check(
            format!("DescribeVolumes {id}"),
            srv.block_on(c.describe_volumes(pb::DescribeVolumesRequest {
                volume_ids: vec![id.clone()],
                ..Default::default()
            }))
            .map(drop),
        );
        check(
            format!("CreateSnapshot {id}"),
            srv.block_on(c.create_snapshot(pb::CreateSnapshotRequest {
                volume_id: id.clone(),
                ..Default::default()
            }))
            .map(drop),
        );
        check(
            format!("DeleteVolume {id}"),
            srv.block_on(c.delete_volume(pb::DeleteVolumeRequest {
                volume_id: id.clone(),
            }))
            .map(drop),
        );
        check(
            format!("AttachVolume {id}"),
            srv.block_on(c.attach_volume(pb::AttachVolumeRequest {
                volume_id: id.clone(),
                instance_id: "i-0123456789abcdef0".into(),
                device: "/dev/sdf".into(),
            }))
            .map(drop),
        );
        check(
            format!("DetachVolume {id}"),
            srv.block_on(c.detach_volume(pb::DetachVolumeRequest {
                volume_id: id.clone(),
                ..Default::default()
            }))
            .map(drop),
        );
        check(
            format!("ModifyVolume {id}"),
            srv.block_on(c.modify_volume(pb::ModifyVolumeRequest {
                volume_id: id.clone(),
                size: Some(2),
                ..Default::default()
            }))
            .map(drop),
        );
        check(
            format!("GetVolumeMetrics {id}"),
            srv.block_on(c.get_volume_metrics(pb::GetVolumeMetricsRequest {
                volume_ids: vec![id.clone()],
            }))
            .map(drop),
        );
        check(
            format!("DescribeVolumesModifications {id}"),
            srv.block_on(c.describe_volumes_modifications(
                pb::DescribeVolumesModificationsRequest {
                    volume_ids: vec![id.clone()],
                    ..Default::default()
                },
            ))
            .map(drop),
        );
        check(
            format!("ReservationReport {id}"),
            srv.block_on(c.reservation_report(pb::ReservationReportRequest {
                volume_id: id.clone(),
            }))
            .map(drop),
        );
        check(
            format!("CreateTags {id}"),
            srv.block_on(c.create_tags(pb::CreateTagsRequest {
                resources: vec![id.clone()],
                tags: vec![pb::Tag {
                    key: "k".into(),
                    value: "v".into(),
                }],
            }))
            .map(drop),
        );
    }
    for id in bad_snaps {
        let id = id.to_string();
        check(
            format!("DescribeSnapshots {id}"),
            srv.block_on(c.describe_snapshots(pb::DescribeSnapshotsRequest {
                snapshot_ids: vec![id.clone()],
                ..Default::default()
            }))
            .map(drop),
        );
        check(
            format!("DeleteSnapshot {id}"),
            srv.block_on(c.delete_snapshot(pb::DeleteSnapshotRequest {
                snapshot_id: id.clone(),
            }))
            .map(drop),
        );
        check(
            format!("CreateVolume from {id}"),
            srv.block_on(c.create_volume(pb::CreateVolumeRequest {
                availability_zone: AZ.into(),
                snapshot_id: Some(id.clone()),
                ..Default::default()
            }))
            .map(drop),
        );
        check(
            format!("CopySnapshot {id}"),
            srv.block_on(c.copy_snapshot(pb::CopySnapshotRequest {
                source_region: "us-east-1".into(),
                source_snapshot_id: id.clone(),
                ..Default::default()
            }))
            .map(drop),
        );
        // Fast snapshot restores answer per item, after a lookup in memory.
        let fsr = srv.ok(
            "EnableFastSnapshotRestores",
            srv.block_on(
                c.enable_fast_snapshot_restores(pb::EnableFastSnapshotRestoresRequest {
                    availability_zones: vec![AZ.into()],
                    source_snapshot_ids: vec![id.clone()],
                }),
            ),
        );
        assert!(fsr.successful.is_empty(), "{fsr:?}");
        assert_eq!(fsr.unsuccessful.len(), 1, "{fsr:?}");
        assert_eq!(
            fsr.unsuccessful[0].code, "InvalidSnapshot.NotFound",
            "{fsr:?}"
        );
        check(
            format!("ListSnapshotBlocks {id}"),
            srv.block_on(c.list_snapshot_blocks(pb::ListSnapshotBlocksRequest {
                snapshot_id: id.clone(),
                ..Default::default()
            }))
            .map(drop),
        );
        check(
            format!("GetSnapshotBlock {id}"),
            srv.block_on(c.get_snapshot_block(pb::GetSnapshotBlockRequest {
                snapshot_id: id.clone(),
                block_index: 0,
                block_token: "x".into(),
            }))
            .map(drop),
        );
        check(
            format!("ListChangedBlocks {id}"),
            srv.block_on(c.list_changed_blocks(pb::ListChangedBlocksRequest {
                second_snapshot_id: id.clone(),
                ..Default::default()
            }))
            .map(drop),
        );
    }
    for id in bad_instances {
        let id = id.to_string();
        check(
            format!("DescribeInstances {id}"),
            srv.block_on(c.describe_instances(pb::DescribeInstancesRequest {
                instance_ids: vec![id.clone()],
                ..Default::default()
            }))
            .map(drop),
        );
        check(
            format!("TerminateInstances {id}"),
            srv.block_on(c.terminate_instances(pb::InstanceIdsRequest {
                instance_ids: vec![id.clone()],
            }))
            .map(drop),
        );
        check(
            format!("GetConsoleOutput {id}"),
            srv.block_on(c.get_console_output(pb::GetConsoleOutputRequest {
                instance_id: id.clone(),
            }))
            .map(drop),
        );
        check(
            format!("DeregisterHost {id}"),
            srv.block_on(c.deregister_host(pb::DeregisterHostRequest {
                instance_id: id.clone(),
            }))
            .map(drop),
        );
        check(
            format!("DescribeHosts {id}"),
            srv.block_on(c.describe_hosts(pb::DescribeHostsRequest {
                instance_ids: vec![id.clone()],
            }))
            .map(drop),
        );
    }
    check(
        "RunInstances ami-../x".into(),
        srv.block_on(c.run_instances(pb::RunInstancesRequest {
            image_id: "ami-../x".into(),
            min_count: 1,
            max_count: 1,
            ..Default::default()
        }))
        .map(drop),
    );
    check(
        "DeregisterImage ami-../x".into(),
        srv.block_on(c.deregister_image(pb::DeregisterImageRequest {
            image_id: "ami-../x".into(),
        }))
        .map(drop),
    );
    check(
        "CreateVolume in AZ ../../etc".into(),
        srv.block_on(c.create_volume(pb::CreateVolumeRequest {
            availability_zone: "../../etc".into(),
            size: Some(1),
            ..Default::default()
        }))
        .map(drop),
    );

    let report: Vec<String> = results
        .iter()
        .map(|(w, code)| format!("{w}: {code:?}"))
        .collect();
    eprintln!("{}", report.join("\n"));
    for (what, code) in &results {
        let code = code
            .as_deref()
            .unwrap_or_else(|| panic!("{what} was accepted"));
        assert!(
            code.ends_with(".Malformed")
                || matches!(
                    code,
                    "InvalidID" | "ValidationException" | "InvalidParameterValue"
                ),
            "{what}: {code}"
        );
    }
    // Nothing was created outside the data dir.
    let stray: Vec<_> = std::fs::read_dir(s.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "data" && n != "etc")
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
}
