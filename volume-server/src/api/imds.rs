//! The instance metadata service (IMDS) over HTTP, as EC2's answers at 169.254.169.254.
//!
//! Where it listens ([`MetadataEndpoints`]): booted instances reach it at 169.254.169.254:80,
//! which their namespace sends to their subnet's router address, where a listener bound to
//! their VPC's bridge takes it (so a request's VPC is known; its source address names the
//! instance). A plain-process instance gets a loopback address
//! of its own (`127.x.y.z`, from its id, so an adopted workload finds it again after a
//! restart of the server), named in its `AWS_EC2_METADATA_SERVICE_ENDPOINT`.
//!
//! What it answers: IMDSv2 sessions (`PUT /latest/api/token` with
//! `X-aws-ec2-metadata-token-ttl-seconds`, 1–21600; refused with `X-Forwarded-For`, as EC2
//! refuses proxied token requests), and `GET` of `meta-data/…`, `user-data`,
//! `dynamic/instance-identity/document` with or (unless `HttpTokens=required`) without a
//! token. `HttpPutResponseHopLimit` is the IP TTL of the connection's packets: a client
//! further away than that gets no answer. `HttpEndpoint=disabled` answers 403.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant, UNIX_EPOCH};

use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::Full;
use hyper::Response;
use hyper_util::rt::TokioIo;
use rand::RngCore;
use tokio::net::{TcpListener, TcpSocket};

use crate::control::ControlPlane;
use crate::control::metadata::{InstanceMetadata, MetadataEndpoints};

const TOKEN_PATH: &str = "/latest/api/token";
const TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
/// Session tokens live at most six hours, as on EC2.
const MAX_TTL: u64 = 21_600;
/// Sessions one instance keeps at once: a new one past this ends its oldest, so no instance
/// can use up the others' sessions.
const MAX_SESSIONS_PER_INSTANCE: usize = 1_000;

/// Who a listener serves.
#[derive(Debug, Clone)]
enum Scope {
    /// The booted instances of a VPC, by source address.
    Vpc(String),
    /// One plain-process instance.
    Instance(String),
}

#[derive(Debug)]
struct Listener {
    /// The bridge's interface index when bound (a bridge made again has a new one).
    ifindex: Option<u32>,
    task: tokio::task::AbortHandle,
}

#[derive(Debug)]
struct Session {
    instance_id: String,
    expires: Instant,
}

/// The metadata service: its listeners and sessions.
#[derive(Debug)]
pub struct MetadataService {
    control: OnceLock<Weak<ControlPlane>>,
    runtime: tokio::runtime::Handle,
    listeners: Mutex<HashMap<String, Listener>>,
    sessions: Mutex<HashMap<String, Session>>,
}

impl MetadataService {
    /// A service with no listeners yet; [`MetadataService::bind_control`] gives it the control
    /// plane (made after it, since the control plane starts its listeners).
    pub fn new(runtime: tokio::runtime::Handle) -> Arc<MetadataService> {
        Arc::new(MetadataService {
            control: OnceLock::new(),
            runtime,
            listeners: Mutex::default(),
            sessions: Mutex::default(),
        })
    }

    /// Where answers come from.
    pub fn bind_control(&self, control: &Arc<ControlPlane>) {
        let _ = self.control.set(Arc::downgrade(control));
    }

    /// Stops every listener (at shutdown).
    pub fn stop_all(&self) {
        for (_, l) in self
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
        {
            l.task.abort();
        }
    }

    /// The instance a request comes from. Blocking (the control plane's lock): a blocking
    /// thread does it, so a long control call never stalls the runtime's workers.
    async fn metadata(self: &Arc<Self>, scope: &Scope, peer: IpAddr) -> Option<InstanceMetadata> {
        let control = self.control.get()?.upgrade()?;
        let scope = scope.clone();
        tokio::task::spawn_blocking(move || match &scope {
            Scope::Vpc(vpc) => control.metadata_at(vpc, &peer.to_string()),
            Scope::Instance(id) => control.metadata_of(id),
        })
        .await
        .ok()
        .flatten()
    }

    fn start(
        self: &Arc<Self>,
        key: String,
        scope: Scope,
        addr: SocketAddr,
        device: Option<&str>,
        ifindex: Option<u32>,
    ) -> Result<(), String> {
        let _rt = self.runtime.enter();
        let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
        socket.set_reuseaddr(true).map_err(|e| e.to_string())?;
        if let Some(dev) = device {
            socket
                .bind_device(Some(dev.as_bytes()))
                .map_err(|e| format!("binding to {dev}: {e}"))?;
        }
        socket
            .bind(addr)
            .map_err(|e| format!("binding {addr}: {e}"))?;
        let listener = socket.listen(128).map_err(|e| e.to_string())?;
        let me = Arc::clone(self);
        let task = self
            .runtime
            .spawn(async move { me.accept(listener, scope).await })
            .abort_handle();
        if let Some(old) = self
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, Listener { ifindex, task })
        {
            old.task.abort();
        }
        tracing::info!(%addr, device, "metadata service listening");
        Ok(())
    }

    async fn accept(self: Arc<Self>, listener: TcpListener, scope: Scope) {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "metadata service: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // The instance's hop limit caps how far the answers travel.
            let hops = self
                .metadata(&scope, peer.ip())
                .await
                .map_or(1, |m| m.options.hop_limit);
            let _ = stream.set_ttl(u32::from(hops));
            let _ = stream.set_nodelay(true);
            let me = Arc::clone(&self);
            let scope = scope.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let me = Arc::clone(&me);
                        let scope = scope.clone();
                        async move {
                            let m = me.metadata(&scope, peer.ip()).await;
                            Ok::<_, std::convert::Infallible>(me.answer(
                                m.as_ref(),
                                req.method(),
                                req.uri().path(),
                                req.headers(),
                            ))
                        }
                    },
                );
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), service);
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "metadata service: connection ended");
                }
            });
        }
    }

    /// The answer to one request from instance `m` (`None`: no running instance there). Public
    /// for the fuzz target: the method, path and headers are the instance's, untrusted.
    pub fn answer(
        &self,
        m: Option<&InstanceMetadata>,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Response<Full<Bytes>> {
        let Some(m) = m else {
            return text(StatusCode::NOT_FOUND, "Not Found");
        };
        if !m.options.endpoint_enabled {
            return text(StatusCode::FORBIDDEN, "Forbidden");
        }
        if path == TOKEN_PATH {
            if method != Method::PUT {
                return text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
            }
            return self.new_session(m, headers);
        }
        if method != Method::GET && method != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
        }
        match headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok()) {
            Some(token) => {
                let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
                let valid = sessions
                    .get(token)
                    .is_some_and(|s| s.instance_id == m.instance_id && s.expires > Instant::now());
                if !valid {
                    return text(StatusCode::UNAUTHORIZED, "Unauthorized");
                }
            }
            None if m.options.tokens_required => {
                return text(StatusCode::UNAUTHORIZED, "Unauthorized");
            }
            None => {}
        }
        match lookup(m, path) {
            Some(body) => Response::builder()
                .status(StatusCode::OK)
                .header(http::header::CONTENT_TYPE, "text/plain")
                .header(http::header::SERVER, "EC2ws")
                .body(Full::new(Bytes::from(body)))
                .expect("a valid response"),
            None => text(StatusCode::NOT_FOUND, "Not Found"),
        }
    }

    /// `PUT /latest/api/token`.
    fn new_session(&self, m: &InstanceMetadata, headers: &HeaderMap) -> Response<Full<Bytes>> {
        if headers.contains_key("x-forwarded-for") {
            return text(StatusCode::FORBIDDEN, "Forbidden");
        }
        let Some(ttl) = headers
            .get(TTL_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|t| (1..=MAX_TTL).contains(t))
        else {
            return text(StatusCode::BAD_REQUEST, "Bad Request");
        };
        let mut raw = [0u8; 40];
        rand::rng().fill_bytes(&mut raw);
        let token = base64::engine::general_purpose::STANDARD.encode(raw);
        let now = Instant::now();
        {
            let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            sessions.retain(|_, s| s.expires > now);
            let mine: Vec<(&String, &Session)> = sessions
                .iter()
                .filter(|(_, s)| s.instance_id == m.instance_id)
                .collect();
            if mine.len() >= MAX_SESSIONS_PER_INSTANCE
                && let Some(oldest) = mine
                    .iter()
                    .min_by_key(|(_, s)| s.expires)
                    .map(|(t, _)| (*t).clone())
            {
                sessions.remove(&oldest);
            }
            sessions.insert(
                token.clone(),
                Session {
                    instance_id: m.instance_id.clone(),
                    expires: now + Duration::from_secs(ttl),
                },
            );
        }
        Response::builder()
            .status(StatusCode::OK)
            .header(http::header::CONTENT_TYPE, "text/plain")
            .header(http::header::SERVER, "EC2ws")
            .header(TTL_HEADER, ttl.to_string())
            .body(Full::new(Bytes::from(token)))
            .expect("a valid response")
    }
}

impl MetadataEndpoints for Arc<MetadataService> {
    fn serve_vpc(&self, bridge: &str, vpc_id: &str, router: Ipv4Addr) -> Result<(), String> {
        let ifindex = std::fs::read_to_string(format!("/sys/class/net/{bridge}/ifindex"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        let key = format!("vpc/{bridge}/{router}");
        let live = self
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .is_some_and(|l| l.ifindex == ifindex && !l.task.is_finished());
        if live {
            return Ok(());
        }
        self.start(
            key,
            Scope::Vpc(vpc_id.to_string()),
            SocketAddr::new(IpAddr::V4(router), 80),
            Some(bridge),
            ifindex,
        )
    }

    fn serve_instance(&self, instance_id: &str) -> Result<String, String> {
        let addr = loopback_address(instance_id);
        let key = format!("instance/{instance_id}");
        let live = self
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .is_some_and(|l| !l.task.is_finished());
        if !live {
            self.start(
                key,
                Scope::Instance(instance_id.to_string()),
                addr,
                None,
                None,
            )?;
        }
        Ok(format!("http://{addr}"))
    }

    fn stop_instance(&self, instance_id: &str) {
        if let Some(l) = self
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&format!("instance/{instance_id}"))
        {
            l.task.abort();
        }
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, s| s.instance_id != instance_id);
    }

    fn stop_vpc(&self, bridge: &str) {
        let prefix = format!("vpc/{bridge}/");
        self.listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|key, l| {
                let keep = !key.starts_with(&prefix);
                if !keep {
                    l.task.abort();
                }
                keep
            });
    }
}

/// A plain-process instance's own loopback address: `127.A.B.C` from a hash of its id (never
/// 127.0.0.x), port 80 as root (as on EC2) and otherwise a port from the same hash.
fn loopback_address(instance_id: &str) -> SocketAddr {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(instance_id.as_bytes());
    let ip = Ipv4Addr::new(127, h[0].max(1), h[1], h[2].clamp(1, 254));
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let port = if root {
        80
    } else {
        20_000 + (u16::from_be_bytes([h[3], h[4]]) % 40_000)
    };
    SocketAddr::new(IpAddr::V4(ip), port)
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "text/plain")
        .header(http::header::SERVER, "EC2ws")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("a valid response")
}

/// The body at `path` for instance `m`, or `None` (404).
fn lookup(m: &InstanceMetadata, path: &str) -> Option<Vec<u8>> {
    let path = path.trim_end_matches('/');
    match path {
        "" => return Some(b"latest".to_vec()),
        "/latest" => {
            let mut items = vec!["dynamic", "meta-data"];
            if m.user_data.is_some() {
                items.push("user-data");
            }
            return Some(items.join("\n").into_bytes());
        }
        "/latest/user-data" => return m.user_data.clone(),
        "/latest/dynamic" => return Some(b"instance-identity/".to_vec()),
        "/latest/dynamic/instance-identity" => return Some(b"document".to_vec()),
        "/latest/dynamic/instance-identity/document" => {
            return Some(identity_document(m).into_bytes());
        }
        _ => {}
    }
    let rest = path.strip_prefix("/latest/meta-data")?;
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    let tree = meta_data(m);
    if let Some(v) = tree.get(rest) {
        return Some(v.clone().into_bytes());
    }
    if rest == "public-keys" {
        return m
            .public_key
            .as_ref()
            .map(|(name, _)| format!("0={name}").into_bytes());
    }
    // A directory: its children, sub-directories with a trailing slash.
    let prefix = if rest.is_empty() {
        String::new()
    } else {
        format!("{rest}/")
    };
    let mut children: Vec<String> = tree
        .keys()
        .filter_map(|k| k.strip_prefix(&prefix))
        .map(|k| match k.split_once('/') {
            Some((dir, _)) => format!("{dir}/"),
            None => k.to_string(),
        })
        .collect();
    children.dedup();
    (!children.is_empty()).then(|| children.join("\n").into_bytes())
}

/// Every leaf of `meta-data/`, by path.
fn meta_data(m: &InstanceMetadata) -> BTreeMap<String, String> {
    let mut t = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        t.insert(k.to_string(), v);
    };
    put("ami-id", m.image_id.clone());
    put("ami-launch-index", m.launch_index.to_string());
    put("ami-manifest-path", "(unknown)".into());
    for (name, device) in &m.block_devices {
        put(&format!("block-device-mapping/{name}"), device.clone());
    }
    put("hostname", m.hostname.clone());
    put("instance-action", "none".into());
    put("instance-id", m.instance_id.clone());
    put("instance-life-cycle", "on-demand".into());
    put("instance-type", m.instance_type.clone());
    put("local-hostname", m.hostname.clone());
    put("local-ipv4", m.private_ip.clone());
    put("mac", m.mac.clone());
    let nic = format!("network/interfaces/macs/{}", m.mac);
    put(&format!("{nic}/device-number"), "0".into());
    put(&format!("{nic}/interface-id"), m.interface_id.clone());
    put(&format!("{nic}/local-hostname"), m.hostname.clone());
    put(&format!("{nic}/local-ipv4s"), m.private_ip.clone());
    put(&format!("{nic}/mac"), m.mac.clone());
    put(&format!("{nic}/owner-id"), m.account_id.clone());
    put(
        &format!("{nic}/security-group-ids"),
        m.security_group.0.clone(),
    );
    put(
        &format!("{nic}/security-groups"),
        m.security_group.1.clone(),
    );
    put(&format!("{nic}/subnet-id"), m.subnet_id.clone());
    put(
        &format!("{nic}/subnet-ipv4-cidr-block"),
        m.subnet_cidr.clone(),
    );
    put(&format!("{nic}/vpc-id"), m.vpc_id.clone());
    put(&format!("{nic}/vpc-ipv4-cidr-block"), m.vpc_cidr.clone());
    put(&format!("{nic}/vpc-ipv4-cidr-blocks"), m.vpc_cidr.clone());
    if let Some(ip) = &m.public_ip {
        put(&format!("{nic}/public-ipv4s"), ip.clone());
        put(
            &format!("{nic}/ipv4-associations/{ip}"),
            m.private_ip.clone(),
        );
        put("public-ipv4", ip.clone());
    }
    put("placement/availability-zone", m.availability_zone.clone());
    if let Some(z) = &m.availability_zone_id {
        put("placement/availability-zone-id", z.clone());
    }
    put("placement/region", m.region.clone());
    if let Some((name, key)) = &m.public_key {
        put("public-keys/0/openssh-key", format!("{key} {name}"));
    }
    put("reservation-id", m.reservation_id.clone());
    put("security-groups", m.security_group.1.clone());
    put("services/domain", "amazonaws.com".into());
    put("services/partition", "aws".into());
    if m.options.tags_enabled {
        for (k, v) in &m.tags {
            put(&format!("tags/instance/{k}"), v.clone());
        }
    }
    t
}

/// `dynamic/instance-identity/document`, in EC2's field order.
fn identity_document(m: &InstanceMetadata) -> String {
    let pending =
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(m.launch_time_ms))
            .to_string();
    let fields: Vec<(&str, serde_json::Value)> = vec![
        ("accountId", m.account_id.clone().into()),
        ("architecture", m.architecture.clone().into()),
        ("availabilityZone", m.availability_zone.clone().into()),
        ("billingProducts", serde_json::Value::Null),
        ("devpayProductCodes", serde_json::Value::Null),
        ("marketplaceProductCodes", serde_json::Value::Null),
        ("imageId", m.image_id.clone().into()),
        ("instanceId", m.instance_id.clone().into()),
        ("instanceType", m.instance_type.clone().into()),
        ("kernelId", serde_json::Value::Null),
        ("pendingTime", pending.into()),
        ("privateIp", m.private_ip.clone().into()),
        ("ramdiskId", serde_json::Value::Null),
        ("region", m.region.clone().into()),
        ("version", "2017-09-30".into()),
    ];
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("  \"{k}\" : {v}"))
        .collect();
    format!("{{\n{}\n}}", body.join(",\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::MetadataOptions;

    fn instance() -> InstanceMetadata {
        InstanceMetadata {
            instance_id: "i-0123456789abcdef0".into(),
            account_id: "000000000000".into(),
            image_id: "ami-0123456789abcdef0".into(),
            instance_type: "t3.micro".into(),
            architecture: "x86_64".into(),
            launch_index: 0,
            reservation_id: "r-0123456789abcdef0".into(),
            launch_time_ms: 1_700_000_000_000,
            availability_zone: "us-east-1a".into(),
            availability_zone_id: Some("use1-az1".into()),
            region: "us-east-1".into(),
            hostname: "ip-172-31-0-4.ec2.internal".into(),
            private_ip: "172.31.0.4".into(),
            public_ip: Some("198.51.100.1".into()),
            mac: "02:00:00:00:00:01".into(),
            interface_id: "eni-0123456789abcdef0".into(),
            subnet_id: "subnet-0123456789abcdef0".into(),
            subnet_cidr: "172.31.0.0/20".into(),
            vpc_id: "vpc-0123456789abcdef0".into(),
            vpc_cidr: "172.31.0.0/16".into(),
            security_group: ("sg-0123456789abcdef0".into(), "default".into()),
            block_devices: vec![
                ("ami".into(), "/dev/xvda".into()),
                ("root".into(), "/dev/xvda".into()),
            ],
            public_key: Some(("demo".into(), "ssh-ed25519 AAAA".into())),
            user_data: None,
            tags: BTreeMap::from([("Name".into(), "web".into())]),
            options: MetadataOptions::default(),
        }
    }

    fn get(m: &InstanceMetadata, path: &str) -> Option<String> {
        lookup(m, path).map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn paths_answer_as_ec2s_do() {
        let mut m = instance();
        assert_eq!(
            get(&m, "/latest/meta-data/instance-id").unwrap(),
            m.instance_id
        );
        assert_eq!(
            get(&m, "/latest/meta-data/placement/region").unwrap(),
            "us-east-1"
        );
        assert_eq!(
            get(&m, "/latest/meta-data/placement/").unwrap(),
            "availability-zone\navailability-zone-id\nregion"
        );
        assert_eq!(get(&m, "/latest/meta-data/public-keys/").unwrap(), "0=demo");
        assert_eq!(
            get(&m, "/latest/meta-data/public-keys/0/").unwrap(),
            "openssh-key"
        );
        assert_eq!(
            get(&m, "/latest/meta-data/public-keys/0/openssh-key").unwrap(),
            "ssh-ed25519 AAAA demo"
        );
        let top = get(&m, "/latest/meta-data/").unwrap();
        assert!(top.contains("block-device-mapping/\n"), "{top}");
        assert!(top.contains("\npublic-ipv4\n"), "{top}");
        assert!(!top.contains("tags/"), "tags are off by default: {top}");
        assert_eq!(get(&m, "/latest/user-data"), None);
        assert_eq!(get(&m, "/latest/meta-data/spot/instance-action"), None);
        assert_eq!(get(&m, "/latest/meta-data/nothing"), None);
        m.options.tags_enabled = true;
        assert_eq!(get(&m, "/latest/meta-data/tags/instance").unwrap(), "Name");
        assert_eq!(
            get(&m, "/latest/meta-data/tags/instance/Name").unwrap(),
            "web"
        );
        let doc: serde_json::Value =
            serde_json::from_str(&get(&m, "/latest/dynamic/instance-identity/document").unwrap())
                .unwrap();
        assert_eq!(doc["instanceId"], "i-0123456789abcdef0");
        assert_eq!(doc["pendingTime"], "2023-11-14T22:13:20Z");
    }

    #[test]
    fn sessions_and_settings_gate_requests() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let svc = MetadataService::new(rt.handle().clone());
        let mut m = instance();
        let h = |pairs: &[(&str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(
                    http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            h
        };
        let path = "/latest/meta-data/instance-id";
        let status = |m: &InstanceMetadata, method: Method, p: &str, hd: &HeaderMap| {
            svc.answer(Some(m), &method, p, hd).status()
        };
        assert_eq!(status(&m, Method::GET, path, &h(&[])), StatusCode::OK);
        assert_eq!(
            status(&m, Method::PUT, TOKEN_PATH, &h(&[])),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(&m, Method::PUT, TOKEN_PATH, &h(&[(TTL_HEADER, "21601")])),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(
                &m,
                Method::PUT,
                TOKEN_PATH,
                &h(&[(TTL_HEADER, "60"), ("x-forwarded-for", "10.0.0.1")])
            ),
            StatusCode::FORBIDDEN
        );
        let r = svc.answer(
            Some(&m),
            &Method::PUT,
            TOKEN_PATH,
            &h(&[(TTL_HEADER, "60")]),
        );
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[TTL_HEADER], "60");
        let token = {
            use http_body_util::BodyExt;
            let body = rt.block_on(r.into_body().collect()).unwrap().to_bytes();
            String::from_utf8(body.to_vec()).unwrap()
        };
        m.options.tokens_required = true;
        assert_eq!(
            status(&m, Method::GET, path, &h(&[])),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(&m, Method::GET, path, &h(&[(TOKEN_HEADER, "forged")])),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(&m, Method::GET, path, &h(&[(TOKEN_HEADER, &token)])),
            StatusCode::OK
        );
        // Another instance's token is no token.
        let mut other = instance();
        other.instance_id = "i-0fedcba9876543210".into();
        assert_eq!(
            status(&other, Method::GET, path, &h(&[(TOKEN_HEADER, &token)])),
            StatusCode::UNAUTHORIZED
        );
        m.options.endpoint_enabled = false;
        assert_eq!(
            status(&m, Method::GET, path, &h(&[(TOKEN_HEADER, &token)])),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            svc.answer(None, &Method::GET, path, &h(&[])).status(),
            StatusCode::NOT_FOUND
        );
    }
}
