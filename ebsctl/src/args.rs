//! Structured arguments (`--filters`, `--tags`, `--tag-specifications`): JSON or shorthand → protobuf messages.
//!
//! Each value of a list flag is either JSON (it starts with `[` or `{` and parses as JSON: a list adds
//! every element, an object adds one) or one element in [shorthand](crate::shorthand).

use std::fmt;

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

/// One value of a list flag: JSON when it looks and parses like JSON, shorthand otherwise.
fn read_value(arg: &str) -> Result<Value, String> {
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
