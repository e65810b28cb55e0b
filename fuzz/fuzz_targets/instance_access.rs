//! What instances and their users send: ImportKeyPair's public key material (`keys::import`)
//! when the first byte is even; otherwise a metadata service request, `METHOD PATH` on the first
//! line and `name: value` header lines after it, answered for a fixed instance (`answer`). Neither
//! may panic; an imported key's fingerprint is never empty, and a token answer carries its TTL.

#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use volume_server::api::imds::MetadataService;
use volume_server::catalog::MetadataOptions;
use volume_server::control::metadata::InstanceMetadata;

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
        block_devices: vec![("ami".into(), "/dev/xvda".into())],
        public_key: Some(("demo".into(), "ssh-ed25519 AAAA".into())),
        user_data: Some(b"#!/bin/sh\n".to_vec()),
        tags: BTreeMap::from([("Name".into(), "web".into())]),
        options: MetadataOptions {
            tags_enabled: true,
            ..MetadataOptions::default()
        },
    }
}

/// The service and the runtime it was made in (kept alive for the whole run).
fn service() -> &'static std::sync::Arc<MetadataService> {
    static SERVICE: OnceLock<(tokio::runtime::Runtime, std::sync::Arc<MetadataService>)> =
        OnceLock::new();
    &SERVICE
        .get_or_init(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let svc = MetadataService::new(rt.handle().clone());
            (rt, svc)
        })
        .1
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    if first % 2 == 0 {
        if let Ok(k) = volume_server::keys::import(rest) {
            assert!(!k.fingerprint.is_empty());
        }
        return;
    }
    let text = String::from_utf8_lossy(rest);
    let mut lines = text.lines();
    let Some((method, path)) = lines.next().and_then(|l| l.split_once(' ')) else {
        return;
    };
    let (Ok(method), true) = (
        http::Method::from_bytes(method.as_bytes()),
        path.starts_with('/'),
    ) else {
        return;
    };
    let mut headers = http::HeaderMap::new();
    for line in lines {
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
    let m = instance();
    let svc = service();
    let r = svc.answer(Some(&m), &method, path, &headers);
    if method == http::Method::PUT && path == "/latest/api/token" && r.status() == 200 {
        assert!(
            r.headers()
                .contains_key("x-aws-ec2-metadata-token-ttl-seconds"),
            "a token answer carries its TTL"
        );
    }
});
