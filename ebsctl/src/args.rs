//! Structured arguments (`--filters`, `--tags`, `--tag-specifications`, `--block-device-mappings`,
//! `--placement`): JSON or shorthand → protobuf messages; and `--user-data`, text or a file, which is
//! sent base64-encoded.
//!
//! Each value of a list flag is either JSON (it starts with `[` or `{` and parses as JSON: a list adds
//! every element, an object adds one) or one element in [shorthand](crate::shorthand). Shorthand
//! values are all strings: as the AWS CLI does, a number or boolean member reads `8` or `true` as
//! the number or boolean.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use proto::ebs::v1 as pb;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::shorthand;

/// A structured argument that could not be read; displays like the AWS CLI's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgError {
    /// The flag, e.g. `--filters`.
    pub flag: &'static str,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Error parsing parameter '{}': {}",
            self.flag, self.message
        )
    }
}

impl std::error::Error for ArgError {}

/// `--filters Name=status,Values=available,in-use` or `[{"Name": "status", "Values": ["available"]}]`.
pub fn filters(raw: &[String]) -> Result<Vec<pb::Filter>, ArgError> {
    let items: Vec<FilterArg> = decode("--filters", raw)?;
    Ok(items
        .into_iter()
        .map(|f| pb::Filter {
            name: f.name,
            values: f.values,
        })
        .collect())
}

/// `--tags Key=a,Value=b` for create-tags: a missing `Value` is the empty string.
pub fn tags(raw: &[String]) -> Result<Vec<pb::Tag>, ArgError> {
    let items: Vec<TagArg> = decode("--tags", raw)?;
    Ok(items.into_iter().map(TagArg::into_proto).collect())
}

/// `--tags Key=a Key=b,Value=c` for delete-tags: a missing `Value` deletes the key whatever its value.
pub fn delete_tags(raw: &[String]) -> Result<Vec<pb::DeleteTag>, ArgError> {
    let items: Vec<DeleteTagArg> = decode("--tags", raw)?;
    Ok(items
        .into_iter()
        .map(|t| pb::DeleteTag {
            key: t.key,
            value: t.value,
        })
        .collect())
}

/// `--tag-specifications 'ResourceType=volume,Tags=[{Key=Name,Value=db}]'` or the JSON equivalent.
pub fn tag_specifications(raw: &[String]) -> Result<Vec<pb::TagSpecification>, ArgError> {
    let items: Vec<TagSpecificationArg> = decode("--tag-specifications", raw)?;
    Ok(items
        .into_iter()
        .map(|s| pb::TagSpecification {
            resource_type: s.resource_type,
            tags: s.tags.into_iter().map(TagArg::into_proto).collect(),
        })
        .collect())
}

/// `--block-device-mappings` (register-image, run-instances), one mapping per element:
/// `DeviceName=/dev/xvda,Ebs={SnapshotId=snap-1,VolumeSize=8}`, `DeviceName=/dev/sdb,VirtualName=ephemeral0`,
/// `DeviceName=/dev/sdc,NoDevice=` or the JSON equivalent (`"NoDevice": ""`).
///
/// Only the syntax is checked here: which of `Ebs`, `VirtualName` and `NoDevice` a mapping has, and
/// whether its values make sense, is the server's to say, as with EC2.
pub fn block_device_mappings(raw: &[String]) -> Result<Vec<pb::BlockDeviceMapping>, ArgError> {
    let items: Vec<BlockDeviceMappingArg> = decode("--block-device-mappings", raw)?;
    Ok(items
        .into_iter()
        .map(|m| pb::BlockDeviceMapping {
            device_name: m.device_name,
            ebs: m.ebs.map(|e| pb::EbsBlockDevice {
                snapshot_id: e.snapshot_id,
                volume_size: e.volume_size,
                volume_type: e.volume_type,
                iops: e.iops,
                throughput: e.throughput,
                delete_on_termination: e.delete_on_termination,
                encrypted: e.encrypted,
            }),
            virtual_name: m.virtual_name,
            no_device: m.no_device,
        })
        .collect())
}

/// `--placement AvailabilityZone=us-east-1a` or `{"AvailabilityZone": "us-east-1a"}` (run-instances):
/// one structure, not a list. A missing `AvailabilityZone` is sent empty: the server picks the zone.
pub fn placement(raw: Option<&str>) -> Result<Option<pb::Placement>, ArgError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let fail = |message: String| ArgError {
        flag: "--placement",
        message,
    };
    let value = read_value(raw).map_err(fail)?;
    let placement: PlacementArg = serde_json::from_value(value).map_err(|e| fail(e.to_string()))?;
    Ok(Some(pb::Placement {
        availability_zone: placement.availability_zone,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct PlacementArg {
    #[serde(default)]
    availability_zone: String,
}

/// `--user-data` (run-instances): the text itself, or the contents of `file://PATH` (or
/// `fileb://PATH`), base64-encoded as the AWS CLI sends it.
pub fn user_data(raw: &str) -> Result<String, ArgError> {
    let path = raw
        .strip_prefix("file://")
        .or_else(|| raw.strip_prefix("fileb://"));
    let bytes = match path {
        Some(path) => std::fs::read(path).map_err(|e| ArgError {
            flag: "--user-data",
            message: format!("Unable to load paramfile {raw}: {e}"),
        })?,
        None => raw.as_bytes().to_vec(),
    };
    Ok(B64.encode(bytes))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct BlockDeviceMappingArg {
    device_name: String,
    ebs: Option<EbsBlockDeviceArg>,
    virtual_name: Option<String>,
    no_device: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct EbsBlockDeviceArg {
    snapshot_id: Option<String>,
    #[serde(default, deserialize_with = "integer")]
    volume_size: Option<i32>,
    volume_type: Option<String>,
    #[serde(default, deserialize_with = "integer")]
    iops: Option<i32>,
    #[serde(default, deserialize_with = "integer")]
    throughput: Option<i32>,
    #[serde(default, deserialize_with = "boolean")]
    delete_on_termination: Option<bool>,
    #[serde(default, deserialize_with = "boolean")]
    encrypted: Option<bool>,
}

/// An integer member: a JSON number, or the string shorthand gives (`VolumeSize=8`).
fn integer<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i32>, D::Error> {
    let value = Value::deserialize(deserializer)?;
    let parsed = match &value {
        Value::Null => return Ok(None),
        Value::Number(n) => n.as_i64().and_then(|n| i32::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    parsed
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("expected an integer, received {value}")))
}

/// A boolean member: JSON `true`/`false`, or the string shorthand gives, in any case
/// (`DeleteOnTermination=true`).
fn boolean<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<bool>, D::Error> {
    let value = Value::deserialize(deserializer)?;
    match &value {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Ok(Some(true)),
        Value::String(s) if s.trim().eq_ignore_ascii_case("false") => Ok(Some(false)),
        _ => Err(D::Error::custom(format!(
            "expected true or false, received {value}"
        ))),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct FilterArg {
    name: String,
    #[serde(default, deserialize_with = "one_or_many")]
    values: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct TagArg {
    key: String,
    #[serde(default)]
    value: String,
}

impl TagArg {
    fn into_proto(self) -> pb::Tag {
        pb::Tag {
            key: self.key,
            value: self.value,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct DeleteTagArg {
    key: String,
    value: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct TagSpecificationArg {
    resource_type: String,
    #[serde(default, deserialize_with = "one_or_many")]
    tags: Vec<TagArg>,
}

/// Reads a list field that shorthand may give as a single value (`Values=available`).
fn one_or_many<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    let items = match Value::deserialize(deserializer)? {
        Value::Array(items) => items,
        one => vec![one],
    };
    items
        .into_iter()
        .map(|item| serde_json::from_value(item).map_err(D::Error::custom))
        .collect()
}

/// Turns every value of a list flag into elements, then each element into a `T`.
fn decode<T: DeserializeOwned>(flag: &'static str, raw: &[String]) -> Result<Vec<T>, ArgError> {
    let fail = |message: String| ArgError { flag, message };
    let mut elements = Vec::new();
    for arg in raw {
        match read_value(arg).map_err(fail)? {
            Value::Array(items) => elements.extend(items),
            one => elements.push(one),
        }
    }
    elements
        .into_iter()
        .enumerate()
        .map(|(i, element)| {
            serde_json::from_value(element).map_err(|e| fail(format!("element {}: {e}", i + 1)))
        })
        .collect()
}

/// One value of a structured flag: JSON when it looks and parses like JSON, shorthand
/// otherwise; `file://PATH` reads either from a file, as the AWS CLI does.
fn read_value(arg: &str) -> Result<Value, String> {
    match arg.strip_prefix("file://") {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("Unable to load paramfile {arg}: {e}"))?;
            parse_value(text.trim())
        }
        None => parse_value(arg),
    }
}

fn parse_value(arg: &str) -> Result<Value, String> {
    let looks_like_json = matches!(arg.trim_start().chars().next(), Some('[' | '{'));
    if !looks_like_json {
        return shorthand::parse(arg)
            .map(Value::Object)
            .map_err(|e| e.to_string());
    }
    serde_json::from_str(arg).or_else(|json_error| {
        shorthand::parse(arg)
            .map(Value::Object)
            .map_err(|_| format!("Invalid JSON: {json_error}\nJSON received: {arg}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structured_flags_read_file_urls() {
        let dir = std::env::temp_dir().join(format!("ebsctl-paramfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let json = dir.join("bdm.json");
        std::fs::write(
            &json,
            r#"[{"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 10}},
                {"DeviceName": "/dev/sdg", "VirtualName": "ephemeral0"}]
"#,
        )
        .unwrap();
        let shorthand = dir.join("bdm.txt");
        std::fs::write(&shorthand, "DeviceName=/dev/sdh,Ebs={VolumeSize=5}\n").unwrap();
        let mut all = vec![];
        for path in [&json, &shorthand] {
            match read_value(&format!("file://{}", path.display())).unwrap() {
                Value::Array(items) => all.extend(items),
                one => all.push(one),
            }
        }
        let devices: Vec<&str> = all
            .iter()
            .filter_map(|v| v["DeviceName"].as_str())
            .collect();
        assert_eq!(devices, ["/dev/sdf", "/dev/sdg", "/dev/sdh"]);
        let missing = read_value("file:///nonexistent/x.json").unwrap_err();
        assert!(
            missing.starts_with("Unable to load paramfile file:///nonexistent/x.json"),
            "{missing}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn filter(name: &str, values: &[&str]) -> pb::Filter {
        pb::Filter {
            name: name.to_owned(),
            values: strings(values),
        }
    }

    fn tag(key: &str, value: &str) -> pb::Tag {
        pb::Tag {
            key: key.to_owned(),
            value: value.to_owned(),
        }
    }

    #[test]
    fn filters_from_shorthand_one_per_value() {
        let got = filters(&strings(&[
            "Name=status,Values=available,in-use",
            "Name=tag:Env,Values=prod",
        ]));
        assert_eq!(
            got,
            Ok(vec![
                filter("status", &["available", "in-use"]),
                filter("tag:Env", &["prod"]),
            ])
        );
    }

    #[test]
    fn filters_from_json_list_and_object() {
        let got = filters(&strings(&[
            r#"[{"Name":"status","Values":["available"]}, {"Name":"volume-type","Values":["gp3","io2"]}]"#,
            r#"{"Name":"size","Values":["8"]}"#,
        ]));
        assert_eq!(
            got,
            Ok(vec![
                filter("status", &["available"]),
                filter("volume-type", &["gp3", "io2"]),
                filter("size", &["8"]),
            ])
        );
    }

    #[test]
    fn tags_from_shorthand_and_json() {
        assert_eq!(
            tags(&strings(&["Key=a,Value=b", "Key=c,Value=d", "Key=e"])),
            Ok(vec![tag("a", "b"), tag("c", "d"), tag("e", "")])
        );
        assert_eq!(
            tags(&strings(&[r#"[{"Key":"a","Value":"b"}]"#])),
            Ok(vec![tag("a", "b")])
        );
    }

    #[test]
    fn delete_tags_keep_a_missing_value_absent() {
        assert_eq!(
            delete_tags(&strings(&["Key=a", "Key=b,Value=c", "Key=d,Value="])),
            Ok(vec![
                pb::DeleteTag {
                    key: "a".into(),
                    value: None
                },
                pb::DeleteTag {
                    key: "b".into(),
                    value: Some("c".into())
                },
                pb::DeleteTag {
                    key: "d".into(),
                    value: Some(String::new())
                },
            ])
        );
    }

    #[test]
    fn tag_specifications_from_shorthand_and_json() {
        let want = vec![pb::TagSpecification {
            resource_type: "volume".into(),
            tags: vec![tag("Name", "db"), tag("env", "prod")],
        }];
        assert_eq!(
            tag_specifications(&strings(&[
                "ResourceType=volume,Tags=[{Key=Name,Value=db},{Key=env,Value=prod}]"
            ])),
            Ok(want.clone())
        );
        assert_eq!(
            tag_specifications(&strings(&[
                r#"[{"ResourceType":"volume","Tags":[{"Key":"Name","Value":"db"},{"Key":"env","Value":"prod"}]}]"#
            ])),
            Ok(want)
        );
        assert_eq!(
            tag_specifications(&strings(&["ResourceType=instance,Tags={Key=a,Value=b}"])),
            Ok(vec![pb::TagSpecification {
                resource_type: "instance".into(),
                tags: vec![tag("a", "b")],
            }])
        );
    }

    fn ebs_mapping(device: &str, ebs: pb::EbsBlockDevice) -> pb::BlockDeviceMapping {
        pb::BlockDeviceMapping {
            device_name: device.to_owned(),
            ebs: Some(ebs),
            virtual_name: None,
            no_device: None,
        }
    }

    /// The brief's three kinds of mapping: EBS with every member, instance store, suppressed.
    fn three_mappings() -> Vec<pb::BlockDeviceMapping> {
        vec![
            ebs_mapping(
                "/dev/xvda",
                pb::EbsBlockDevice {
                    snapshot_id: Some("snap-0123456789abcdef0".into()),
                    volume_size: Some(8),
                    volume_type: Some("gp3".into()),
                    iops: Some(3000),
                    throughput: Some(125),
                    delete_on_termination: Some(true),
                    encrypted: Some(false),
                },
            ),
            pb::BlockDeviceMapping {
                device_name: "/dev/sdb".into(),
                ebs: None,
                virtual_name: Some("ephemeral0".into()),
                no_device: None,
            },
            pb::BlockDeviceMapping {
                device_name: "/dev/sdc".into(),
                ebs: None,
                virtual_name: None,
                no_device: Some(String::new()),
            },
        ]
    }

    #[test]
    fn block_device_mappings_from_json() {
        let got = block_device_mappings(&strings(&[
            r#"[{"DeviceName":"/dev/xvda","Ebs":{"SnapshotId":"snap-0123456789abcdef0","VolumeSize":8,"VolumeType":"gp3","Iops":3000,"Throughput":125,"DeleteOnTermination":true,"Encrypted":false}},{"DeviceName":"/dev/sdb","VirtualName":"ephemeral0"},{"DeviceName":"/dev/sdc","NoDevice":""}]"#,
        ]));
        assert_eq!(got, Ok(three_mappings()));
    }

    #[test]
    fn block_device_mappings_from_shorthand_one_per_value() {
        let got = block_device_mappings(&strings(&[
            "DeviceName=/dev/xvda,Ebs={SnapshotId=snap-0123456789abcdef0,VolumeSize=8,VolumeType=gp3,Iops=3000,Throughput=125,DeleteOnTermination=true,Encrypted=False}",
            "DeviceName=/dev/sdb,VirtualName=ephemeral0",
            "DeviceName=/dev/sdc,NoDevice=",
        ]));
        assert_eq!(got, Ok(three_mappings()));

        // Quoted empty NoDevice (the shell kept the quotes), members in any order, spaces.
        let got = block_device_mappings(&strings(&[
            r#"Ebs={ VolumeSize = 8 , SnapshotId = snap-1 }, DeviceName = /dev/xvda"#,
            r#"DeviceName=/dev/sdc,NoDevice="""#,
        ]));
        assert_eq!(
            got,
            Ok(vec![
                ebs_mapping(
                    "/dev/xvda",
                    pb::EbsBlockDevice {
                        snapshot_id: Some("snap-1".into()),
                        volume_size: Some(8),
                        ..pb::EbsBlockDevice::default()
                    },
                ),
                three_mappings().remove(2),
            ])
        );
    }

    #[test]
    fn block_device_mappings_mix_json_and_shorthand_and_leave_absent_members_out() {
        let got = block_device_mappings(&strings(&[
            r#"{"DeviceName":"/dev/sdf","Ebs":{"VolumeSize":100}}"#,
            "DeviceName=/dev/sdg,Ebs={VolumeSize=20,VolumeType=io2,Iops=4000}",
        ]));
        assert_eq!(
            got,
            Ok(vec![
                ebs_mapping(
                    "/dev/sdf",
                    pb::EbsBlockDevice {
                        volume_size: Some(100),
                        ..pb::EbsBlockDevice::default()
                    },
                ),
                ebs_mapping(
                    "/dev/sdg",
                    pb::EbsBlockDevice {
                        volume_size: Some(20),
                        volume_type: Some("io2".into()),
                        iops: Some(4000),
                        ..pb::EbsBlockDevice::default()
                    },
                ),
            ])
        );
        // An empty Ebs is passed on as such: the server says what it lacks.
        assert_eq!(
            block_device_mappings(&strings(&["DeviceName=/dev/sdh,Ebs={}"])),
            Ok(vec![ebs_mapping("/dev/sdh", pb::EbsBlockDevice::default())])
        );
    }

    #[test]
    fn block_device_mapping_errors_name_the_flag_and_the_problem() {
        let message = |raw: &str| match block_device_mappings(&strings(&[raw])) {
            Ok(got) => panic!("{raw:?} parsed as {got:?}"),
            Err(e) => {
                assert_eq!(e.flag, "--block-device-mappings");
                e.message
            }
        };
        let m = message("DeviceName=/dev/xvda,Ebs={VolumeSize=big}");
        assert!(m.contains(r#"expected an integer, received "big""#), "{m}");
        let m = message(r#"{"DeviceName":"/dev/xvda","Ebs":{"VolumeSize":8.5}}"#);
        assert!(m.contains("expected an integer, received 8.5"), "{m}");
        let m = message("DeviceName=/dev/xvda,Ebs={VolumeSize=99999999999}");
        assert!(m.contains("expected an integer"), "{m}");
        let m = message("DeviceName=/dev/xvda,Ebs={DeleteOnTermination=yes}");
        assert!(
            m.contains(r#"expected true or false, received "yes""#),
            "{m}"
        );
        let m = message("DeviceName=/dev/xvda,Ebs={KmsKeyId=k}");
        assert!(m.contains("unknown field `KmsKeyId`"), "{m}");
        let m = message("Ebs={SnapshotId=snap-1}");
        assert!(m.contains("missing field `DeviceName`"), "{m}");
        let m = message("DeviceName=/dev/xvda,Ebs={SnapshotId=snap-1");
        assert!(m.starts_with("Expected: '}', received: 'EOF'"), "{m}");
    }

    #[test]
    fn placement_from_shorthand_and_json() {
        let zone = |az: &str| {
            Ok(Some(pb::Placement {
                availability_zone: az.to_owned(),
            }))
        };
        assert_eq!(placement(None), Ok(None));
        assert_eq!(
            placement(Some("AvailabilityZone=us-east-1b")),
            zone("us-east-1b")
        );
        assert_eq!(
            placement(Some(r#"{"AvailabilityZone": "us-east-1c"}"#)),
            zone("us-east-1c")
        );
        // No zone: the server picks one.
        assert_eq!(placement(Some("{}")), zone(""));

        let e = placement(Some("AvailabilityZone=us-east-1a,Tenancy=dedicated")).unwrap_err();
        assert_eq!(e.flag, "--placement");
        assert!(
            e.message.contains("unknown field `Tenancy`"),
            "{}",
            e.message
        );
        let e = placement(Some(r#"[{"AvailabilityZone": "us-east-1a"}]"#)).unwrap_err();
        assert!(e.message.contains("invalid type"), "{}", e.message);
        let e = placement(Some("AvailabilityZone")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("Error parsing parameter '--placement': Expected: '='"),
            "{e}"
        );
    }

    #[test]
    fn user_data_is_base64_of_the_text_or_the_file() {
        assert_eq!(
            user_data("#!/bin/sh\necho hi\n"),
            Ok("IyEvYmluL3NoCmVjaG8gaGkK".to_owned())
        );
        assert_eq!(user_data(""), Ok(String::new()));

        let dir = std::env::temp_dir().join(format!("ebsctl-user-data-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let file = dir.join("boot.sh");
        if let Err(e) = std::fs::write(&file, b"echo \xff\n") {
            panic!("{e}");
        }
        let path = file.display().to_string();
        assert_eq!(
            user_data(&format!("file://{path}")),
            Ok("ZWNobyD/Cg==".to_owned())
        );
        assert_eq!(
            user_data(&format!("fileb://{path}")),
            Ok("ZWNobyD/Cg==".to_owned())
        );
        let _ = std::fs::remove_dir_all(&dir);

        let e = user_data(&format!("file://{path}")).unwrap_err();
        assert_eq!(e.flag, "--user-data");
        assert!(
            e.message
                .starts_with(&format!("Unable to load paramfile file://{path}: ")),
            "{}",
            e.message
        );
    }

    #[test]
    fn errors_name_the_flag_and_the_problem() {
        let e = filters(&strings(&["Name=status,Valuez=a"])).unwrap_err();
        assert_eq!(e.flag, "--filters");
        assert!(
            e.message.contains("unknown field `Valuez`"),
            "{}",
            e.message
        );
        assert!(
            e.to_string()
                .starts_with("Error parsing parameter '--filters': element 1: ")
        );

        let e = tags(&strings(&["Value=b"])).unwrap_err();
        assert!(e.message.contains("missing field `Key`"), "{}", e.message);

        let e = filters(&strings(&["Name"])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Error parsing parameter '--filters': Expected: '=', received: 'EOF' for input:\nName\n    ^"
        );

        let e = filters(&strings(&[r#"[{"Name": "status""#])).unwrap_err();
        assert!(e.message.starts_with("Invalid JSON: "), "{}", e.message);
    }
}
