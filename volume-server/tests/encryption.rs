//! EBS encryption end to end, against the real clients: the aws CLI and boto3 drive KMS and EC2,
//! NBD (nbdcopy, qemu-io, fio) carries the data. Known data written to an encrypted volume is
//! nowhere on disk in the clear (not in the volume file, the snapshot store, or anything else
//! under the data directory), and reads back equal through every path: the volume, a snapshot
//! restored in another zone, a copy re-encrypted under another key. A disabled key stops the
//! volume from attaching and its snapshot from restoring until it is enabled again.

mod common;

use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;

use common::*;
use proto::ebs::v1 as pb;

fn field(v: &serde_json::Value, path: &[&str]) -> String {
    let mut cur = v;
    for p in path {
        cur = match p.parse::<usize>() {
            Ok(i) => &cur[i],
            Err(_) => &cur[*p],
        };
    }
    cur.as_str()
        .unwrap_or_else(|| panic!("{path:?} in {v}"))
        .to_string()
}

/// Every 16-byte-aligned run of `model`: a leak of 31 or more contiguous bytes of it anywhere
/// in a file contains one of them.
fn runs_of(model: &[u8]) -> HashSet<u128> {
    model
        .chunks_exact(16)
        .map(|c| u128::from_le_bytes(c.try_into().unwrap()))
        .filter(|&r| r != 0)
        .collect()
}

/// The data regions of `path` (SEEK_DATA/SEEK_HOLE: a sparse volume file is read only where it
/// holds something).
fn data_regions(path: &Path) -> Vec<(u64, u64)> {
    let f = std::fs::File::open(path).unwrap();
    let len = f.metadata().unwrap().len();
    let mut out = Vec::new();
    let mut pos = 0i64;
    while (pos as u64) < len {
        // SAFETY: lseek on a descriptor `f` keeps open; results are checked.
        let data = unsafe { libc::lseek(f.as_raw_fd(), pos, libc::SEEK_DATA) };
        if data < 0 {
            break;
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(f.as_raw_fd(), data, libc::SEEK_HOLE) };
        let end = if hole < 0 { len as i64 } else { hole };
        out.push((data as u64, (end - data) as u64));
        pos = end;
    }
    out
}

/// Files under `dir` holding any run of `runs` at any byte offset: (file, offset).
fn leaks(dir: &Path, runs: &HashSet<u128>) -> Vec<(String, u64)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(p);
                continue;
            }
            if !ft.is_file() {
                continue;
            }
            let mut f = std::fs::File::open(&p).unwrap();
            for (at, len) in data_regions(&p) {
                let mut buf = vec![0u8; len as usize];
                f.seek(SeekFrom::Start(at)).unwrap();
                f.read_exact(&mut buf).unwrap();
                if let Some(i) = buf
                    .windows(16)
                    .position(|w| runs.contains(&u128::from_le_bytes(w.try_into().unwrap())))
                {
                    found.push((p.display().to_string(), at + i as u64));
                }
            }
        }
    }
    found
}

fn wait_available(server: &Server, vid: &str) {
    aws(
        server,
        &["ec2", "wait", "volume-available", "--volume-ids", vid],
    )
    .assert_success();
}

fn attach(server: &Server, vid: &str, instance: &str, device: &str) -> Output {
    aws(
        server,
        &[
            "ec2",
            "attach-volume",
            "--volume-id",
            vid,
            "--instance-id",
            instance,
            "--device",
            device,
        ],
    )
}

fn snapshot(server: &Server, vid: &str) -> serde_json::Value {
    let s = json(&aws(
        server,
        &["ec2", "create-snapshot", "--volume-id", vid],
    ));
    let id = field(&s, &["SnapshotId"]);
    aws(
        server,
        &["ec2", "wait", "snapshot-completed", "--snapshot-ids", &id],
    )
    .assert_success();
    json(&aws(
        server,
        &["ec2", "describe-snapshots", "--snapshot-ids", &id],
    ))["Snapshots"][0]
        .clone()
}

/// A host in another availability zone (restores land there).
fn host_in(server: &Server, name: &str, zone: &str) -> String {
    let mut client = server.client();
    let host = server.ok(
        "RegisterHost",
        server.block_on(client.register_host(pb::RegisterHostRequest {
            name: name.to_owned(),
            availability_zone: zone.to_owned(),
            ..Default::default()
        })),
    );
    host.instance_id
}

#[test]
fn encrypted_volumes_snapshots_and_copies_keep_only_ciphertext_and_follow_their_key() {
    if !require_aws_clients() || !require_tools(&["nbdcopy", "qemu-io"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start_with_args(&data, &["--snapshot-min-interval", "0s"]);
    let host_a = server.register_host("enc-a");
    let host_b = host_in(&server, "enc-b", "us-east-1b");

    let key_a = json(&aws(&server, &["kms", "create-key", "--description", "A"]));
    let arn_a = field(&key_a, &["KeyMetadata", "Arn"]);
    let id_a = field(&key_a, &["KeyMetadata", "KeyId"]);
    aws(
        &server,
        &[
            "kms",
            "create-alias",
            "--alias-name",
            "alias/volumes",
            "--target-key-id",
            &id_a,
        ],
    )
    .assert_success();
    let key_b = json(&aws(&server, &["kms", "create-key", "--description", "B"]));
    let arn_b = field(&key_b, &["KeyMetadata", "Arn"]);

    // An encrypted volume under alias/volumes, written through NBD.
    let v = json(&aws(
        &server,
        &[
            "ec2",
            "create-volume",
            "--availability-zone",
            AZ,
            "--size",
            "1",
            "--encrypted",
            "--kms-key-id",
            "alias/volumes",
        ],
    ));
    assert_eq!(v["Encrypted"], true, "{v}");
    assert_eq!(field(&v, &["KmsKeyId"]), arn_a, "{v}");
    let vid = field(&v, &["VolumeId"]);
    wait_available(&server, &vid);
    attach(&server, &vid, &host_a.instance_id, "/dev/sdf").assert_success();
    let uri = server.nbd_uri_of(&vid);
    let model_path = dir.path().join("model.bin");
    write_random_file(&model_path, 4 << 20);
    run(Command::new("nbdcopy").arg(&model_path).arg(&uri)).assert_success();
    // A compressible pattern too (zstd runs before sealing), and a trimmed range reads as zeros.
    assert_qemu_io_ok(&qemu_io(
        &uri,
        &[
            "write -P 0x5c 8M 1M",
            "write -P 0x77 12M 1M",
            "discard 12M 512k",
            "flush",
        ],
    ));
    let model = std::fs::read(&model_path).unwrap();
    let mut runs = runs_of(&model);
    // The pattern's runs, except all-0x5c runs, which are a run of every pattern write ever:
    // they are checked by their own run below.
    runs.insert(u128::from_le_bytes([0x5c; 16]));

    let first = snapshot(&server, &vid);
    assert_eq!(first["Encrypted"], true, "{first}");
    assert_eq!(field(&first, &["KmsKeyId"]), arn_a, "{first}");
    let snap = field(&first, &["SnapshotId"]);

    // Nothing under the data directory holds the plaintext: volume file, snapshot store,
    // catalog, sidecars.
    let found = leaks(&data, &runs);
    assert!(found.is_empty(), "plaintext found on disk: {found:?}");

    // The EBS direct APIs give the owner the plaintext of an encrypted snapshot's block, with
    // the SHA-256 of that plaintext as its checksum.
    let blocks = json(&aws(
        &server,
        &["ebs", "list-snapshot-blocks", "--snapshot-id", &snap],
    ));
    assert_eq!(blocks["Blocks"][0]["BlockIndex"], 0, "{blocks}");
    let token = field(&blocks, &["Blocks", "0", "BlockToken"]);
    let got = dir.path().join("block0");
    let meta = json(&aws(
        &server,
        &[
            "ebs",
            "get-snapshot-block",
            "--snapshot-id",
            &snap,
            "--block-index",
            "0",
            "--block-token",
            &token,
            got.to_str().unwrap(),
        ],
    ));
    assert_eq!(std::fs::read(&got).unwrap(), model[..512 << 10]);
    let digest = {
        use base64::Engine as _;
        use sha2::Digest as _;
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&model[..512 << 10]))
    };
    assert_eq!(field(&meta, &["Checksum"]), digest, "{meta}");

    // Read back through NBD.
    let back = dir.path().join("back.raw");
    run(Command::new("nbdcopy").arg(&uri).arg(&back)).assert_success();
    assert_same_range(&model_path, &back, 0, 4 << 20);
    assert_zero_range(&back, 12 << 20, 512 << 10);

    // Restored in another zone, without asking: encrypted under the snapshot's key; equal.
    let r = json(&aws(
        &server,
        &[
            "ec2",
            "create-volume",
            "--availability-zone",
            "us-east-1b",
            "--snapshot-id",
            &snap,
        ],
    ));
    assert_eq!(r["Encrypted"], true, "{r}");
    assert_eq!(field(&r, &["KmsKeyId"]), arn_a, "{r}");
    let rid = field(&r, &["VolumeId"]);
    wait_available(&server, &rid);
    attach(&server, &rid, &host_b, "/dev/sdf").assert_success();
    let restored = dir.path().join("restored.raw");
    run(Command::new("nbdcopy")
        .arg(server.nbd_uri_of(&rid))
        .arg(&restored))
    .assert_success();
    assert_same_range(&back, &restored, 0, 16 << 20);

    // Copied under key B: every block re-sealed; restores equal.
    let c = json(&aws(
        &server,
        &[
            "ec2",
            "copy-snapshot",
            "--source-region",
            "us-east-1",
            "--source-snapshot-id",
            &snap,
            "--encrypted",
            "--kms-key-id",
            &arn_b,
        ],
    ));
    let cid = field(&c, &["SnapshotId"]);
    aws(
        &server,
        &["ec2", "wait", "snapshot-completed", "--snapshot-ids", &cid],
    )
    .assert_success();
    let copied = json(&aws(
        &server,
        &["ec2", "describe-snapshots", "--snapshot-ids", &cid],
    ))["Snapshots"][0]
        .clone();
    assert_eq!(copied["Encrypted"], true, "{copied}");
    assert_eq!(field(&copied, &["KmsKeyId"]), arn_b, "{copied}");
    let cv = json(&aws(
        &server,
        &[
            "ec2",
            "create-volume",
            "--availability-zone",
            AZ,
            "--snapshot-id",
            &cid,
        ],
    ));
    assert_eq!(field(&cv, &["KmsKeyId"]), arn_b, "{cv}");
    let cvid = field(&cv, &["VolumeId"]);
    wait_available(&server, &cvid);
    attach(&server, &cvid, &host_a.instance_id, "/dev/sdg").assert_success();
    let from_copy = dir.path().join("copy.raw");
    run(Command::new("nbdcopy")
        .arg(server.nbd_uri_of(&cvid))
        .arg(&from_copy))
    .assert_success();
    assert_same_range(&back, &from_copy, 0, 16 << 20);
    let found = leaks(&data, &runs);
    assert!(found.is_empty(), "plaintext found on disk: {found:?}");

    // fio verify on the encrypted volume.
    if require_tool("fio") {
        run_tool(
            "fio",
            &[
                "--name=enc",
                "--ioengine=nbd",
                &format!("--uri={uri}"),
                "--rw=randwrite",
                "--bs=4k",
                "--iodepth=16",
                "--offset=64M",
                "--size=16M",
                "--verify=crc32c",
                "--verify_fatal=1",
                "--verify_state_save=0",
            ],
        )
        .assert_success();
    }

    // A disabled key: no attach, no restore, no snapshot; attached volumes keep their I/O (as
    // on EC2). Enabled again: all of it works.
    aws(&server, &["ec2", "detach-volume", "--volume-id", &rid]).assert_success();
    wait_available(&server, &rid);
    aws(&server, &["kms", "disable-key", "--key-id", &id_a]).assert_success();
    let described = json(&aws(&server, &["kms", "describe-key", "--key-id", &arn_a]));
    assert_eq!(field(&described, &["KeyMetadata", "KeyState"]), "Disabled");
    assert_code(
        &attach(&server, &rid, &host_b, "/dev/sdh"),
        "InvalidKMSKey.InvalidState",
    );
    assert_code(
        &aws(
            &server,
            &[
                "ec2",
                "create-volume",
                "--availability-zone",
                AZ,
                "--snapshot-id",
                &snap,
            ],
        ),
        "InvalidKMSKey.InvalidState",
    );
    assert_code(
        &aws(&server, &["ec2", "create-snapshot", "--volume-id", &vid]),
        "InvalidKMSKey.InvalidState",
    );
    assert_qemu_io_ok(&qemu_io(&uri, &["read -P 0x5c 8M 4k"]));
    aws(&server, &["kms", "enable-key", "--key-id", "alias/volumes"]).assert_success();
    attach(&server, &rid, &host_b, "/dev/sdh").assert_success();

    // Encryption by default: the AWS managed key, then the account's chosen key.
    let managed = json(&aws(&server, &["ec2", "get-ebs-default-kms-key-id"]));
    let managed = field(&managed, &["KmsKeyId"]);
    let alias = json(&aws(
        &server,
        &["kms", "describe-key", "--key-id", "alias/aws/ebs"],
    ));
    assert_eq!(field(&alias, &["KeyMetadata", "Arn"]), managed);
    assert_eq!(field(&alias, &["KeyMetadata", "KeyManager"]), "AWS");
    let by_default = json(&aws(&server, &["ec2", "enable-ebs-encryption-by-default"]));
    assert_eq!(by_default["EbsEncryptionByDefault"], true);
    let plain_ask = [
        "ec2",
        "create-volume",
        "--availability-zone",
        AZ,
        "--size",
        "1",
    ];
    let d = json(&aws(&server, &plain_ask));
    assert_eq!(
        (d["Encrypted"].clone(), field(&d, &["KmsKeyId"])),
        (true.into(), managed.clone()),
        "{d}"
    );
    aws(
        &server,
        &[
            "ec2",
            "modify-ebs-default-kms-key-id",
            "--kms-key-id",
            "alias/volumes",
        ],
    )
    .assert_success();
    let d = json(&aws(&server, &plain_ask));
    assert_eq!(field(&d, &["KmsKeyId"]), arn_a, "{d}");
    aws(&server, &["ec2", "disable-ebs-encryption-by-default"]).assert_success();
    let d = json(&aws(&server, &plain_ask));
    assert_eq!(d["Encrypted"], false, "{d}");
    assert!(d.get("KmsKeyId").is_none(), "{d}");

    // The search can fail: the same data on a plain volume is found in its file.
    let pid = field(&d, &["VolumeId"]);
    wait_available(&server, &pid);
    attach(&server, &pid, &host_a.instance_id, "/dev/sdi").assert_success();
    run(Command::new("nbdcopy")
        .arg(&model_path)
        .arg(server.nbd_uri_of(&pid)))
    .assert_success();
    let found = leaks(&data, &runs);
    assert!(
        found.iter().any(|(f, _)| f.contains(&pid)),
        "the plain volume's data was not found: {found:?}"
    );

    // A restart while the key is disabled: the server starts, and the attachment is not served
    // until the key is enabled again; then (keys unwrapped anew from the catalog under the root
    // key file) the volume reads the same.
    aws(&server, &["kms", "disable-key", "--key-id", &id_a]).assert_success();
    server.stop();
    let server = Server::start_with_args(&data, &["--snapshot-min-interval", "0s"]);
    let uri = server.nbd_uri_of(&vid);
    let again = dir.path().join("again.raw");
    run(Command::new("nbdcopy").arg(&uri).arg(&again)).assert_failure();
    aws(&server, &["kms", "enable-key", "--key-id", &id_a]).assert_success();
    run(Command::new("nbdcopy").arg(&uri).arg(&again)).assert_success();
    assert_same_range(&back, &again, 0, 16 << 20);
    server.stop();

    // Another root key file (here: a path that named none, so a new key was made) does not
    // unwrap the catalog's keys: the server refuses to start rather than serve nothing
    // encrypted and wrap new keys under a key nobody kept.
    let wrong = dir.path().join("elsewhere.key");
    let out = run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_volume-server")).args([
            "--data-dir",
            data.to_str().unwrap(),
            "--grpc-addr",
            "127.0.0.1:0",
            "--nbd-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
            "--aws-addr",
            "127.0.0.1:0",
            "--kms-root-key-file",
            wrong.to_str().unwrap(),
        ]),
        std::time::Duration::from_secs(60),
    );
    out.assert_failure();
    assert!(
        out.combined()
            .contains("does not unwrap the catalog's KMS keys"),
        "{}",
        out.describe()
    );
}

#[test]
fn kms_and_the_encryption_defaults_through_boto3_for_two_accounts() {
    if !require_aws_clients() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/aws/kms.py");
    let out = run(Command::new("python3").arg(script).arg(server.aws_url()));
    out.assert_success();
    assert!(out.stdout.contains("kms ok"), "{}", out.describe());
    server.stop();
}
