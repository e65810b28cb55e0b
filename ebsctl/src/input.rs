//! `--cli-input-json`: a command's parameters as one JSON object of the operation's input
//! members, as the AWS CLI takes them. Each member becomes the flag the AWS CLI names it with
//! (`VolumeIds` → `--volume-ids`, `DryRun` → `--dry-run`), appended to the command line unless
//! the command line gives that flag already; then the command line is parsed again.

use clap::CommandFactory as _;
use serde_json::Value;

use crate::args::ArgError;
use crate::cli::Cli;

const FLAG: &str = "--cli-input-json";

/// The value of `--cli-input-json` on the command line `args`, if it is there.
pub fn find(args: &[String]) -> Option<String> {
    args.iter().enumerate().find_map(|(i, a)| {
        if a == FLAG {
            args.get(i + 1).cloned()
        } else {
            a.strip_prefix(FLAG)
                .and_then(|r| r.strip_prefix('='))
                .map(str::to_owned)
        }
    })
}

/// The subcommand of the command line `args`: its first word that names one.
pub fn command_of(args: &[String]) -> Option<String> {
    let cli = Cli::command();
    args.iter()
        .skip(1)
        .find(|a| cli.find_subcommand(a.as_str()).is_some())
        .cloned()
}

/// `args` (the whole command line, program name first) with the members of `raw` (JSON, or
/// `file://PATH` holding it) that it lacks appended as flags of `command`.
pub fn expand(args: &[String], command: &str, raw: &str) -> Result<Vec<String>, ArgError> {
    let fail = |message: String| ArgError {
        flag: FLAG,
        message,
    };
    let text = match raw.strip_prefix("file://") {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| fail(format!("Unable to load paramfile {raw}: {e}")))?,
        None => raw.to_owned(),
    };
    let members = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return Err(fail("the input must be a JSON object".to_owned())),
        Err(e) => return Err(fail(format!("Invalid JSON: {e}"))),
    };
    let cli = Cli::command();
    let sub = cli
        .find_subcommand(command)
        .ok_or_else(|| fail(format!("the command {command} takes no input")))?;
    // The flags the command accepts: its own and the global ones.
    let longs: Vec<&str> = sub
        .get_arguments()
        .chain(cli.get_arguments())
        .filter_map(|a| a.get_long())
        .collect();
    let given = |flag: &str| {
        args.iter().any(|a| {
            a.strip_prefix("--")
                .map(|a| a.split_once('=').map_or(a, |(name, _)| name))
                .is_some_and(|name| name == flag || name.strip_prefix("no-") == Some(flag))
        })
    };
    let mut out = args.to_vec();
    for (member, value) in members {
        let flag = kebab(&member);
        if !longs.contains(&flag.as_str()) {
            let mut known: Vec<String> = sub
                .get_arguments()
                .filter_map(|a| a.get_long())
                .filter(|l| !l.starts_with("no-"))
                .map(pascal)
                .collect();
            known.sort();
            return Err(fail(format!(
                "Unknown parameter in input: \"{member}\", must be one of: {}",
                known.join(", ")
            )));
        }
        if given(&flag) {
            continue;
        }
        match value {
            Value::Null => {}
            Value::Bool(true) => out.push(format!("--{flag}")),
            Value::Bool(false) => {
                let negated = format!("no-{flag}");
                if longs.contains(&negated.as_str()) {
                    out.push(format!("--{negated}"));
                }
            }
            Value::String(s) => out.extend([format!("--{flag}"), s]),
            Value::Number(n) => out.extend([format!("--{flag}"), n.to_string()]),
            Value::Array(items) if items.iter().all(|i| i.is_string() || i.is_number()) => {
                out.push(format!("--{flag}"));
                out.extend(items.iter().map(|i| match i {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                }));
            }
            // Structures and lists of them: the flag takes JSON.
            structured => out.extend([format!("--{flag}"), structured.to_string()]),
        }
    }
    Ok(out)
}

/// `VolumeIds` → `volume-ids`, `Ipv6AddressCount` → `ipv6-address-count`, `KmsKeyId` →
/// `kms-key-id`: a dash before each capital that follows a lower-case letter or digit.
fn kebab(member: &str) -> String {
    let mut out = String::new();
    let mut prev: Option<char> = None;
    for c in member.chars() {
        if c.is_ascii_uppercase()
            && prev.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit())
        {
            out.push('-');
        }
        out.push(c.to_ascii_lowercase());
        prev = Some(c);
    }
    out
}

/// `volume-ids` → `VolumeIds`: the member a flag stands for.
fn pascal(flag: &str) -> String {
    flag.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn members_become_the_aws_clis_flags() {
        assert_eq!(kebab("VolumeIds"), "volume-ids");
        assert_eq!(kebab("DryRun"), "dry-run");
        assert_eq!(kebab("Ipv6AddressCount"), "ipv6-address-count");
        assert_eq!(pascal("max-results"), "MaxResults");
        let line = args(&["ebsctl", "create-volume", "--size", "8"]);
        let out = expand(
            &line,
            "create-volume",
            r#"{"AvailabilityZone": "us-east-1a", "Size": 100, "Encrypted": false,
                "MultiAttachEnabled": true, "DryRun": true,
                "TagSpecifications": [{"ResourceType": "volume", "Tags": [{"Key": "a", "Value": "b"}]}]}"#,
        )
        .unwrap();
        let tail = &out[line.len()..];
        // The command line's --size wins; false without a --no- flag is left out.
        assert!(!tail.contains(&"--size".to_string()), "{tail:?}");
        assert!(
            tail.windows(2)
                .any(|w| w == ["--availability-zone", "us-east-1a"]),
            "{tail:?}"
        );
        assert!(
            tail.contains(&"--multi-attach-enabled".to_string()),
            "{tail:?}"
        );
        assert!(tail.contains(&"--dry-run".to_string()), "{tail:?}");
        let i = tail
            .iter()
            .position(|a| a == "--tag-specifications")
            .unwrap();
        assert!(tail[i + 1].starts_with("[{"), "{tail:?}");
        assert_eq!(
            find(&args(&["e", "x", "--cli-input-json", "{}"])).as_deref(),
            Some("{}")
        );
        assert_eq!(
            find(&args(&["e", "--cli-input-json={}"])).as_deref(),
            Some("{}")
        );
        assert_eq!(
            command_of(&args(&["e", "--output", "text", "describe-volumes"])).as_deref(),
            Some("describe-volumes")
        );
        let ids = expand(
            &args(&["ebsctl", "describe-volumes"]),
            "describe-volumes",
            r#"{"VolumeIds": ["vol-1", "vol-2"]}"#,
        )
        .unwrap();
        assert_eq!(&ids[2..], ["--volume-ids", "vol-1", "vol-2"]);
    }

    #[test]
    fn bad_input_is_refused_clearly() {
        let line = args(&["ebsctl", "delete-volume"]);
        let unknown = expand(
            &line,
            "delete-volume",
            r#"{"VolumeId": "vol-1", "Colour": "red"}"#,
        )
        .unwrap_err();
        assert!(
            unknown
                .message
                .contains("Unknown parameter in input: \"Colour\""),
            "{unknown}"
        );
        assert!(unknown.message.contains("VolumeId"), "{unknown}");
        assert!(expand(&line, "delete-volume", "[1]").is_err());
        assert!(expand(&line, "delete-volume", "{").is_err());
        assert!(
            expand(&line, "delete-volume", "file:///nonexistent/x.json")
                .unwrap_err()
                .message
                .contains("Unable to load paramfile")
        );
    }
}
