//! The `.proto` files compile with the stock `protoc` (as bundled by Python's `grpcio-tools`),
//! not only with the pure-Rust compiler the build uses: a gRPC client in any language generates
//! its stubs from `proto/` with its usual tools. The generated Python stubs are imported too.
//!
//! Skips (saying so) without `python3 -m grpc_tools`; with `EBS_REQUIRE_INTEROP=1` that fails.

use std::path::{Path, PathBuf};
use std::process::Command;

fn proto_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read proto dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            proto_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
}

#[test]
fn protos_compile_with_stock_protoc_and_the_python_stubs_import() {
    let has_tools = Command::new("python3")
        .args(["-c", "import grpc_tools.protoc"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_tools {
        assert!(
            std::env::var_os("EBS_REQUIRE_INTEROP").is_none_or(|v| v != "1"),
            "python3 -m grpc_tools is missing (pip install grpcio-tools) and EBS_REQUIRE_INTEROP=1"
        );
        eprintln!("SKIPPED: python3 -m grpc_tools is missing (pip install grpcio-tools)");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
    let mut files = vec![];
    proto_files(&root, &mut files);
    assert!(
        !files.is_empty(),
        "no .proto files under {}",
        root.display()
    );
    let out = tempfile::tempdir().expect("temp dir");
    let out = out.path();
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "grpc_tools.protoc"])
        .arg(format!("-I{}", root.display()))
        .arg(format!("--python_out={}", out.display()))
        .arg(format!("--grpc_python_out={}", out.display()))
        .args(&files);
    let r = cmd.output().expect("run grpc_tools.protoc");
    assert!(
        r.status.success(),
        "protoc rejects the protos:\n{}",
        String::from_utf8_lossy(&r.stderr)
    );
    for f in &files {
        let module = f
            .strip_prefix(&root)
            .unwrap()
            .with_extension("")
            .to_string_lossy()
            .replace('/', ".");
        let r = Command::new("python3")
            .current_dir(out)
            .args(["-c", &format!("import {module}_pb2, {module}_pb2_grpc")])
            .output()
            .expect("run python3");
        assert!(
            r.status.success(),
            "the generated stubs of {module} do not import:\n{}",
            String::from_utf8_lossy(&r.stderr)
        );
    }
}
