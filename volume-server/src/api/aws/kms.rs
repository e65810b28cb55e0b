//! The KMS JSON protocol (`awsJson1_1`, `X-Amz-Target: TrentService.<Operation>`): decodes each
//! request, runs it on `control::kms`, encodes the reply. Errors are `{"__type", "message"}`
//! with the status of their code (400 for every client fault, as KMS answers).

use http::StatusCode;
use serde_json::{Map, Value, json};

use super::ebs::Reply;
use crate::control::kms::KeyView;
use crate::control::{Account, ControlPlane, Ec2Error, ErrorCode};

/// The JSON protocol's content type.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// The reply to a failed call.
pub fn error(e: &Ec2Error) -> Reply {
    super::ebs::json_error(
        e,
        json!({ "__type": e.code.as_str(), "message": e.message }),
    )
}

fn validation(message: impl Into<String>) -> Ec2Error {
    Ec2Error::new(ErrorCode::ValidationException, message)
}

/// Epoch seconds with milliseconds, as the JSON protocols write timestamps.
fn epoch(ms: u64) -> Value {
    json!(ms as f64 / 1000.0)
}

/// A request's members.
struct Input(Map<String, Value>);

impl Input {
    fn str(&self, name: &str) -> Result<Option<&str>, Ec2Error> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(validation(format!("{name} must be a string"))),
        }
    }

    fn required(&self, name: &str) -> Result<&str, Ec2Error> {
        self.str(name)?.ok_or_else(|| {
            validation(format!(
                "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
                lower_first(name)
            ))
        })
    }

    fn int(&self, name: &str) -> Result<Option<i64>, Ec2Error> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| validation(format!("{name} must be an integer"))),
        }
    }

    fn bool(&self, name: &str) -> Result<Option<bool>, Ec2Error> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| validation(format!("{name} must be a boolean"))),
        }
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_ascii_lowercase().to_string() + c.as_str())
        .unwrap_or_default()
}

fn key_metadata(k: &KeyView) -> Value {
    let r = &k.record;
    let mut m = json!({
        "AWSAccountId": r.owner_id,
        "KeyId": r.key_id,
        "Arn": k.arn,
        "CreationDate": epoch(r.creation_ms),
        "Enabled": r.state == crate::catalog::KmsKeyState::Enabled,
        "Description": r.description,
        "KeyUsage": "ENCRYPT_DECRYPT",
        "KeyState": r.state.as_str(),
        "Origin": "AWS_KMS",
        "KeyManager": if r.aws_managed { "AWS" } else { "CUSTOMER" },
        "CustomerMasterKeySpec": "SYMMETRIC_DEFAULT",
        "KeySpec": "SYMMETRIC_DEFAULT",
        "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"],
        "MultiRegion": false,
    });
    if let Some(d) = r.deletion_ms {
        m["DeletionDate"] = epoch(d);
    }
    if let Some(n) = r.pending_window_days {
        m["PendingDeletionWindowInDays"] = json!(n);
    }
    m
}

/// `Limit` (1–1000, default 100) and `Marker` (an offset this server handed out).
fn page(input: &Input) -> Result<(usize, usize), Ec2Error> {
    let limit = input.int("Limit")?.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(validation(format!(
            "1 validation error detected: Value '{limit}' at 'limit' failed to satisfy constraint: Member must have value between 1 and 1000"
        )));
    }
    let start = match input.str("Marker")? {
        None => 0,
        Some(m) => m.parse::<usize>().map_err(|_| {
            Ec2Error::new(
                ErrorCode::InvalidMarkerException,
                "The Marker is not valid.",
            )
        })?,
    };
    Ok((start, limit as usize))
}

/// `InvalidMarkerException` for a marker past the end of `len` items.
fn check_marker(start: usize, len: usize) -> Result<(), Ec2Error> {
    if start > len {
        return Err(Ec2Error::new(
            ErrorCode::InvalidMarkerException,
            "The Marker is not valid.",
        ));
    }
    Ok(())
}

/// One page of `items` as `field`, with `Truncated` and `NextMarker`.
fn paged(field: &str, items: Vec<Value>, start: usize, limit: usize) -> Value {
    let end = start.saturating_add(limit).min(items.len());
    let truncated = end < items.len();
    let mut out = json!({ "Truncated": truncated });
    out[field] = Value::Array(items.into_iter().skip(start).take(limit).collect());
    if truncated {
        out["NextMarker"] = json!(end.to_string());
    }
    out
}

/// A JSON 1.1 call: the operation `X-Amz-Target` names under `prefix` (`TrentService`,
/// `AWSInsightsIndexService`), and the body's members (an empty body is `{}`).
pub(super) fn json_call<'a>(
    target: Option<&'a str>,
    prefix: &str,
    body: &[u8],
) -> Result<(&'a str, Map<String, Value>), Ec2Error> {
    let op = target
        .and_then(|t| t.strip_prefix(prefix))
        .and_then(|t| t.strip_prefix('.'))
        .ok_or_else(|| {
            Ec2Error::new(
                ErrorCode::UnknownOperationException,
                format!("The X-Amz-Target header must name a {prefix} operation."),
            )
        })?;
    Ok((op, json_body(body)?))
}

/// A JSON request body's members (an empty body is `{}`).
pub(super) fn json_body(body: &[u8]) -> Result<Map<String, Value>, Ec2Error> {
    match serde_json::from_slice::<Value>(if body.is_empty() { b"{}" } else { body }) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(validation("The request body is not a JSON object.")),
    }
}

/// Runs the operation `target` names on `cp` for `who`.
pub fn handle(cp: &ControlPlane, who: Account, target: Option<&str>, body: &[u8]) -> Reply {
    match run(cp, who, target, body) {
        Ok(v) => Reply::json(StatusCode::OK, v),
        Err(e) => error(&e),
    }
}

fn run(
    cp: &ControlPlane,
    who: Account,
    target: Option<&str>,
    body: &[u8],
) -> Result<Value, Ec2Error> {
    let (op, input) = json_call(target, "TrentService", body)?;
    let input = Input(input);
    match op {
        "CreateKey" => {
            if input.bool("MultiRegion")? == Some(true) {
                return Err(Ec2Error::new(
                    ErrorCode::UnsupportedOperationException,
                    "Multi-Region keys are not supported by this KMS.",
                ));
            }
            let spec = match input.str("KeySpec")? {
                Some(s) => Some(s),
                None => input.str("CustomerMasterKeySpec")?,
            };
            let tags = match input.0.get("Tags") {
                None | Some(Value::Null) => vec![],
                Some(Value::Array(tags)) => tags
                    .iter()
                    .map(|t| {
                        let k = t.get("TagKey").and_then(Value::as_str);
                        let v = t.get("TagValue").and_then(Value::as_str);
                        match (k, v) {
                            (Some(k), Some(v)) => Ok((k.to_string(), v.to_string())),
                            _ => Err(validation("Each tag needs a TagKey and a TagValue.")),
                        }
                    })
                    .collect::<Result<_, _>>()?,
                Some(_) => return Err(validation("Tags must be a list.")),
            };
            let k = cp.kms_create_key(
                who,
                input.str("Description")?.unwrap_or(""),
                input.str("KeyUsage")?,
                spec,
                input.str("Origin")?,
                tags,
            )?;
            Ok(json!({ "KeyMetadata": key_metadata(&k) }))
        }
        "DescribeKey" => {
            let k = cp.kms_describe_key(who, input.required("KeyId")?)?;
            Ok(json!({ "KeyMetadata": key_metadata(&k) }))
        }
        "ListKeys" => {
            let (start, limit) = page(&input)?;
            let keys = cp
                .kms_list_keys(who)
                .iter()
                .map(|k| json!({ "KeyId": k.record.key_id, "KeyArn": k.arn }))
                .collect::<Vec<_>>();
            check_marker(start, keys.len())?;
            Ok(paged("Keys", keys, start, limit))
        }
        "EnableKey" | "DisableKey" => {
            cp.kms_set_enabled(who, input.required("KeyId")?, op == "EnableKey")?;
            Ok(json!({}))
        }
        "ScheduleKeyDeletion" => {
            let k = cp.kms_schedule_deletion(
                who,
                input.required("KeyId")?,
                input.int("PendingWindowInDays")?,
            )?;
            Ok(json!({
                "KeyId": k.arn,
                "DeletionDate": epoch(k.record.deletion_ms.unwrap_or_default()),
                "KeyState": k.record.state.as_str(),
                "PendingWindowInDays": k.record.pending_window_days,
            }))
        }
        "CancelKeyDeletion" => {
            let k = cp.kms_cancel_deletion(who, input.required("KeyId")?)?;
            Ok(json!({ "KeyId": k.arn }))
        }
        "CreateAlias" => {
            cp.kms_create_alias(
                who,
                input.required("AliasName")?,
                input.required("TargetKeyId")?,
            )?;
            Ok(json!({}))
        }
        "DeleteAlias" => {
            cp.kms_delete_alias(who, input.required("AliasName")?)?;
            Ok(json!({}))
        }
        "ListAliases" => {
            let (start, limit) = page(&input)?;
            let aliases = cp
                .kms_list_aliases(who, input.str("KeyId")?)?
                .iter()
                .map(|a| {
                    json!({
                        "AliasName": a.record.alias_name,
                        "AliasArn": a.arn,
                        "TargetKeyId": a.record.target_key_id,
                        "CreationDate": epoch(a.record.creation_ms),
                        "LastUpdatedDate": epoch(a.record.creation_ms),
                    })
                })
                .collect::<Vec<_>>();
            check_marker(start, aliases.len())?;
            Ok(paged("Aliases", aliases, start, limit))
        }
        other => Err(Ec2Error::new(
            ErrorCode::UnknownOperationException,
            format!("The operation {other} is not served by this KMS."),
        )),
    }
}
