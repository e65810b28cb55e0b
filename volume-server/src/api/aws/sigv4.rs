//! AWS Signature Version 4 (header form): reads the `Authorization` header's credential scope and
//! checks that the request was signed with the secret of the key it names, as the SDKs sign.
//!
//! The canonical request is rebuilt from what arrived: method; the path with each segment
//! URI-encoded again (as the SDKs do for every service but S3); the query, decoded, re-encoded and
//! sorted; the signed headers, lower-cased, trimmed and sorted; and the payload hash
//! (`x-amz-content-sha256` when sent, which may be `UNSIGNED-PAYLOAD`, else the body's SHA-256).

use std::time::{Duration, SystemTime};

use http::HeaderMap;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What SigV4 leaves unencoded: `A-Z a-z 0-9 - _ . ~`.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// How far a request's time may be from ours (AWS: 15 minutes).
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The most headers a request may sign (the SDKs sign a handful).
const MAX_SIGNED_HEADERS: usize = 64;

/// The most bytes of signed header names and values (the canonical request's headers part).
const MAX_SIGNED_BYTES: usize = 64 << 10;

/// The payload hash a request sends instead of the body's to leave the body unsigned (the EBS
/// direct APIs' block upload: its data is covered by the signed `x-amz-checksum` instead).
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// Why a request's signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    /// No `Authorization` header.
    #[error("The request is not signed: it has no Authorization header (AWS Signature Version 4).")]
    Missing,
    /// An `Authorization` or `X-Amz-Date` header the server cannot read.
    #[error("{0}")]
    Malformed(String),
    /// Signed too long ago, or in the future.
    #[error(
        "Request has expired: it was signed at {0}, more than 15 minutes from the server's time."
    )]
    Expired(String),
    /// `x-amz-content-sha256` is not the body's hash.
    #[error("The provided x-amz-content-sha256 header does not match what was computed.")]
    PayloadMismatch,
    /// The signature is not the one the key's secret makes.
    #[error(
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method."
    )]
    Mismatch,
}

/// The credential scope and signature of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The key that signed.
    pub access_key_id: String,
    /// `YYYYMMDD` of the scope.
    pub date: String,
    /// The region signed for.
    pub region: String,
    /// The service signed for (`ec2`, `ebs`, `sts`, …).
    pub service: String,
    /// Lower-case names of the signed headers, as listed.
    pub signed_headers: Vec<String>,
    /// Hex signature.
    pub signature: String,
    /// `X-Amz-Date` (`YYYYMMDDTHHMMSSZ`).
    pub amz_date: String,
}

/// Reads the `Authorization` and `X-Amz-Date` headers.
pub fn parse(headers: &HeaderMap) -> Result<Signed, SigError> {
    let auth = headers
        .get(http::header::AUTHORIZATION)
        .ok_or(SigError::Missing)?
        .to_str()
        .map_err(|_| SigError::Malformed("The Authorization header is not text.".into()))?;
    let rest = auth
        .strip_prefix(ALGORITHM)
        .filter(|r| r.starts_with(' '))
        .ok_or_else(|| {
            SigError::Malformed(format!(
                "Unsupported authorization: only {ALGORITHM} (Signature Version 4) is accepted."
            ))
        })?;
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let Some((k, v)) = part.trim().split_once('=') else {
            continue;
        };
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed_headers = Some(v),
            "Signature" => signature = Some(v),
            _ => {}
        }
    }
    let missing = |what: &str| {
        SigError::Malformed(format!("Authorization header requires '{what}' parameter."))
    };
    let credential = credential.ok_or_else(|| missing("Credential"))?;
    let signed_headers = signed_headers.ok_or_else(|| missing("SignedHeaders"))?;
    let signature = signature.ok_or_else(|| missing("Signature"))?;
    // AKID/date/region/service/aws4_request; the key id itself may not hold a '/'.
    let fields: Vec<&str> = credential.split('/').collect();
    let [key, date, region, service, "aws4_request"] = fields[..] else {
        return Err(SigError::Malformed(format!(
            "Credential should be scoped to a valid region, service and date: '{credential}'."
        )));
    };
    if key.is_empty() || date.len() != 8 || region.is_empty() || service.is_empty() {
        return Err(SigError::Malformed(format!(
            "Credential should be scoped to a valid region, service and date: '{credential}'."
        )));
    }
    let amz_date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            SigError::Malformed("The request must carry an X-Amz-Date header.".into())
        })?;
    parse_amz_date(amz_date)?;
    if !amz_date.starts_with(date) {
        return Err(SigError::Malformed(format!(
            "The credential's date {date} is not the request's date {amz_date}."
        )));
    }
    // Strictly ascending, as the SDKs write it: no name twice (each repeat would add the
    // header's value to the canonical request again), and not too many.
    let names: Vec<String> = signed_headers.split(';').map(str::to_string).collect();
    if names.len() > MAX_SIGNED_HEADERS
        || names
            .iter()
            .any(|n| n.is_empty() || n.bytes().any(|b| b.is_ascii_uppercase()))
        || names.windows(2).any(|w| w[0] >= w[1])
    {
        return Err(SigError::Malformed(format!(
            "SignedHeaders must be at most {MAX_SIGNED_HEADERS} distinct lower-case names in ascending order."
        )));
    }
    Ok(Signed {
        access_key_id: key.to_string(),
        date: date.to_string(),
        region: region.to_string(),
        service: service.to_string(),
        signed_headers: names,
        signature: signature.to_string(),
        amz_date: amz_date.to_string(),
    })
}

/// `YYYYMMDDTHHMMSSZ` as a time.
fn parse_amz_date(s: &str) -> Result<SystemTime, SigError> {
    let bad = || SigError::Malformed(format!("X-Amz-Date '{s}' is not YYYYMMDDTHHMMSSZ."));
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return Err(bad());
    }
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &s[0..4],
        &s[4..6],
        &s[6..8],
        &s[9..11],
        &s[11..13],
        &s[13..15]
    );
    humantime::parse_rfc3339(&rfc3339).map_err(|_| bad())
}

/// Checks the request's time against `now` (±[`MAX_SKEW`]).
pub fn check_time(signed: &Signed, now: SystemTime) -> Result<(), SigError> {
    let at = parse_amz_date(&signed.amz_date)?;
    let skew = match now.duration_since(at) {
        Ok(d) => d,
        Err(e) => e.duration(),
    };
    if skew > MAX_SKEW {
        return Err(SigError::Expired(signed.amz_date.clone()));
    }
    Ok(())
}

/// The parts of a request the signature covers.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `GET`, `POST`, …
    pub method: &'a str,
    /// The path as sent (percent-encoded).
    pub path: &'a str,
    /// The query as sent, without `?`.
    pub query: &'a str,
    /// Every header.
    pub headers: &'a HeaderMap,
    /// The body.
    pub body: &'a [u8],
    /// Whether this operation may leave its body unsigned ([`UNSIGNED_PAYLOAD`]).
    pub unsigned_body_allowed: bool,
}

/// Checks `signed`'s signature over `req` with `secret`.
pub fn verify(req: &Request<'_>, signed: &Signed, secret: &str) -> Result<(), SigError> {
    let expected = signature(req, signed, secret)?;
    if bool::from(expected.as_bytes().ct_eq(signed.signature.as_bytes())) {
        Ok(())
    } else {
        Err(SigError::Mismatch)
    }
}

/// The hex signature `secret` makes over `req` for `signed`'s scope.
pub fn signature(req: &Request<'_>, signed: &Signed, secret: &str) -> Result<String, SigError> {
    let canonical = canonical_request(req, signed)?;
    let scope = format!(
        "{}/{}/{}/aws4_request",
        signed.date, signed.region, signed.service
    );
    let to_sign = format!(
        "{ALGORITHM}\n{}\n{scope}\n{}",
        signed.amz_date,
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), signed.date.as_bytes());
    for part in [
        signed.region.as_str(),
        signed.service.as_str(),
        "aws4_request",
    ] {
        key = hmac(&key, part.as_bytes());
    }
    Ok(hex(&hmac(&key, to_sign.as_bytes())))
}

fn canonical_request(req: &Request<'_>, signed: &Signed) -> Result<String, SigError> {
    let payload = payload_hash(req, signed)?;
    let mut headers = String::new();
    for name in &signed.signed_headers {
        let values: Vec<String> = req
            .headers
            .get_all(name.as_str())
            .iter()
            .map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        if values.is_empty() {
            return Err(SigError::Malformed(format!(
                "The signed header '{name}' is not in the request."
            )));
        }
        headers.push_str(name);
        headers.push(':');
        headers.push_str(&values.join(","));
        headers.push('\n');
        if headers.len() > MAX_SIGNED_BYTES {
            return Err(SigError::Malformed(format!(
                "The signed headers exceed {MAX_SIGNED_BYTES} bytes."
            )));
        }
    }
    if !signed.signed_headers.iter().any(|h| h == "host") {
        return Err(SigError::Malformed(
            "The Host header must be signed.".into(),
        ));
    }
    Ok(format!(
        "{}\n{}\n{}\n{headers}\n{}\n{payload}",
        req.method,
        canonical_path(req.path),
        canonical_query(req.query),
        signed.signed_headers.join(";"),
    ))
}

/// The payload hash the signature covers: the body's SHA-256. A request may send it as
/// `x-amz-content-sha256`, which must then be signed and be the body's hash; or, where the
/// operation allows it, [`UNSIGNED_PAYLOAD`], with `x-amz-checksum` signed in the body's place.
fn payload_hash(req: &Request<'_>, signed: &Signed) -> Result<String, SigError> {
    let body = hex(&Sha256::digest(req.body));
    let Some(sent) = req.headers.get("x-amz-content-sha256") else {
        return Ok(body);
    };
    let signs = |h: &str| signed.signed_headers.iter().any(|n| n == h);
    if !signs("x-amz-content-sha256") {
        return Err(SigError::Malformed(
            "The header x-amz-content-sha256 must be signed.".into(),
        ));
    }
    let sent = sent.to_str().unwrap_or("");
    if sent == UNSIGNED_PAYLOAD {
        if req.unsigned_body_allowed && signs("x-amz-checksum") {
            return Ok(UNSIGNED_PAYLOAD.into());
        }
        return Err(SigError::Malformed(
            "This operation's body must be signed (UNSIGNED-PAYLOAD is not accepted here).".into(),
        ));
    }
    if !bool::from(sent.as_bytes().ct_eq(body.as_bytes())) {
        return Err(SigError::PayloadMismatch);
    }
    Ok(body)
}

/// The path normalized (`.`, `..` and empty segments dropped) with each segment encoded again.
fn canonical_path(path: &str) -> String {
    let mut segments: Vec<&str> = vec![];
    for s in path.split('/') {
        match s {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::from("/");
    out.push_str(
        &segments
            .iter()
            .map(|s| utf8_percent_encode(s, UNRESERVED).to_string())
            .collect::<Vec<_>>()
            .join("/"),
    );
    if path.ends_with('/') && !segments.is_empty() {
        out.push('/');
    }
    out
}

/// The query's pairs decoded, encoded strictly and sorted by name, then value.
fn canonical_query(query: &str) -> String {
    let encode = |s: &str| {
        let decoded = percent_decode_str(s).decode_utf8_lossy();
        utf8_percent_encode(&decoded, UNRESERVED).to_string()
    };
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (encode(k), encode(v)),
            None => (encode(p), String::new()),
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    ring::hmac::sign(&k, data).as_ref().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key of AWS's published SigV4 test suite.
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn headers(pairs: &[(&str, &str)], signature: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let names: Vec<String> = {
            let mut n: Vec<String> = pairs.iter().map(|(k, _)| k.to_lowercase()).collect();
            n.sort();
            n.dedup();
            n
        };
        h.insert(
            http::header::AUTHORIZATION,
            format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders={}, Signature={signature}",
                names.join(";")
            )
            .parse()
            .unwrap(),
        );
        h
    }

    /// Checks one vector of the suite: the server must compute the published signature.
    fn vector(
        method: &str,
        path: &str,
        query: &str,
        extra: &[(&str, &str)],
        body: &str,
        sig: &str,
    ) {
        let mut pairs = vec![
            ("Host", "example.amazonaws.com"),
            ("X-Amz-Date", "20150830T123600Z"),
        ];
        pairs.extend_from_slice(extra);
        let h = headers(&pairs, sig);
        let signed = parse(&h).unwrap();
        assert_eq!(signed.service, "service");
        assert_eq!(signed.region, "us-east-1");
        let req = Request {
            method,
            path,
            query,
            headers: &h,
            body: body.as_bytes(),
            unsigned_body_allowed: false,
        };
        verify(&req, &signed, SECRET).unwrap();
        assert_eq!(
            verify(&req, &signed, "another secret"),
            Err(SigError::Mismatch)
        );
    }

    #[test]
    fn the_published_test_suite_vectors_verify() {
        // get-vanilla
        vector(
            "GET",
            "/",
            "",
            &[],
            "",
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        );
        // get-vanilla-query-order-key-case
        vector(
            "GET",
            "/",
            "Param2=value2&Param1=value1",
            &[],
            "",
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        );
        // post-x-www-form-urlencoded
        vector(
            "POST",
            "/",
            "",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            "Param1=value1",
            "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
        );
    }

    #[test]
    fn a_changed_body_or_query_breaks_the_signature() {
        let h = headers(
            &[
                ("Host", "example.amazonaws.com"),
                ("X-Amz-Date", "20150830T123600Z"),
            ],
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        );
        let signed = parse(&h).unwrap();
        let req = |query, body: &'static [u8]| Request {
            method: "GET",
            path: "/",
            query,
            headers: &h,
            body,
            unsigned_body_allowed: false,
        };
        assert!(verify(&req("", b""), &signed, SECRET).is_ok());
        assert_eq!(
            verify(&req("a=b", b""), &signed, SECRET),
            Err(SigError::Mismatch)
        );
        assert_eq!(
            verify(&req("", b"x"), &signed, SECRET),
            Err(SigError::Mismatch)
        );
    }

    #[test]
    fn time_and_header_rules() {
        let h = headers(&[("Host", "h"), ("X-Amz-Date", "20150830T123600Z")], "00");
        let signed = parse(&h).unwrap();
        let at = humantime::parse_rfc3339("2015-08-30T12:36:00Z").unwrap();
        assert!(check_time(&signed, at + Duration::from_secs(14 * 60)).is_ok());
        assert!(check_time(&signed, at - Duration::from_secs(14 * 60)).is_ok());
        assert!(matches!(
            check_time(&signed, at + Duration::from_secs(16 * 60)),
            Err(SigError::Expired(_))
        ));
        assert!(matches!(
            check_time(&signed, at - Duration::from_secs(16 * 60)),
            Err(SigError::Expired(_))
        ));
        assert_eq!(parse(&HeaderMap::new()), Err(SigError::Missing));
        for bad in [
            "AWS4-HMAC-SHA1 Credential=a/20150830/r/s/aws4_request, SignedHeaders=host, Signature=0",
            "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=0",
            "AWS4-HMAC-SHA256 Credential=a/2015/r/s/aws4_request, SignedHeaders=host, Signature=0",
            "AWS4-HMAC-SHA256 Credential=a/20150830/r/s/aws4, SignedHeaders=host, Signature=0",
            "AWS4-HMAC-SHA256 Credential=a/20150831/r/s/aws4_request, SignedHeaders=host, Signature=0",
        ] {
            let mut h = h.clone();
            h.insert(http::header::AUTHORIZATION, bad.parse().unwrap());
            assert!(matches!(parse(&h), Err(SigError::Malformed(_))), "{bad}");
        }
    }

    #[test]
    fn the_body_hash_header_cannot_stand_in_for_another_body() {
        use std::fmt::Write as _;
        let body = b"Action=DescribeVolumes";
        let hash = hex(&Sha256::digest(body));
        let signed_with = |names: &str, sent: &str| {
            let mut h = HeaderMap::new();
            h.insert("host", "h".parse().unwrap());
            h.insert("x-amz-date", "20150830T123600Z".parse().unwrap());
            h.insert("x-amz-content-sha256", sent.parse().unwrap());
            let mut a = String::new();
            write!(a, "AWS4-HMAC-SHA256 Credential=K/20150830/us-east-1/ec2/aws4_request, SignedHeaders={names}, Signature=00").unwrap();
            h.insert(http::header::AUTHORIZATION, a.parse().unwrap());
            h
        };
        let check = |h: &HeaderMap, body: &[u8], unsigned_ok: bool| {
            let signed = parse(h).unwrap();
            let req = Request {
                method: "POST",
                path: "/",
                query: "",
                headers: h,
                body,
                unsigned_body_allowed: unsigned_ok,
            };
            let sig = signature(&req, &signed, SECRET)?;
            let mut signed = signed;
            signed.signature = sig;
            verify(&req, &signed, SECRET)
        };
        // The hash of another body, unsigned or signed: refused.
        let h = signed_with("host;x-amz-date", &hash);
        assert!(matches!(
            check(&h, b"Action=TerminateInstances", false),
            Err(SigError::Malformed(_))
        ));
        let h = signed_with("host;x-amz-content-sha256;x-amz-date", &hash);
        assert_eq!(
            check(&h, b"Action=TerminateInstances", false),
            Err(SigError::PayloadMismatch)
        );
        assert_eq!(check(&h, body, false), Ok(()));
        // UNSIGNED-PAYLOAD only where allowed, and with the checksum signed.
        let h = signed_with("host;x-amz-content-sha256;x-amz-date", UNSIGNED_PAYLOAD);
        assert!(matches!(
            check(&h, body, false),
            Err(SigError::Malformed(_))
        ));
        assert!(matches!(check(&h, body, true), Err(SigError::Malformed(_))));
        let mut h = signed_with(
            "host;x-amz-checksum;x-amz-content-sha256;x-amz-date",
            UNSIGNED_PAYLOAD,
        );
        h.insert("x-amz-checksum", "c".parse().unwrap());
        assert_eq!(check(&h, body, true), Ok(()));
    }

    #[test]
    fn signed_headers_must_be_few_distinct_and_ordered() {
        let with = |names: &str| {
            let mut h = HeaderMap::new();
            h.insert("host", "h".parse().unwrap());
            h.insert("x-amz-date", "20150830T123600Z".parse().unwrap());
            h.insert(
                http::header::AUTHORIZATION,
                format!("AWS4-HMAC-SHA256 Credential=K/20150830/r/s/aws4_request, SignedHeaders={names}, Signature=00")
                    .parse()
                    .unwrap(),
            );
            parse(&h)
        };
        assert!(with("host;x-amz-date").is_ok());
        for bad in [
            "host;host",
            "x-amz-date;host",
            "host;;x-amz-date",
            "Host;x-amz-date",
        ] {
            assert!(matches!(with(bad), Err(SigError::Malformed(_))), "{bad}");
        }
        let many: Vec<String> = (0..100).map(|i| format!("h{i:03}")).collect();
        assert!(matches!(with(&many.join(";")), Err(SigError::Malformed(_))));
    }

    #[test]
    fn paths_and_queries_are_canonical() {
        assert_eq!(canonical_path(""), "/");
        assert_eq!(canonical_path("/"), "/");
        assert_eq!(canonical_path("/a/./b/../c/"), "/a/c/");
        assert_eq!(canonical_path("/a%20b"), "/a%2520b");
        assert_eq!(canonical_query("b=2&a=1&a=0"), "a=0&a=1&b=2");
        assert_eq!(canonical_query("k=a%20b&x"), "k=a%20b&x=");
    }
}
