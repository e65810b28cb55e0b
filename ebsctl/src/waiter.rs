//! `ebsctl wait volume-available|volume-in-use|volume-deleted`: poll DescribeVolumes like the AWS CLI's waiters.

use std::time::Duration;

use proto::ebs::v1 as pb;

use crate::client::Api;
use crate::error::CliError;

/// The EC2 error code that means "no such volume": success for `volume-deleted`.
const NOT_FOUND: &str = "InvalidVolume.NotFound";

/// The volume waiters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(
    clippy::enum_variant_names,
    reason = "the AWS CLI's waiter names (volume-available, ...); snapshot and instance waiters will follow"
)]
pub enum Kind {
    VolumeAvailable,
    VolumeInUse,
    VolumeDeleted,
}

impl Kind {
    /// The waiter's name in messages, as the AWS CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::VolumeAvailable => "VolumeAvailable",
            Self::VolumeInUse => "VolumeInUse",
            Self::VolumeDeleted => "VolumeDeleted",
        }
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

/// Judges the states of the volumes one DescribeVolumes returned.
pub fn judge(kind: Kind, states: &[&str]) -> Verdict {
    let (wanted, fatal): (&str, &[&str]) = match kind {
        Kind::VolumeAvailable => ("available", &["deleted", "error"]),
        Kind::VolumeInUse => ("in-use", &["deleted", "error"]),
        // Absent volumes are deleted volumes: an empty answer is a success.
        Kind::VolumeDeleted => return verdict(states.iter().all(|s| *s == "deleted")),
    };
    if let Some(state) = states.iter().find(|s| fatal.contains(s)) {
        return Verdict::Failure(format!(
            "Waiter encountered a terminal failure state: For expression \"Volumes[].State\" we matched expected path: \"{state}\" at least once"
        ));
    }
    verdict(!states.is_empty() && states.iter().all(|s| *s == wanted))
}

fn verdict(done: bool) -> Verdict {
    if done {
        Verdict::Success
    } else {
        Verdict::Retry
    }
}

/// Judges a failed DescribeVolumes: only `volume-deleted` accepts "not found"; other errors end the wait.
pub fn judge_error(kind: Kind, error: &CliError) -> Verdict {
    match error {
        CliError::Service { code, .. } if kind == Kind::VolumeDeleted && code == NOT_FOUND => {
            Verdict::Success
        }
        CliError::Service { code, message, .. } => {
            Verdict::Failure(format!("An error occurred ({code}): {message}"))
        }
        _ => Verdict::Failure(error.to_string()),
    }
}

/// Polls every `delay`, at most `max_attempts` times, until `judge` says success or failure.
pub async fn wait(
    api: &mut Api,
    kind: Kind,
    request: pb::DescribeVolumesRequest,
    delay: Duration,
    max_attempts: u32,
) -> Result<(), CliError> {
    for attempt in 1..=max_attempts {
        let verdict = match api.describe_all_volumes(request.clone()).await {
            Ok(volumes) => {
                let states: Vec<&str> = volumes.iter().map(|v| v.state.as_str()).collect();
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
}
