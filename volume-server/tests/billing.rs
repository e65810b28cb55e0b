//! Billing through boto3 (`tests/aws/billing.py`): usage metered as volumes, snapshots and
//! instances change, priced from the built-in price list and read back with Cost Explorer's
//! GetCostAndUsage, on a billing clock 3600 times real time; then the same usage after a
//! restart (it is in the catalog, committed with the changes that made it).

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

#[test]
fn cost_explorer_reports_metered_usage_priced_from_the_list_across_a_restart() {
    if !require_aws_clients() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = [
        "--billing-clock-scale",
        "3600",
        "--snapshot-min-interval",
        "0s",
    ];
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/aws/billing.py");
    let server = Server::start_with_args(&data, &args);
    run(Command::new("python3")
        .arg(&script)
        .arg(server.aws_url())
        .arg("run")
        .env("BILLING_STATE_DIR", dir.path()))
    .assert_success();
    let state = dir.path().join("billing-state.json");
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();

    // The aws CLI: the instance's hours by instance type, as boto3 saw them.
    let by_type = json(&aws(
        &server,
        &[
            "ce",
            "get-cost-and-usage",
            "--time-period",
            "Start=2000-01-01,End=2099-01-01",
            "--granularity",
            "MONTHLY",
            "--metrics",
            "UsageQuantity",
            "--filter",
            r#"{"Dimensions": {"Key": "USAGE_TYPE", "Values": ["BoxUsage:m5.large"]}}"#,
            "--group-by",
            "Type=DIMENSION,Key=INSTANCE_TYPE",
        ],
    ));
    let hours: f64 = by_type["ResultsByTime"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["Groups"].as_array().unwrap().iter())
        .map(|g| {
            assert_eq!(g["Keys"][0], "m5.large", "{g}");
            g["Metrics"]["UsageQuantity"]["Amount"]
                .as_str()
                .unwrap()
                .parse::<f64>()
                .unwrap()
        })
        .sum();
    let want = saved["usage"]["BoxUsage:m5.large"][0].as_f64().unwrap();
    assert!((hours - want).abs() < 1e-9, "{hours} against {want}");

    // ebsctl over gRPC: the same hours; a table and a terminal chart; an SVG chart.
    match ebsctl_path() {
        None => {
            skip("ebsctl is not built next to the test binary (run `cargo test --workspace`)");
        }
        Some(bin) => {
            let ctl = |args: &[&str]| {
                run(Command::new(&bin)
                    .env_remove("EBS_ENDPOINT")
                    .arg("--endpoint")
                    .arg(server.endpoint())
                    .args(args))
            };
            let window = [
                "cost",
                "--start",
                "2000-01-01",
                "--end",
                "2099-01-01",
                "--granularity",
                "MONTHLY",
            ];
            let out = ctl(&[
                &window[..],
                &["--group-by", "USAGE_TYPE", "--metric", "UsageQuantity"],
            ]
            .concat());
            out.assert_success();
            let reply: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
            let hours: f64 = reply["ResultsByTime"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|p| p["Groups"].as_array().unwrap().iter())
                .filter(|g| g["Keys"][0] == "BoxUsage:m5.large")
                .map(|g| {
                    g["Metrics"]["UsageQuantity"]["Amount"]
                        .as_str()
                        .unwrap()
                        .parse::<f64>()
                        .unwrap()
                })
                .sum();
            assert!(
                (hours - want).abs() < 1e-9,
                "ebsctl: {hours} against {want}"
            );
            let svg = dir.path().join("cost.svg");
            let out = ctl(&[&window[..], &["--chart", "--svg", svg.to_str().unwrap()]].concat());
            out.assert_success();
            assert!(
                out.stdout.contains("EC2 - Other") && out.stdout.contains("Total (USD)"),
                "{}",
                out.describe()
            );
            assert!(out.stdout.contains('█'), "a bar: {}", out.describe());
            let doc = std::fs::read_to_string(&svg).unwrap();
            assert!(doc.starts_with("<svg") && doc.contains("<rect"), "{doc}");
            let bad = ctl(&["cost", "--granularity", "WEEKLY"]);
            bad.assert_failure();
            assert!(
                bad.stderr.contains("ValidationException"),
                "{}",
                bad.describe()
            );
        }
    }

    // The JavaScript SDK's Cost Explorer client.
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/aws/js");
    if !js
        .join("node_modules/@aws-sdk/client-cost-explorer")
        .exists()
    {
        skip(
            "the JavaScript SDK is not installed (npm install --prefix volume-server/tests/aws/js)",
        );
    } else if require_tool("node") {
        run(Command::new("node")
            .arg(js.join("costs.mjs"))
            .arg(server.aws_url())
            .arg(&state))
        .assert_success();
    }
    server.stop();
    let server = Server::start_with_args(&data, &args);
    run(Command::new("python3")
        .arg(&script)
        .arg(server.aws_url())
        .arg("after-restart")
        .env("BILLING_STATE_DIR", dir.path()))
    .assert_success();
    server.stop();
}

/// Reserved Instances and a Savings Plan covering two instances' usage, through boto3
/// (`tests/aws/billing_commitments.py`).
#[test]
fn reserved_instances_and_savings_plans_cover_usage_in_aws_order() {
    if !require_aws_clients() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_args(
        dir.path(),
        &[
            "--billing-clock-scale",
            "3600",
            "--snapshot-min-interval",
            "0s",
        ],
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/aws/billing_commitments.py");
    run(Command::new("python3").arg(&script).arg(server.aws_url())).assert_success();
    server.stop();
}

/// `--price-list` replaces the built-in list; a file that is not one stops the server with a
/// message naming the flag.
#[test]
fn a_bad_price_list_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("prices.json");
    std::fs::write(&list, "{\"about\": 1}").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_volume-server"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--grpc-addr", "127.0.0.1:0", "--nbd-addr", "127.0.0.1:0"])
        .args(["--metrics-addr", "127.0.0.1:0", "--aws-addr", "127.0.0.1:0"])
        .arg("--price-list")
        .arg(&list)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--price-list"), "{err}");
}
