//! The `ebsctl` binary as a user runs it: help, usage errors and an unreachable endpoint, with
//! the AWS CLI's exit codes. (Cargo builds the binary for this test, which also puts it where
//! the volume-server end-to-end tests look for it.)

use std::process::Command;

fn ebsctl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ebsctl"))
        .args(args)
        .output()
        .expect("run ebsctl")
}

#[test]
fn help_lists_the_commands() {
    let out = ebsctl(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in [
        "create-volume",
        "attach-volume",
        "modify-volume",
        "resv-acquire",
        "create-snapshot",
        "describe-snapshots",
        "delete-snapshot",
        "copy-snapshot",
        "enable-fast-snapshot-restores",
        "disable-fast-snapshot-restores",
        "describe-fast-snapshot-restores",
        "register-image",
        "describe-images",
        "deregister-image",
        "create-image",
        "run-instances",
        "describe-instances",
        "start-instances",
        "stop-instances",
        "reboot-instances",
        "terminate-instances",
        "get-console-output",
        "wait",
    ] {
        assert!(text.contains(cmd), "{cmd} missing from --help:\n{text}");
    }
}

#[test]
fn wait_help_lists_the_waiters() {
    let out = ebsctl(&["wait", "--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for waiter in [
        "volume-available",
        "snapshot-completed",
        "instance-running",
        "instance-stopped",
        "instance-terminated",
        "instance-exists",
        "image-available",
    ] {
        assert!(
            text.contains(waiter),
            "{waiter} missing from wait --help:\n{text}"
        );
    }
}

#[test]
fn usage_errors_exit_252() {
    let out = ebsctl(&["create-volume", "--size", "not-a-number"]);
    assert_eq!(out.status.code(), Some(252), "{out:?}");
}

#[test]
fn unreachable_endpoint_exits_255() {
    // Port 1 on loopback: nothing listens there.
    let out = ebsctl(&["--endpoint", "http://127.0.0.1:1", "describe-volumes"]);
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Could not connect to the endpoint URL"));
}

#[test]
fn a_mistyped_command_gets_the_closest_one() {
    let out = ebsctl(&["crate-volume"]);
    assert_eq!(out.status.code(), Some(252), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("did you mean 'create-volume'?"), "{err}");
    assert!(
        !err.contains("modify-volume"),
        "one suggestion, not a list: {err}"
    );
    let out = ebsctl(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(252), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("did you mean"));
}
