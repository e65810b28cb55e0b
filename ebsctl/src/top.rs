//! `ebsctl top`: live per-volume I/O rates, like `iostat`, from GetVolumeMetrics.
//!
//! The metrics' counters are cumulative since a volume was opened, so each report is the difference
//! of two readings one `--interval` apart divided by the time between them ([`rates`]); gauges (queue
//! length, burst balance, the exceeded checks) are the later reading's. A volume shows up from its
//! second reading on and is dropped once a reading no longer has it.
//!
//! The output is plain text whatever `--output` says: one line per volume and report, the header
//! again every screenful, a blank line between reports of several volumes.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::io::{self, Write};

use proto::ebs::v1 as pb;
use tokio::time::{Instant, MissedTickBehavior};

use crate::cli::TopArgs;
use crate::client::Api;
use crate::error::CliError;

const MIB: f64 = 1024.0 * 1024.0;

/// Lines of a screen: the header is printed again once this many lines have gone by.
const SCREEN_LINES: usize = 24;

/// The column titles.
const HEADER: [&str; 11] = [
    "VOLUME",
    "r/s",
    "w/s",
    "rMiB/s",
    "wMiB/s",
    "ebs-ops/s",
    "await-ms",
    "queue",
    "burst%",
    "iops-exceeded",
    "tput-exceeded",
];

/// Width of the (left-aligned) volume column: a full `vol-` + 17 hex digits ID.
const VOLUME_WIDTH: usize = 21;

/// Widths of the other (right-aligned) columns.
const WIDTHS: [usize; 10] = [9, 9, 8, 8, 9, 8, 5, 6, 13, 13];

/// One volume's activity between two readings.
#[derive(Debug, Clone, PartialEq)]
pub struct Rates {
    pub volume_id: String,
    pub reads_per_sec: f64,
    pub writes_per_sec: f64,
    pub read_mib_per_sec: f64,
    pub write_mib_per_sec: f64,
    /// Operations counted the EBS way (256 KiB or 1 MiB units) per second.
    pub ebs_ops_per_sec: f64,
    /// Mean milliseconds to complete a read or write; `None` without any.
    pub await_ms: Option<f64>,
    /// Requests in flight or throttled now.
    pub queue: u64,
    /// Burst credits left, %; `None` for types without burst credits.
    pub burst_percent: Option<f64>,
    /// Whether demand exceeded the provisioned IOPS in the last minute; `None` without a limit.
    pub iops_exceeded: Option<bool>,
    /// Whether demand exceeded the provisioned throughput in the last minute; `None` without a limit.
    pub throughput_exceeded: Option<bool>,
}

/// A volume's rates from two readings `seconds` apart.
///
/// When a counter went backwards the volume was reopened (detached and attached again, or the server
/// restarted) in between: its counters started again from zero within the interval, so the later
/// reading alone is what happened since.
pub fn rates(before: &pb::VolumeMetrics, after: &pb::VolumeMetrics, seconds: f64) -> Rates {
    let zero = pb::VolumeMetrics::default();
    let before = if restarted(before, after) {
        &zero
    } else {
        before
    };
    let per_second = |count: u64| {
        if seconds > 0.0 {
            count as f64 / seconds
        } else {
            0.0
        }
    };
    let reads = after.volume_read_ops.saturating_sub(before.volume_read_ops);
    let writes = after
        .volume_write_ops
        .saturating_sub(before.volume_write_ops);
    let busy = (after.volume_total_read_time - before.volume_total_read_time).max(0.0)
        + (after.volume_total_write_time - before.volume_total_write_time).max(0.0);
    let ops = reads + writes;
    let await_ms = (ops > 0).then(|| busy / ops as f64 * 1000.0);
    Rates {
        volume_id: after.volume_id.clone(),
        reads_per_sec: per_second(reads),
        writes_per_sec: per_second(writes),
        read_mib_per_sec: per_second(
            after
                .volume_read_bytes
                .saturating_sub(before.volume_read_bytes),
        ) / MIB,
        write_mib_per_sec: per_second(
            after
                .volume_write_bytes
                .saturating_sub(before.volume_write_bytes),
        ) / MIB,
        ebs_ops_per_sec: per_second(
            after
                .volume_consumed_read_write_ops
                .saturating_sub(before.volume_consumed_read_write_ops),
        ),
        await_ms,
        queue: after.volume_queue_length,
        burst_percent: after.burst_balance,
        iops_exceeded: check(after.volume_iops_exceeded_check, after.provisioned_iops),
        throughput_exceeded: check(
            after.volume_throughput_exceeded_check,
            after.provisioned_throughput_bytes,
        ),
    }
}

/// Whether any counter of `after` is below `before`'s.
fn restarted(before: &pb::VolumeMetrics, after: &pb::VolumeMetrics) -> bool {
    after.volume_read_ops < before.volume_read_ops
        || after.volume_write_ops < before.volume_write_ops
        || after.volume_read_bytes < before.volume_read_bytes
        || after.volume_write_bytes < before.volume_write_bytes
        || after.volume_consumed_read_write_ops < before.volume_consumed_read_write_ops
        || after.volume_total_read_time < before.volume_total_read_time
        || after.volume_total_write_time < before.volume_total_write_time
        || after.throttle_wait_time < before.throttle_wait_time
}

/// An exceeded check against its limit (0: unlimited, nothing to exceed).
fn check(value: u32, limit: u64) -> Option<bool> {
    match (value, limit) {
        (0, 0) => None,
        (value, _) => Some(value != 0),
    }
}

/// One report: the rates of the volumes of `after` that `before` has too, by volume ID.
pub fn report(
    before: &HashMap<String, pb::VolumeMetrics>,
    after: &[pb::VolumeMetrics],
    seconds: f64,
) -> Vec<Rates> {
    let mut lines: Vec<Rates> = after
        .iter()
        .filter_map(|a| before.get(&a.volume_id).map(|b| rates(b, a, seconds)))
        .collect();
    lines.sort_by(|x, y| x.volume_id.cmp(&y.volume_id));
    lines
}

fn row<S: AsRef<str>>(cells: &[S; 11]) -> String {
    let [volume, rest @ ..] = cells;
    let mut line = format!("{:<VOLUME_WIDTH$}", volume.as_ref());
    for (cell, width) in rest.iter().zip(WIDTHS) {
        let _ = write!(line, "  {:>width$}", cell.as_ref());
    }
    line.push('\n');
    line
}

/// The header line.
pub fn header() -> String {
    row(&HEADER)
}

/// One volume's line.
pub fn line(r: &Rates) -> String {
    let fixed = |v: f64, places: usize| format!("{v:.places$}");
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
    let yes_no = |v: Option<bool>| match v {
        Some(true) => "yes".to_owned(),
        Some(false) => "no".to_owned(),
        None => "-".to_owned(),
    };
    row(&[
        r.volume_id.clone(),
        fixed(r.reads_per_sec, 1),
        fixed(r.writes_per_sec, 1),
        fixed(r.read_mib_per_sec, 2),
        fixed(r.write_mib_per_sec, 2),
        fixed(r.ebs_ops_per_sec, 1),
        or_dash(r.await_ms.map(|v| fixed(v, 2))),
        r.queue.to_string(),
        or_dash(r.burst_percent.map(|v| fixed(v, 1))),
        yes_no(r.iops_exceeded),
        yes_no(r.throughput_exceeded),
    ])
}

/// Lays reports out on the terminal: when to repeat the header, where to leave a blank line.
#[derive(Debug, Default)]
pub struct Screen {
    started: bool,
    /// Lines printed since the last header.
    since_header: usize,
}

impl Screen {
    /// The text of one report.
    pub fn render(&mut self, lines: &[Rates]) -> String {
        let mut text = String::new();
        if self.started && lines.len() > 1 {
            text.push('\n');
            self.since_header += 1;
        }
        if !self.started || 1 + self.since_header + lines.len() > SCREEN_LINES {
            text.push_str(&header());
            self.since_header = 0;
        }
        for r in lines {
            text.push_str(&line(r));
        }
        self.since_header += lines.len();
        self.started = true;
        text
    }
}

/// Runs `ebsctl top`, writing each report to `out` as it comes, until `--count` reports were
/// written (forever without it) or `out`'s reader went away.
pub async fn top(api: &mut Api, args: TopArgs, out: &mut impl Write) -> Result<(), CliError> {
    let mut ticker = tokio::time::interval(args.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let wanted: HashSet<String> = args.volume_ids.iter().cloned().collect();
    // The first reading asks for the given volumes, so the server can reject unknown IDs; later ones
    // ask for every volume and keep the wanted ones, so a volume that goes away is dropped rather
    // than failing the call.
    let mut request = pb::GetVolumeMetricsRequest {
        volume_ids: args.volume_ids,
    };
    let mut previous: Option<(Instant, HashMap<String, pb::VolumeMetrics>)> = None;
    let mut screen = Screen::default();
    let mut reports = 0;
    loop {
        ticker.tick().await;
        let reply = api.get_volume_metrics(request.clone()).await?;
        let now = Instant::now();
        request.volume_ids.clear();
        let current: HashMap<String, pb::VolumeMetrics> = reply
            .metrics
            .into_iter()
            .filter(|m| wanted.is_empty() || wanted.contains(&m.volume_id))
            .map(|m| (m.volume_id.clone(), m))
            .collect();
        if let Some((then, before)) = &previous {
            let after: Vec<pb::VolumeMetrics> = current.values().cloned().collect();
            let lines = report(before, &after, now.duration_since(*then).as_secs_f64());
            if !emit(out, &screen.render(&lines))? {
                return Ok(());
            }
            reports += 1;
            if args.count.is_some_and(|count| reports >= count) {
                return Ok(());
            }
        }
        previous = Some((now, current));
    }
}

/// Writes and flushes `text`; `Ok(false)` when the reader went away (`| head`).
fn emit(out: &mut impl Write, text: &str) -> Result<bool, CliError> {
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(CliError::Output(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(id: &str, n: u64) -> pb::VolumeMetrics {
        let seconds = n as f64;
        pb::VolumeMetrics {
            volume_id: id.to_owned(),
            volume_read_ops: 100 * n,
            volume_write_ops: 50 * n,
            volume_read_bytes: 100 * n * 1_048_576,
            volume_write_bytes: 50 * n * 2 * 1_048_576,
            volume_total_read_time: 0.125 * seconds,
            volume_total_write_time: 0.5 * seconds,
            volume_idle_time: 0.0,
            volume_queue_length: 3,
            volume_throughput_percentage: None,
            volume_consumed_read_write_ops: 500 * n,
            burst_balance: Some(87.5),
            volume_iops_exceeded_check: 1,
            volume_throughput_exceeded_check: 0,
            provisioned_iops: 3000,
            provisioned_throughput_bytes: 0,
            throttle_wait_time: 0.0,
        }
    }

    #[test]
    fn rates_are_differences_over_time() {
        let r = rates(&reading("vol-1", 2), &reading("vol-1", 4), 2.0);
        assert_eq!(
            r,
            Rates {
                volume_id: "vol-1".into(),
                reads_per_sec: 100.0,
                writes_per_sec: 50.0,
                read_mib_per_sec: 100.0,
                write_mib_per_sec: 100.0,
                ebs_ops_per_sec: 500.0,
                // 2 × (0.125 + 0.5) s over 300 operations.
                await_ms: Some(1.25 / 300.0 * 1000.0),
                queue: 3,
                burst_percent: Some(87.5),
                iops_exceeded: Some(true),
                throughput_exceeded: None,
            }
        );
    }

    #[test]
    fn idle_volume_has_no_await() {
        let r = rates(&reading("vol-1", 3), &reading("vol-1", 3), 1.0);
        assert_eq!(r.reads_per_sec, 0.0);
        assert_eq!(r.write_mib_per_sec, 0.0);
        assert_eq!(r.await_ms, None);
    }

    #[test]
    fn await_counts_reads_and_writes_together() {
        let before = pb::VolumeMetrics::default();
        let after = pb::VolumeMetrics {
            volume_read_ops: 10,
            volume_total_read_time: 0.01,
            volume_write_ops: 30,
            volume_total_write_time: 0.19,
            ..before.clone()
        };
        let r = rates(&before, &after, 1.0);
        assert!(
            r.await_ms.is_some_and(|ms| (ms - 5.0).abs() < 1e-9),
            "{r:?}"
        );
    }

    #[test]
    fn counters_that_went_backwards_start_from_zero() {
        // Reopened: 10 reads since, within the interval.
        let mut after = reading("vol-1", 0);
        after.volume_read_ops = 10;
        let r = rates(&reading("vol-1", 5), &after, 2.0);
        assert_eq!(r.reads_per_sec, 5.0);
        assert_eq!(r.writes_per_sec, 0.0);
    }

    #[test]
    fn no_elapsed_time_gives_zero_rates() {
        let r = rates(&reading("vol-1", 1), &reading("vol-1", 2), 0.0);
        assert_eq!(r.reads_per_sec, 0.0);
        assert!(r.await_ms.is_some());
    }

    #[test]
    fn exceeded_checks_need_a_limit() {
        assert_eq!(check(0, 0), None);
        assert_eq!(check(0, 3000), Some(false));
        assert_eq!(check(1, 3000), Some(true));
        assert_eq!(check(1, 0), Some(true));
    }

    #[test]
    fn report_keeps_volumes_seen_twice_sorted() {
        let before: HashMap<String, pb::VolumeMetrics> = ["vol-b", "vol-a", "vol-gone"]
            .into_iter()
            .map(|id| (id.to_owned(), reading(id, 1)))
            .collect();
        let after = [
            reading("vol-new", 2),
            reading("vol-b", 2),
            reading("vol-a", 2),
        ];
        let ids: Vec<String> = report(&before, &after, 1.0)
            .into_iter()
            .map(|r| r.volume_id)
            .collect();
        assert_eq!(ids, ["vol-a", "vol-b"]);
    }

    #[test]
    fn lines_line_up_under_the_header() {
        let r = rates(
            &reading("vol-0123456789abcdef0", 0),
            &reading("vol-0123456789abcdef0", 1),
            1.0,
        );
        assert_eq!(
            header(),
            "VOLUME                       r/s        w/s    rMiB/s    wMiB/s  ebs-ops/s  await-ms  queue  burst%  iops-exceeded  tput-exceeded\n"
        );
        assert_eq!(
            line(&r),
            "vol-0123456789abcdef0      100.0       50.0    100.00    100.00      500.0      4.17      3    87.5            yes              -\n"
        );
        let idle = Rates {
            await_ms: None,
            burst_percent: None,
            iops_exceeded: Some(false),
            ..r
        };
        let idle_line = line(&idle);
        let cells: Vec<&str> = idle_line.split_whitespace().collect();
        assert_eq!(cells[6..], ["-", "3", "-", "no", "-"]);
        assert_eq!(idle_line.len(), header().len());
    }

    #[test]
    fn header_every_screenful_blank_line_between_multi_volume_reports() {
        let one = [rates(&reading("vol-1", 0), &reading("vol-1", 1), 1.0)];
        let mut screen = Screen::default();
        let mut text = String::new();
        for _ in 0..(SCREEN_LINES - 1) {
            text.push_str(&screen.render(&one));
        }
        assert_eq!(text.matches("VOLUME").count(), 1);
        assert_eq!(text.lines().count(), SCREEN_LINES);
        let next = screen.render(&one);
        assert!(next.starts_with("VOLUME"), "{next}");

        let two = [
            one[0].clone(),
            Rates {
                volume_id: "vol-2".into(),
                ..one[0].clone()
            },
        ];
        let mut screen = Screen::default();
        let first = screen.render(&two);
        assert!(first.starts_with("VOLUME"));
        assert_eq!(first.lines().count(), 3);
        let second = screen.render(&two);
        assert!(second.starts_with("\nvol-1"), "{second}");

        // An empty first report still shows the header.
        assert_eq!(Screen::default().render(&[]), header());
    }
}
