//! The AWS endpoint's parsers on arbitrary requests: the bytes are headers (`name: value`
//! lines), a blank line, the URL query line, then the body. `sigv4::parse` on the headers,
//! `Params::parse` on the query and body (and its list and structure views), `query_pairs`, and
//! the credentials-file parser on the body must not panic; and a request signed with the
//! server's own signature must verify (what is signed is what is checked).

#![no_main]

use libfuzzer_sys::fuzz_target;
use volume_server::api::aws::credentials::Keys;
use volume_server::api::aws::query::{Params, query_pairs};
use volume_server::api::aws::sigv4;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (head, rest) = text.split_once("\n\n").unwrap_or((&text, ""));
    let (query, body) = rest.split_once('\n').unwrap_or((rest, ""));
    let mut headers = http::HeaderMap::new();
    for line in head.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.trim().as_bytes()),
            http::HeaderValue::from_str(v.trim()),
        ) {
            headers.append(k, v);
        }
    }
    let _ = query_pairs(query);
    if let Ok(p) = Params::parse(query, body.as_bytes()) {
        for prefix in [
            "Filter",
            "VolumeId",
            "TagSpecification",
            "BlockDeviceMapping",
        ] {
            let _ = p.list(prefix);
            for s in p.structs(prefix) {
                let _ = s.list("Value");
                let _ = s.structs_one("Ebs");
                let _ = s.int("Size");
                let _ = s.bool("DryRun");
            }
        }
    }
    let _ = Keys::parse(body);
    let Ok(mut signed) = sigv4::parse(&headers) else {
        return;
    };
    let _ = sigv4::check_time(&signed, std::time::SystemTime::now());
    for unsigned_body_allowed in [false, true] {
        let req = sigv4::Request {
            method: "POST",
            path: "/",
            query,
            headers: &headers,
            body: body.as_bytes(),
            unsigned_body_allowed,
        };
        if let Ok(sig) = sigv4::signature(&req, &signed, "secret") {
            signed.signature = sig;
            assert_eq!(
                sigv4::verify(&req, &signed, "secret"),
                Ok(()),
                "own signature"
            );
            assert_eq!(
                sigv4::verify(&req, &signed, "other"),
                Err(sigv4::SigError::Mismatch),
                "another secret's"
            );
        }
    }
});
