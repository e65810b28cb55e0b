//! Cost Explorer's JSON protocol (`awsJson1_1`, `X-Amz-Target: AWSInsightsIndexService.<Op>`):
//! GetCostAndUsage decoded into a `billing::report::CostQuery`, run on the control plane, the
//! periods encoded as Cost Explorer writes them. Errors are `{"__type", "message"}`.

use http::StatusCode;
use serde_json::{Map, Value, json};

use billing::report::{
    CostQuery, Dimension, Expr, GroupBy, Metric, Metrics, format_amount, format_bound,
};
use billing::usage::Granularity;

use super::ebs::Reply;
use crate::control::{Account, ControlPlane, Ec2Error, ErrorCode};

/// The reply to a failed call.
pub fn error(e: &Ec2Error) -> Reply {
    super::kms::error(e)
}

fn validation(message: impl Into<String>) -> Ec2Error {
    Ec2Error::new(ErrorCode::ValidationException, message)
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
    let (op, input) = super::kms::json_call(target, "AWSInsightsIndexService", body)?;
    match op {
        "GetCostAndUsage" => {
            let q = query(&input)?;
            let periods = cp.cost_and_usage(who, &q)?;
            let results: Vec<Value> = periods
                .iter()
                .map(|p| {
                    json!({
                        "TimePeriod": {
                            "Start": format_bound(q.granularity, p.start_ms),
                            "End": format_bound(q.granularity, p.end_ms),
                        },
                        "Total": metrics(&p.total),
                        "Groups": p.groups.iter().map(|(keys, m)| json!({
                            "Keys": keys,
                            "Metrics": metrics(m),
                        })).collect::<Vec<_>>(),
                        // A period the billing clock has not finished may still grow.
                        "Estimated": p.estimated,
                    })
                })
                .collect();
            let mut out = json!({ "ResultsByTime": results, "DimensionValueAttributes": [] });
            if !q.group_by.is_empty() {
                out["GroupDefinitions"] = Value::Array(
                    q.group_by
                        .iter()
                        .map(|g| match g {
                            GroupBy::Dimension(d) => json!({"Type": "DIMENSION", "Key": d.name()}),
                            GroupBy::Tag(k) => json!({"Type": "TAG", "Key": k}),
                        })
                        .collect(),
                );
            }
            Ok(out)
        }
        _ => Err(Ec2Error::new(
            ErrorCode::UnknownOperationException,
            format!("The operation {op} is not supported by this Cost Explorer."),
        )),
    }
}

fn metrics(m: &Metrics) -> Value {
    Value::Object(
        m.iter()
            .map(|(k, a)| {
                (
                    k.name().to_string(),
                    json!({"Amount": format_amount(a.amount), "Unit": a.unit}),
                )
            })
            .collect(),
    )
}

fn str_of<'a>(v: &'a Value, name: &str) -> Result<&'a str, Ec2Error> {
    v.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| validation(format!("{name} is required and must be a string")))
}

fn strings(v: &Value, name: &str) -> Result<Vec<String>, Ec2Error> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|s| {
                s.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| validation(format!("{name} must be a list of strings")))
            })
            .collect(),
        Some(_) => Err(validation(format!("{name} must be a list of strings"))),
    }
}

fn bad(e: billing::BillingError) -> Ec2Error {
    validation(e.to_string())
}

/// GetCostAndUsage's members as a question.
fn query(input: &Map<String, Value>) -> Result<CostQuery, Ec2Error> {
    let period = input
        .get("TimePeriod")
        .ok_or_else(|| validation("TimePeriod is required"))?;
    let granularity = match input.get("Granularity").and_then(Value::as_str) {
        Some("DAILY") => Granularity::Daily,
        Some("MONTHLY") => Granularity::Monthly,
        Some("HOURLY") => Granularity::Hourly,
        Some(g) => return Err(validation(format!("Invalid Granularity: {g}"))),
        None => return Err(validation("Granularity is required")),
    };
    let start = str_of(period, "Start")?;
    let end = str_of(period, "End")?;
    let (start_ms, end_ms) = (
        billing::calendar::parse(start).map_err(bad)?,
        billing::calendar::parse(end).map_err(bad)?,
    );
    if granularity == Granularity::Hourly && !(start.contains('T') && end.contains('T')) {
        return Err(validation(
            "Hourly granularity needs Start and End in the format yyyy-MM-ddThh:mm:ssZ",
        ));
    }
    let metrics = strings(&Value::Object(input.clone()), "Metrics")?
        .iter()
        .map(|m| Metric::parse(m).map_err(bad))
        .collect::<Result<Vec<_>, _>>()?;
    let group_by = match input.get("GroupBy") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|g| {
                let key = str_of(g, "Key")?;
                match str_of(g, "Type")? {
                    "DIMENSION" => Ok(GroupBy::Dimension(Dimension::parse(key).map_err(bad)?)),
                    "TAG" => Ok(GroupBy::Tag(key.to_string())),
                    t => Err(validation(format!("Unsupported GroupBy Type: {t}"))),
                }
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(validation("GroupBy must be a list")),
    };
    let filter = match input.get("Filter") {
        None | Some(Value::Null) => None,
        Some(f) => Some(expr(f, 0)?),
    };
    Ok(CostQuery {
        start_ms,
        end_ms,
        granularity,
        metrics,
        group_by,
        filter,
    })
}

/// A Filter expression: exactly one of And, Or, Not, Dimensions, Tags.
fn expr(v: &Value, depth: usize) -> Result<Expr, Ec2Error> {
    if depth > 16 {
        return Err(validation("The filter expression is nested too deeply."));
    }
    let Value::Object(m) = v else {
        return Err(validation("A filter expression must be an object."));
    };
    let set: Vec<&String> = m.keys().filter(|k| !m[*k].is_null()).collect();
    let [only] = set.as_slice() else {
        return Err(validation(
            "Expression must have exactly one of And, Or, Not, Dimensions, Tags",
        ));
    };
    let list = |name: &str| -> Result<Vec<Expr>, Ec2Error> {
        let Some(Value::Array(a)) = m.get(name) else {
            return Err(validation(format!("{name} must be a list of expressions")));
        };
        if a.len() < 2 {
            return Err(validation(format!("{name} needs at least two expressions")));
        }
        a.iter().map(|e| expr(e, depth + 1)).collect()
    };
    let v = &m[only.as_str()];
    match only.as_str() {
        "And" => Ok(Expr::And(list("And")?)),
        "Or" => Ok(Expr::Or(list("Or")?)),
        "Not" => Ok(Expr::Not(Box::new(expr(v, depth + 1)?))),
        "Dimensions" => {
            let key = Dimension::parse(str_of(v, "Key")?).map_err(bad)?;
            check_match_options(v)?;
            if strings(v, "MatchOptions")?.iter().any(|o| o == "ABSENT") {
                return Err(validation("ABSENT applies to Tags only"));
            }
            let values = strings(v, "Values")?;
            if values.is_empty() {
                return Err(validation("A Dimensions filter needs Values"));
            }
            Ok(Expr::Dimension(key, values))
        }
        "Tags" => {
            check_match_options(v)?;
            let absent = strings(v, "MatchOptions")?.iter().any(|o| o == "ABSENT");
            let values = if absent {
                Vec::new()
            } else {
                strings(v, "Values")?
            };
            if !absent && values.is_empty() {
                return Err(validation(
                    "A Tags filter needs Values, or MatchOptions ABSENT",
                ));
            }
            Ok(Expr::Tag(str_of(v, "Key")?.to_string(), values))
        }
        other => Err(validation(format!(
            "Unsupported filter expression: {other}"
        ))),
    }
}

/// Only exact matching (EQUALS, the default, and ABSENT for tags) is supported.
fn check_match_options(v: &Value) -> Result<(), Ec2Error> {
    for o in strings(v, "MatchOptions")? {
        if o != "EQUALS" && o != "ABSENT" {
            return Err(validation(format!(
                "MatchOptions {o} is not supported by this Cost Explorer (EQUALS and ABSENT are)."
            )));
        }
    }
    Ok(())
}
