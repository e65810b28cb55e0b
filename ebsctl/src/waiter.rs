//! `ebsctl wait volume-available|volume-in-use|volume-deleted|snapshot-completed|instance-running|
//! instance-stopped|instance-terminated|instance-exists|image-available`: poll DescribeVolumes,
//! DescribeSnapshots, DescribeInstances or DescribeImages like the AWS CLI's waiters.
//!
//! `snapshot-completed` can also draw a progress bar: one line, redrawn in place with `\r` after
//! every poll, which the caller asks for only when a person is watching a terminal.

use std::io::Write;
use std::time::Duration;

use proto::ebs::v1 as pb;

use crate::client::Api;
use crate::error::CliError;

/// The EC2 error code that means "no such volume": success for `volume-deleted`.
const NOT_FOUND: &str = "InvalidVolume.NotFound";

/// The EC2 error code that means "no such instance": success for `instance-terminated`, a reason
/// to try again for `instance-exists`.
const INSTANCE_NOT_FOUND: &str = "InvalidInstanceID.NotFound";

/// Cells of the progress bar between its brackets.
const BAR_WIDTH: usize = 20;

/// The waiters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    VolumeAvailable,
    VolumeInUse,
    VolumeDeleted,
    SnapshotCompleted,
    InstanceRunning,
    InstanceStopped,
    InstanceTerminated,
    InstanceExists,
    ImageAvailable,
}

impl Kind {
    /// The waiter's name in messages, as the AWS CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::VolumeAvailable => "VolumeAvailable",
            Self::VolumeInUse => "VolumeInUse",
            Self::VolumeDeleted => "VolumeDeleted",
            Self::SnapshotCompleted => "SnapshotCompleted",
            Self::InstanceRunning => "InstanceRunning",
            Self::InstanceStopped => "InstanceStopped",
            Self::InstanceTerminated => "InstanceTerminated",
            Self::InstanceExists => "InstanceExists",
            Self::ImageAvailable => "ImageAvailable",
        }
    }

    /// The expression the AWS CLI names when a terminal state is matched.
    fn path(self) -> &'static str {
        match self {
            Self::VolumeAvailable | Self::VolumeInUse | Self::VolumeDeleted => "Volumes[].State",
            Self::SnapshotCompleted => "Snapshots[].State",
            Self::InstanceRunning
            | Self::InstanceStopped
            | Self::InstanceTerminated
            | Self::InstanceExists => "Reservations[].Instances[].State.Name",
            Self::ImageAvailable => "Images[].State",
        }
    }

    /// What a "not found" error means to this waiter, and the error code that says it, as in
    /// botocore's `waiters-2.json`: a deleted volume is what `volume-deleted` waits for; an
    /// instance not there yet is worth waiting for (`instance-running`, `instance-exists`); any
    /// other waiter fails on the error (`instance-terminated` on an unknown id included).
    fn on_not_found(self) -> Option<(&'static str, Verdict)> {
        match self {
            Self::VolumeDeleted => Some((NOT_FOUND, Verdict::Success)),
            Self::InstanceRunning | Self::InstanceExists => {
                Some((INSTANCE_NOT_FOUND, Verdict::Retry))
            }
            _ => None,
        }
    }

    /// The AWS CLI's delay and attempts for this waiter (botocore's `waiters-2.json`).
    pub fn defaults(self) -> (Duration, u32) {
        match self {
            Self::InstanceExists => (Duration::from_secs(5), 40),
            _ => (Duration::from_secs(15), 40),
        }
    }
}

/// The describe call a waiter repeats: every page of it at each attempt.
#[derive(Debug, Clone)]
pub enum Describe {
    Volumes(pb::DescribeVolumesRequest),
    Snapshots(pb::DescribeSnapshotsRequest),
    Instances(pb::DescribeInstancesRequest),
    Images(pb::DescribeImagesRequest),
}

/// One volume, snapshot, instance or AMI as a poll found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub id: String,
    pub state: String,
    /// A snapshot's `Progress` (`"45%"`); `None` for a volume.
    pub progress: Option<String>,
}

impl Seen {
    /// Percent done, 0..=100, for a snapshot: a completed one is done whatever its `Progress`
    /// says, and a `Progress` that is not a percentage counts as 0.
    fn percent(&self) -> Option<u32> {
        let progress = self.progress.as_deref()?;
        if self.state == "completed" {
            return Some(100);
        }
        let digits = progress.trim().trim_end_matches('%').trim_end();
        Some(digits.parse::<u32>().map_or(0, |p| p.min(100)))
    }
}

/// What one poll says.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Success,
    Retry,
    /// A terminal state or error: give up now.
    Failure(String),
}

/// Judges the states of the volumes, snapshots, instances or AMIs one poll found.
pub fn judge(kind: Kind, states: &[&str]) -> Verdict {
    // (the state wanted, states that end the wait, whether finding nothing is a success)
    let (wanted, fatal, none_is_done): (&str, &[&str], bool) = match kind {
        Kind::VolumeAvailable => ("available", &["deleted", "error"], false),
        Kind::VolumeInUse => ("in-use", &["deleted", "error"], false),
        // Absent volumes are deleted volumes: an empty answer is a success.
        Kind::VolumeDeleted => ("deleted", &[], true),
        Kind::SnapshotCompleted => ("completed", &["error"], false),
        Kind::InstanceRunning => (
            "running",
            &["shutting-down", "terminated", "stopping"],
            false,
        ),
        Kind::InstanceStopped => ("stopped", &["pending", "terminated"], false),
        // Absent instances are terminated instances, as volumes are deleted ones.
        Kind::InstanceTerminated => ("terminated", &["pending", "stopping"], true),
        Kind::InstanceExists => return verdict(!states.is_empty()),
        Kind::ImageAvailable => ("available", &["failed"], false),
    };
    if let Some(state) = states.iter().find(|s| fatal.contains(s)) {
        return Verdict::Failure(format!(
            "Waiter encountered a terminal failure state: For expression \"{}\" we matched expected path: \"{state}\" at least once",
            kind.path()
        ));
    }
    if states.is_empty() {
        return verdict(none_is_done);
    }
    verdict(states.iter().all(|s| *s == wanted))
}

fn verdict(done: bool) -> Verdict {
    if done {
        Verdict::Success
    } else {
        Verdict::Retry
    }
}

/// Judges a failed describe call: `volume-deleted` and `instance-terminated` accept "not found",
/// `instance-exists` tries again; other errors end the wait.
pub fn judge_error(kind: Kind, error: &CliError) -> Verdict {
    match error {
        CliError::Service { code, message, .. } => match kind.on_not_found() {
            Some((not_found, verdict)) if code == not_found => verdict,
            _ => Verdict::Failure(format!("An error occurred ({code}): {message}")),
        },
        _ => Verdict::Failure(error.to_string()),
    }
}

/// The progress line of one poll: the snapshot (or how many there are), a bar and the mean
/// percentage, e.g. `snap-… [#########-----------]  45%`. `None` when there is no progress to
/// show: no snapshots, or volumes.
pub fn progress_line(seen: &[Seen]) -> Option<String> {
    let percents = seen
        .iter()
        .map(Seen::percent)
        .collect::<Option<Vec<u32>>>()?;
    let count = u32::try_from(percents.len()).ok().filter(|n| *n > 0)?;
    let mean = percents.iter().sum::<u32>() / count;
    let label = match seen {
        [one] => one.id.clone(),
        _ => format!("{count} snapshots"),
    };
    // `mean` is at most 100.
    let filled = mean as usize * BAR_WIDTH / 100;
    Some(format!(
        "{label} [{}{}] {mean:>3}%",
        "#".repeat(filled),
        "-".repeat(BAR_WIDTH - filled)
    ))
}

/// The progress bar on a terminal: each line overwrites the one before.
struct Bar<'a> {
    out: Option<&'a mut dyn Write>,
    /// Length of the line on screen, 0 before the first.
    shown: usize,
}

impl Bar<'_> {
    /// Redraws the bar for one poll. The bar is decoration: failing to write it is ignored.
    fn draw(&mut self, seen: &[Seen]) {
        let (Some(out), Some(line)) = (self.out.as_mut(), progress_line(seen)) else {
            return;
        };
        // Pad over whatever is left of a longer line before.
        let _ = write!(out, "\r{line:<width$}", width = self.shown);
        let _ = out.flush();
        self.shown = self.shown.max(line.len());
    }

    /// Ends the bar's line so that what comes next starts on its own.
    fn finish(&mut self) {
        if let Some(out) = self.out.as_mut().filter(|_| self.shown > 0) {
            let _ = writeln!(out);
            let _ = out.flush();
        }
    }
}

/// Calls `describe` (every page) and keeps what a waiter looks at.
async fn poll(api: &mut Api, describe: &Describe) -> Result<Vec<Seen>, CliError> {
    Ok(match describe {
        Describe::Volumes(request) => api
            .describe_all_volumes(request.clone())
            .await?
            .into_iter()
            .map(|v| Seen {
                id: v.volume_id,
                state: v.state,
                progress: None,
            })
            .collect(),
        Describe::Snapshots(request) => api
            .describe_all_snapshots(request.clone())
            .await?
            .into_iter()
            .map(|s| Seen {
                id: s.snapshot_id,
                state: s.state,
                progress: Some(s.progress),
            })
            .collect(),
        Describe::Instances(request) => api
            .describe_all_instances(request.clone())
            .await?
            .into_iter()
            .flat_map(|r| r.instances)
            .map(|i| Seen {
                id: i.instance_id,
                state: i.state.unwrap_or_default().name,
                progress: None,
            })
            .collect(),
        Describe::Images(request) => api
            .describe_all_images(request.clone())
            .await?
            .into_iter()
            .map(|i| Seen {
                id: i.image_id,
                state: i.state,
                progress: None,
            })
            .collect(),
    })
}

/// Polls `describe` every `delay`, at most `max_attempts` times, until `judge` says success or
/// failure. With `progress`, snapshots' progress is drawn there after every poll (see
/// [`progress_line`]) and the line ended when the wait is over.
pub async fn wait(
    api: &mut Api,
    kind: Kind,
    describe: Describe,
    delay: Duration,
    max_attempts: u32,
    progress: Option<&mut dyn Write>,
) -> Result<(), CliError> {
    let mut bar = Bar {
        out: progress,
        shown: 0,
    };
    let result = poll_until_done(api, kind, &describe, delay, max_attempts, &mut bar).await;
    bar.finish();
    result
}

async fn poll_until_done(
    api: &mut Api,
    kind: Kind,
    describe: &Describe,
    delay: Duration,
    max_attempts: u32,
    bar: &mut Bar<'_>,
) -> Result<(), CliError> {
    for attempt in 1..=max_attempts {
        let verdict = match poll(api, describe).await {
            Ok(seen) => {
                bar.draw(&seen);
                let states: Vec<&str> = seen.iter().map(|s| s.state.as_str()).collect();
                judge(kind, &states)
            }
            // Without a server there is nothing to wait for: report it as itself.
            Err(e @ (CliError::Connect { .. } | CliError::InvalidEndpoint { .. })) => {
                return Err(e);
            }
            Err(e) => judge_error(kind, &e),
        };
        match verdict {
            Verdict::Success => return Ok(()),
            Verdict::Failure(reason) => {
                return Err(CliError::Waiter {
                    name: kind.name(),
                    reason,
                });
            }
            Verdict::Retry if attempt < max_attempts => tokio::time::sleep(delay).await,
            Verdict::Retry => {}
        }
    }
    Err(CliError::Waiter {
        name: kind.name(),
        reason: "Max attempts exceeded".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(verdict: Verdict) -> String {
        match verdict {
            Verdict::Failure(reason) => reason,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn available_needs_every_volume_available() {
        let k = Kind::VolumeAvailable;
        assert_eq!(judge(k, &["available", "available"]), Verdict::Success);
        assert_eq!(judge(k, &["available", "creating"]), Verdict::Retry);
        assert_eq!(judge(k, &[]), Verdict::Retry);
        let reason = failed(judge(k, &["available", "error"]));
        assert!(reason.contains("\"error\""), "{reason}");
        failed(judge(k, &["deleted"]));
    }

    #[test]
    fn in_use_needs_every_volume_in_use() {
        let k = Kind::VolumeInUse;
        assert_eq!(judge(k, &["in-use"]), Verdict::Success);
        assert_eq!(judge(k, &["in-use", "available"]), Verdict::Retry);
        failed(judge(k, &["in-use", "deleted"]));
    }

    #[test]
    fn deleted_accepts_absent_volumes_and_not_found() {
        let k = Kind::VolumeDeleted;
        assert_eq!(judge(k, &["deleted"]), Verdict::Success);
        assert_eq!(judge(k, &[]), Verdict::Success);
        assert_eq!(judge(k, &["deleting"]), Verdict::Retry);

        let not_found = CliError::Service {
            operation: "DescribeVolumes",
            code: NOT_FOUND.to_owned(),
            message: "The volume 'vol-1' does not exist.".to_owned(),
        };
        assert_eq!(judge_error(k, &not_found), Verdict::Success);
        assert_eq!(
            failed(judge_error(Kind::VolumeAvailable, &not_found)),
            "An error occurred (InvalidVolume.NotFound): The volume 'vol-1' does not exist."
        );
    }

    #[test]
    fn instance_running_fails_fast_like_the_aws_cli() {
        let k = Kind::InstanceRunning;
        assert_eq!(judge(k, &["running", "running"]), Verdict::Success);
        assert_eq!(judge(k, &["running", "pending"]), Verdict::Retry);
        assert_eq!(judge(k, &[]), Verdict::Retry);
        for fatal in ["shutting-down", "terminated", "stopping"] {
            assert_eq!(
                failed(judge(k, &["pending", fatal])),
                format!(
                    "Waiter encountered a terminal failure state: For expression \"Reservations[].Instances[].State.Name\" we matched expected path: \"{fatal}\" at least once"
                )
            );
        }
        // Stopped is not terminal: the instance may be started.
        assert_eq!(judge(k, &["stopped"]), Verdict::Retry);
        let not_found = CliError::Service {
            operation: "DescribeInstances",
            code: INSTANCE_NOT_FOUND.to_owned(),
            message: "The instance ID 'i-1' does not exist".to_owned(),
        };
        // An instance not there yet may come: botocore retries.
        assert_eq!(judge_error(k, &not_found), Verdict::Retry);
    }

    #[test]
    fn instance_stopped_and_terminated() {
        let k = Kind::InstanceStopped;
        assert_eq!(judge(k, &["stopped"]), Verdict::Success);
        assert_eq!(judge(k, &["stopping", "stopped"]), Verdict::Retry);
        assert_eq!(judge(k, &[]), Verdict::Retry);
        failed(judge(k, &["stopping", "pending"]));
        failed(judge(k, &["terminated"]));

        let k = Kind::InstanceTerminated;
        assert_eq!(judge(k, &["terminated", "terminated"]), Verdict::Success);
        assert_eq!(judge(k, &["shutting-down"]), Verdict::Retry);
        assert_eq!(judge(k, &["running"]), Verdict::Retry);
        // Gone instances are terminated ones, as deleted volumes are.
        assert_eq!(judge(k, &[]), Verdict::Success);
        failed(judge(k, &["terminated", "pending"]));
        failed(judge(k, &["stopping"]));
        let not_found = CliError::Service {
            operation: "DescribeInstances",
            code: INSTANCE_NOT_FOUND.to_owned(),
            message: "gone".to_owned(),
        };
        // An unknown id fails the waiter, as in botocore (it has no acceptor for the error).
        assert_eq!(
            failed(judge_error(k, &not_found)),
            "An error occurred (InvalidInstanceID.NotFound): gone"
        );
        // A volume's "not found" is not an instance's.
        let volume_not_found = CliError::Service {
            operation: "DescribeInstances",
            code: NOT_FOUND.to_owned(),
            message: "gone".to_owned(),
        };
        failed(judge_error(k, &volume_not_found));
    }

    #[test]
    fn instance_exists_needs_one_instance_and_retries_not_found() {
        let k = Kind::InstanceExists;
        assert_eq!(judge(k, &["pending"]), Verdict::Success);
        assert_eq!(judge(k, &["terminated"]), Verdict::Success);
        assert_eq!(judge(k, &[]), Verdict::Retry);
        let not_found = CliError::Service {
            operation: "DescribeInstances",
            code: INSTANCE_NOT_FOUND.to_owned(),
            message: "not yet".to_owned(),
        };
        assert_eq!(judge_error(k, &not_found), Verdict::Retry);
        let malformed = CliError::Service {
            operation: "DescribeInstances",
            code: "InvalidInstanceID.Malformed".to_owned(),
            message: "bad".to_owned(),
        };
        failed(judge_error(k, &malformed));
    }

    #[test]
    fn image_available_fails_on_failed() {
        let k = Kind::ImageAvailable;
        assert_eq!(judge(k, &["available", "available"]), Verdict::Success);
        assert_eq!(judge(k, &["available", "pending"]), Verdict::Retry);
        assert_eq!(judge(k, &[]), Verdict::Retry);
        assert_eq!(
            failed(judge(k, &["pending", "failed"])),
            "Waiter encountered a terminal failure state: For expression \"Images[].State\" we matched expected path: \"failed\" at least once"
        );
        assert_eq!(Kind::ImageAvailable.name(), "ImageAvailable");
        assert_eq!(Kind::InstanceRunning.name(), "InstanceRunning");
    }

    #[test]
    fn timeout_message_matches_the_aws_cli() {
        let e = CliError::Waiter {
            name: Kind::VolumeAvailable.name(),
            reason: "Max attempts exceeded".to_owned(),
        };
        assert_eq!(
            e.to_string(),
            "Waiter VolumeAvailable failed: Max attempts exceeded"
        );
        assert_eq!(e.exit_code(), 255);
    }

    #[test]
    fn snapshot_completed_needs_every_snapshot_completed() {
        let k = Kind::SnapshotCompleted;
        assert_eq!(judge(k, &["completed", "completed"]), Verdict::Success);
        assert_eq!(judge(k, &["completed", "pending"]), Verdict::Retry);
        assert_eq!(judge(k, &[]), Verdict::Retry);
        assert_eq!(
            failed(judge(k, &["pending", "error"])),
            "Waiter encountered a terminal failure state: For expression \"Snapshots[].State\" we matched expected path: \"error\" at least once"
        );
        let not_found = CliError::Service {
            operation: "DescribeSnapshots",
            code: "InvalidSnapshot.NotFound".to_owned(),
            message: "The snapshot 'snap-1' does not exist.".to_owned(),
        };
        assert_eq!(
            failed(judge_error(k, &not_found)),
            "An error occurred (InvalidSnapshot.NotFound): The snapshot 'snap-1' does not exist."
        );
    }

    fn snap(id: &str, state: &str, progress: &str) -> Seen {
        Seen {
            id: id.to_owned(),
            state: state.to_owned(),
            progress: Some(progress.to_owned()),
        }
    }

    #[test]
    fn progress_line_of_one_snapshot() {
        let line = progress_line(&[snap("snap-0123456789abcdef0", "pending", "45%")]);
        assert_eq!(
            line.as_deref(),
            Some("snap-0123456789abcdef0 [#########-----------]  45%")
        );
        let line = progress_line(&[snap("snap-1", "pending", "0%")]);
        assert_eq!(line.as_deref(), Some("snap-1 [--------------------]   0%"));
        // Completed is 100% whatever Progress says; junk and overflow are clamped.
        let line = progress_line(&[snap("snap-1", "completed", "")]);
        assert_eq!(line.as_deref(), Some("snap-1 [####################] 100%"));
        let line = progress_line(&[snap("snap-1", "pending", "soon")]);
        assert!(line.is_some_and(|l| l.ends_with("]   0%")));
        let line = progress_line(&[snap("snap-1", "pending", "250%")]);
        assert!(line.is_some_and(|l| l.ends_with("] 100%")));
    }

    #[test]
    fn progress_line_of_several_snapshots_is_their_mean() {
        let line = progress_line(&[
            snap("snap-1", "completed", "100%"),
            snap("snap-2", "pending", "50%"),
            snap("snap-3", "pending", "0%"),
        ]);
        assert_eq!(
            line.as_deref(),
            Some("3 snapshots [##########----------]  50%")
        );
    }

    #[test]
    fn no_progress_line_without_snapshots() {
        assert_eq!(progress_line(&[]), None);
        let volume = Seen {
            id: "vol-1".into(),
            state: "creating".into(),
            progress: None,
        };
        assert_eq!(progress_line(&[volume]), None);
    }

    #[test]
    fn bar_redraws_in_place_and_ends_its_line() {
        let mut out = Vec::new();
        let mut bar = Bar {
            out: Some(&mut out),
            shown: 0,
        };
        bar.draw(&[
            snap("snap-1", "pending", "5%"),
            snap("snap-2", "pending", "15%"),
        ]);
        bar.draw(&[snap("snap-1", "completed", "100%")]);
        bar.finish();
        let text = String::from_utf8_lossy(&out).into_owned();
        assert_eq!(
            text,
            "\r2 snapshots [##------------------]  10%\
             \rsnap-1 [####################] 100%     \n"
        );

        // Nothing drawn, nothing to end.
        let mut out = Vec::new();
        let mut bar = Bar {
            out: Some(&mut out),
            shown: 0,
        };
        bar.draw(&[]);
        bar.finish();
        assert!(out.is_empty());
    }
}
