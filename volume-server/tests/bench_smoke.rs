//! The fio comparison harness (`scripts/bench_compare.py`) as a smoke test: every job against
//! this server and the three peers, once, for one second, on a 64 MiB file. It proves the
//! harness still runs end to end and prints its three tables; it asserts nothing about speed.

mod common;

use std::process::Command;

use common::*;

#[test]
fn the_comparison_harness_runs_every_job_against_every_server() {
    for tool in ["python3", "fio", "nbdkit", "qemu-nbd", "nbdcopy"] {
        if !require_tool(tool) {
            return;
        }
    }
    let Some(ctl) = ebsctl_path() else {
        skip("target/debug/ebsctl was not built (run `cargo test --workspace`)");
        return;
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/bench_compare.py");
    let out = Command::new("python3")
        .arg(script)
        .arg("--smoke")
        .arg("--exe")
        .arg(env!("CARGO_BIN_EXE_volume-server"))
        .arg("--ctl")
        .arg(&ctl)
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench_compare.py --smoke failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for job in [
        "4k randread QD1",
        "4k randwrite QD1",
        "4k randread QD32",
        "4k randwrite QD32",
        "4k 70/30 randrw QD32",
        "1M read QD8",
        "1M write QD8",
    ] {
        let rows: Vec<&str> = stdout
            .lines()
            .filter(|l| l.starts_with(&format!("| {job} |")))
            .collect();
        // One row of throughput and ratios, one of p99 and CPU per I/O, one of fio's CPU.
        assert_eq!(rows.len(), 3, "rows for {job}:\n{stdout}");
        // job, 4 servers, 3 ratios, and the empty ends.
        for x in numbers(rows[0], 10, 6..9, "x") {
            assert!(x.is_finite() && x > 0.0, "{}", rows[0]);
        }
        // fio's busy share with each of the 4 servers: a percentage of one CPU (fio's job
        // thread, plus a little of its helper threads).
        for pct in numbers(rows[2], 7, 2..6, " %") {
            assert!((0.0..=200.0).contains(&pct), "{}", rows[2]);
        }
    }
}

/// The numbers in cells `range` of a Markdown table `row` of `cells` cells (the empty ends
/// included), each written with `suffix`.
fn numbers(row: &str, cells: usize, range: std::ops::Range<usize>, suffix: &str) -> Vec<f64> {
    let all: Vec<&str> = row.split('|').map(str::trim).collect();
    assert_eq!(all.len(), cells, "{row}");
    all[range]
        .iter()
        .map(|cell| {
            cell.strip_suffix(suffix)
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{cell:?} in {row}"))
        })
        .collect()
}
