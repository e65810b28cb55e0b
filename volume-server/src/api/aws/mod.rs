//! The AWS endpoint (`--aws-addr`): one HTTP/1.1 listener for the AWS wire protocols, routed by
//! the service of each request's SigV4 credential scope: `ec2` (EC2 Query), `ebs` (the EBS
//! direct APIs, REST-JSON), `kms` (KMS, JSON 1.1) and `sts` (GetCallerIdentity). A request is authenticated first ([`credentials`], [`sigv4`]), then
//! decoded, run on the control plane on a blocking thread, and encoded.
//!
//! Errors follow each protocol: EC2's `<Response><Errors><Error>` with `RequestID`, STS's
//! `<ErrorResponse>`, each with the HTTP status of its [`ErrorCode`] (4xx for the client's
//! faults: the SDKs retry 5xx).

pub mod ce;
pub mod credentials;
pub mod ebs;
pub mod ec2;
mod ec2_access;
mod ec2_billing;
mod ec2_encryption;
pub mod kms;
pub mod query;
pub mod savingsplans;
pub mod sigv4;
pub mod sts;
pub mod xml;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::control::{Account, ControlPlane, Ec2Error, ErrorCode};
use credentials::Keys;
use xml::Xml;

/// The largest request body read (an EBS block is 512 KiB; a Query request is a few KiB).
pub const MAX_BODY: usize = 2 << 20;

/// How long a client may take to send a request's headers, and then its body.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Connections served at once; more are closed as they arrive.
const MAX_CONNECTIONS: usize = 1024;

/// The endpoint's state.
#[derive(Debug)]
pub struct AwsApi {
    control: Arc<ControlPlane>,
    keys: Keys,
}

/// Who a request is from, once authenticated.
#[derive(Debug, Clone)]
struct Caller {
    access_key_id: String,
    account: Account,
    service: String,
}

impl AwsApi {
    /// Serves `control`, accepting `keys`.
    pub fn new(control: Arc<ControlPlane>, keys: Keys) -> AwsApi {
        AwsApi { control, keys }
    }

    /// Answers one request.
    async fn serve(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        let request_id = request_id();
        let (parts, body) = req.into_parts();
        let read = tokio::time::timeout(READ_TIMEOUT, Limited::new(body, MAX_BODY).collect());
        let body = match read.await {
            Err(_) => {
                let e = Ec2Error::new(
                    ErrorCode::RequestTimeout,
                    format!("The request body did not arrive within {READ_TIMEOUT:?}."),
                );
                return Ok(ec2_error(&e, &request_id));
            }
            Ok(Ok(b)) => b.to_bytes(),
            Ok(Err(e)) => {
                let e = if e.is::<http_body_util::LengthLimitError>() {
                    Ec2Error::new(
                        ErrorCode::RequestEntityTooLarge,
                        format!("The request body is larger than {MAX_BODY} bytes."),
                    )
                } else {
                    Ec2Error::new(
                        ErrorCode::IncompleteSignature,
                        format!("The request body could not be read: {e}"),
                    )
                };
                return Ok(ec2_error(&e, &request_id));
            }
        };
        let query = parts.uri.query().unwrap_or("");
        let caller = match self.authenticate(&parts, query, &body) {
            Ok(c) => c,
            Err((e, service)) => {
                return Ok(match service.as_deref() {
                    Some("ebs") => ebs_response(ebs::error(&json_auth_error(e)), &request_id),
                    Some("savingsplans") => {
                        ebs_response(savingsplans::error(&json_auth_error(e)), &request_id)
                    }
                    Some("kms" | "ce") => {
                        kms_response(kms::error(&json_auth_error(e)), &request_id)
                    }
                    s => query_error(s, &e, &request_id),
                });
            }
        };
        if caller.service == "savingsplans" {
            let control = Arc::clone(&self.control);
            let (method, path) = (parts.method.clone(), parts.uri.path().to_string());
            let who = caller.account;
            let done = tokio::task::spawn_blocking(move || {
                savingsplans::handle(&control, who, &method, &path, &body)
            })
            .await;
            let reply = match done {
                Ok(r) => r,
                Err(join) => savingsplans::error(&Ec2Error::new(
                    ErrorCode::InternalServerException,
                    format!("control-plane task failed: {join}"),
                )),
            };
            return Ok(ebs_response(reply, &request_id));
        }
        if caller.service == "ebs" {
            let control = Arc::clone(&self.control);
            let (method, path, query) = (
                parts.method.clone(),
                parts.uri.path().to_string(),
                query.to_string(),
            );
            let headers = parts.headers.clone();
            let who = caller.account;
            let done = tokio::task::spawn_blocking(move || {
                ebs::handle(&control, who, &method, &path, &query, &headers, &body)
            })
            .await;
            let reply = match done {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => ebs::error(&e),
                Err(join) => ebs::error(&Ec2Error::new(
                    ErrorCode::InternalServerException,
                    format!("control-plane task failed: {join}"),
                )),
            };
            return Ok(ebs_response(reply, &request_id));
        }
        if caller.service == "kms" || caller.service == "ce" {
            let control = Arc::clone(&self.control);
            let target = parts
                .headers
                .get("x-amz-target")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let who = caller.account;
            let ce = caller.service == "ce";
            let done = tokio::task::spawn_blocking(move || {
                if ce {
                    ce::handle(&control, who, target.as_deref(), &body)
                } else {
                    kms::handle(&control, who, target.as_deref(), &body)
                }
            })
            .await;
            let reply = match done {
                Ok(r) => r,
                Err(join) => kms::error(&Ec2Error::new(
                    ErrorCode::InternalServerException,
                    format!("control-plane task failed: {join}"),
                )),
            };
            return Ok(kms_response(reply, &request_id));
        }
        let params = match query::Params::parse(query, &body) {
            Ok(p) => p,
            Err(e) => return Ok(query_error(Some(&caller.service), &e, &request_id)),
        };
        match caller.service.as_str() {
            "ec2" => {
                let control = Arc::clone(&self.control);
                let id = request_id.clone();
                let who = caller.account;
                let done =
                    tokio::task::spawn_blocking(move || ec2::handle(&control, who, &params, &id))
                        .await;
                Ok(match done {
                    Ok(Ok(doc)) => xml_response(200, doc),
                    Ok(Err(e)) => ec2_error(&e, &request_id),
                    Err(join) => ec2_error(
                        &Ec2Error::internal(format!("control-plane task failed: {join}")),
                        &request_id,
                    ),
                })
            }
            "sts" => {
                let who = sts::Caller {
                    access_key_id: &caller.access_key_id,
                    account: caller.account,
                };
                Ok(match sts::handle(&params, &who, &request_id) {
                    Ok(doc) => xml_response(200, doc),
                    Err(e) => query_error(Some("sts"), &e, &request_id),
                })
            }
            other => Ok(ec2_error(
                &Ec2Error::new(
                    ErrorCode::InvalidAction,
                    format!(
                        "This endpoint does not serve the service '{other}' (it serves ec2, ebs, kms, ce, savingsplans and sts)."
                    ),
                ),
                &request_id,
            )),
        }
    }

    /// Checks the request's signature: the caller, or the error (and the service named, if
    /// the scope could be read, to answer in its format).
    fn authenticate(
        &self,
        parts: &http::request::Parts,
        query: &str,
        body: &[u8],
    ) -> Result<Caller, (Ec2Error, Option<String>)> {
        let signed = sigv4::parse(&parts.headers).map_err(|e| {
            let code = match e {
                sigv4::SigError::Missing => ErrorCode::AuthFailure,
                _ => ErrorCode::IncompleteSignature,
            };
            (Ec2Error::new(code, e.to_string()), None)
        })?;
        let service = Some(signed.service.clone());
        let sts = signed.service == "sts";
        // The signature covers the normalized path; the handlers see the path as sent: only a
        // path that is already normalized may pass.
        let path = parts.uri.path();
        if path.contains("//")
            || path.split('/').any(|s| {
                s == "."
                    || s == ".."
                    || s.eq_ignore_ascii_case("%2e")
                    || s.eq_ignore_ascii_case("%2e%2e")
            })
        {
            return Err((
                Ec2Error::invalid_value(format!("The path '{path}' is not in normal form.")),
                service,
            ));
        }
        // Cost Explorer and Savings Plans are global: their clients sign for us-east-1
        // whatever region they are in.
        let global = matches!(signed.service.as_str(), "ce" | "savingsplans")
            && signed.region == "us-east-1";
        if signed.region != self.control.region() && !global {
            return Err((
                Ec2Error::new(
                    ErrorCode::AuthFailure,
                    format!(
                        "This server serves region {}; the request was signed for {}.",
                        self.control.region(),
                        signed.region
                    ),
                ),
                service,
            ));
        }
        let account = match &self.keys {
            Keys::Local => {
                // Unauthenticated, so for this machine only: a page in a browser must not reach
                // it through a name that resolves here (DNS rebinding).
                if !loopback_host(&parts.headers) {
                    return Err((
                        Ec2Error::new(
                            ErrorCode::AuthFailure,
                            "Without --aws-credentials this endpoint answers only requests addressed to localhost or a loopback address.",
                        ),
                        service,
                    ));
                }
                credentials::local_account(&signed.access_key_id)
            }
            Keys::Listed(keys) => {
                let Some(key) = keys.get(&signed.access_key_id) else {
                    let code = match signed.service.as_str() {
                        "sts" => ErrorCode::InvalidClientTokenId,
                        "ebs" | "kms" | "ce" | "savingsplans" => {
                            ErrorCode::UnrecognizedClientException
                        }
                        _ => ErrorCode::AuthFailure,
                    };
                    return Err((
                        Ec2Error::new(
                            code,
                            "AWS was not able to validate the provided access credentials",
                        ),
                        service,
                    ));
                };
                sigv4::check_time(&signed, SystemTime::now()).map_err(|e| {
                    (
                        Ec2Error::new(ErrorCode::RequestExpired, e.to_string()),
                        service.clone(),
                    )
                })?;
                let req = sigv4::Request {
                    method: parts.method.as_str(),
                    path: parts.uri.path(),
                    query,
                    headers: &parts.headers,
                    body,
                    // Only the EBS block upload may leave its body unsigned (botocore signs it
                    // `v4-unsigned-body`); its data is checked against the signed checksum.
                    unsigned_body_allowed: signed.service == "ebs"
                        && parts.method == http::Method::PUT,
                };
                sigv4::verify(&req, &signed, &key.secret).map_err(|e| {
                    let code = match (&e, sts) {
                        (sigv4::SigError::Mismatch, true) => ErrorCode::SignatureDoesNotMatch,
                        (sigv4::SigError::Mismatch, false) => ErrorCode::AuthFailure,
                        (sigv4::SigError::PayloadMismatch, _) => {
                            ErrorCode::XAmzContentSha256Mismatch
                        }
                        _ => ErrorCode::IncompleteSignature,
                    };
                    (Ec2Error::new(code, e.to_string()), service.clone())
                })?;
                key.account
            }
        };
        Ok(Caller {
            access_key_id: signed.access_key_id,
            account,
            service: signed.service,
        })
    }
}

/// An authentication failure in the terms of the JSON services (the EBS direct APIs): a bad
/// or expired signature is `InvalidSignatureException` (an unknown key is already
/// `UnrecognizedClientException`), 403.
fn json_auth_error(e: Ec2Error) -> Ec2Error {
    let code = match e.code {
        ErrorCode::AuthFailure
        | ErrorCode::IncompleteSignature
        | ErrorCode::RequestExpired
        | ErrorCode::XAmzContentSha256Mismatch => ErrorCode::InvalidSignatureException,
        other => other,
    };
    Ec2Error::new(code, e.message)
}

/// Whether the request's `Host` names this machine: `localhost`, a `*.localhost` name, or a
/// loopback address.
fn loopback_host(headers: &http::HeaderMap) -> bool {
    let Some(host) = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
    else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    let name = name.to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// A fresh request id (a random UUID's form).
fn request_id() -> String {
    let b: [u8; 16] = rand::random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn xml_response(status: u16, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/xml;charset=UTF-8"),
    );
    r
}

/// A REST-JSON reply of the EBS direct APIs.
/// A KMS reply: the JSON 1.1 content type.
fn kms_response(r: ebs::Reply, request_id: &str) -> Response<Full<Bytes>> {
    let mut out = ebs_response(r, request_id);
    out.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(kms::CONTENT_TYPE),
    );
    out
}

fn ebs_response(r: ebs::Reply, request_id: &str) -> Response<Full<Bytes>> {
    if r.status.is_server_error() {
        tracing::error!(status = %r.status, request_id, "AWS endpoint (ebs): server error");
    }
    let mut out = Response::new(Full::new(r.body));
    *out.status_mut() = r.status;
    let h = out.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(if r.json {
            "application/json"
        } else {
            "application/octet-stream"
        }),
    );
    if let Ok(v) = http::HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    for (k, v) in r.headers {
        if let Ok(v) = http::HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
    out
}

/// A Query-protocol error in the format of `service`: STS's `ErrorResponse`, else EC2's.
fn query_error(service: Option<&str>, e: &Ec2Error, request_id: &str) -> Response<Full<Bytes>> {
    match service {
        Some("sts") => xml_response(e.code.http_status(), sts::error(e, request_id)),
        _ => ec2_error(e, request_id),
    }
}

/// An EC2 error document with the code's HTTP status.
fn ec2_error(e: &Ec2Error, request_id: &str) -> Response<Full<Bytes>> {
    if e.code.http_status() >= 500 {
        tracing::error!(code = %e.code, message = %e.message, request_id, "AWS endpoint: server error");
    }
    let mut x = Xml::new("Response", ec2::NAMESPACE);
    x.node("Errors", |x| {
        x.node("Error", |x| {
            x.elem("Code", e.code.as_str()).elem("Message", &e.message);
        });
    })
    .elem("RequestID", request_id);
    xml_response(e.code.http_status(), x.finish("Response"))
}

/// Serves the endpoint on `listener` until `stop` turns true; connections then finish the
/// request in progress and close.
pub async fn run(listener: TcpListener, api: Arc<AwsApi>, mut stop: watch::Receiver<bool>) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (stream, _) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "AWS endpoint: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::warn!(
                limit = MAX_CONNECTIONS,
                "AWS endpoint: too many connections; closing a new one"
            );
            continue;
        };
        let _ = stream.set_nodelay(true);
        let api = Arc::clone(&api);
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(READ_TIMEOUT)
            .serve_connection(
                TokioIo::new(stream),
                hyper::service::service_fn(move |req| Arc::clone(&api).serve(req)),
            );
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "AWS endpoint: connection ended");
            }
            drop(slot);
        });
    }
    // In-flight requests get a moment to finish.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), graceful.shutdown()).await;
}

#[cfg(test)]
mod tests {
    use super::loopback_host;

    #[test]
    fn only_loopback_hosts_reach_an_unauthenticated_endpoint() {
        let host = |h: &str| {
            let mut m = http::HeaderMap::new();
            m.insert(http::header::HOST, h.parse().unwrap());
            loopback_host(&m)
        };
        for ok in [
            "localhost:4566",
            "LOCALHOST",
            "s3.localhost:1",
            "127.0.0.1:4566",
            "127.9.9.9",
            "[::1]:4566",
            "[::ffff:127.0.0.1]:80",
        ] {
            assert!(host(ok), "{ok}");
        }
        for bad in [
            "attacker.example:4566",
            "10.0.0.1:4566",
            "[fe80::1]:1",
            "localhost.attacker.example",
            "",
        ] {
            assert!(!host(bad), "{bad}");
        }
        assert!(!loopback_host(&http::HeaderMap::new()));
    }
}
