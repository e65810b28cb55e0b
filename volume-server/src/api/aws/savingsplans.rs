//! The Savings Plans API (REST-JSON, `POST /<Operation>`, signed for `savingsplans`):
//! DescribeSavingsPlansOfferings, CreateSavingsPlan and DescribeSavingsPlans on
//! `control::commitments`. Errors are `{"message"}` with `x-amzn-ErrorType` and the model's
//! status (ValidationException 400, ResourceNotFoundException 404).

use http::{Method, StatusCode};
use serde_json::{Map, Value, json};

use super::ebs::Reply;
use crate::api::format_time as time;
use crate::control::commitments::SpOffering;
use crate::control::{Account, ControlPlane, Ec2Error, ErrorCode};
use billing::commitments::{Payment, PlanType};

/// The reply to a failed call.
pub fn error(e: &Ec2Error) -> Reply {
    super::ebs::json_error(e, json!({ "message": e.message }))
}

fn validation(message: impl Into<String>) -> Ec2Error {
    Ec2Error::new(ErrorCode::ValidationException, message)
}

/// Runs the operation of `path` on `cp` for `who`.
pub fn handle(cp: &ControlPlane, who: Account, method: &Method, path: &str, body: &[u8]) -> Reply {
    match run(cp, who, method, path, body) {
        Ok(v) => Reply::json(StatusCode::OK, v),
        Err(e) => error(&e),
    }
}

fn strings(input: &Map<String, Value>, name: &str) -> Result<Vec<String>, Ec2Error> {
    match input.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                _ => Err(validation(format!("{name} must be a list of strings"))),
            })
            .collect(),
        Some(_) => Err(validation(format!("{name} must be a list"))),
    }
}

fn amount(input: &Map<String, Value>, name: &str) -> Result<Option<f64>, Ec2Error> {
    match input.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .map(Some)
            .map_err(|_| validation(format!("{name} must be a decimal amount, got '{s}'"))),
        Some(_) => Err(validation(format!("{name} must be a string"))),
    }
}

/// An amount as the API writes it.
fn money(x: f64) -> String {
    billing::report::format_amount(x)
}

fn offering_json(o: &SpOffering) -> Value {
    let (service, usage, description) = match o.plan_type {
        PlanType::Compute => (
            "ComputeSavingsPlans",
            "ComputeSP:".to_string(),
            "Compute Savings Plans".to_string(),
        ),
        PlanType::Ec2Instance => (
            "EC2InstanceSavingsPlans",
            "EC2InstanceSP:".to_string(),
            format!(
                "EC2 Instance Savings Plans, {} in {}",
                o.family.as_deref().unwrap_or_default(),
                o.region.as_deref().unwrap_or_default()
            ),
        ),
    };
    let years = if o.term.seconds() == 31_536_000 { 1 } else { 3 };
    let payment = o.payment.as_str().replace(' ', "");
    let mut properties = Vec::new();
    if let Some(r) = &o.region {
        properties.push(json!({"name": "region", "value": r}));
    }
    if let Some(f) = &o.family {
        properties.push(json!({"name": "instanceFamily", "value": f}));
    }
    json!({
        "offeringId": o.id,
        "productTypes": ["EC2"],
        "planType": o.plan_type.as_str(),
        "description": format!("{years} year {} {description}", o.payment.as_str()),
        "paymentOption": o.payment.as_str(),
        "durationSeconds": o.term.seconds(),
        "currency": "USD",
        "serviceCode": service,
        "usageType": format!("{usage}{years}yr{payment}"),
        "operation": "",
        "properties": properties,
    })
}

fn run(
    cp: &ControlPlane,
    who: Account,
    method: &Method,
    path: &str,
    body: &[u8],
) -> Result<Value, Ec2Error> {
    if method != Method::POST {
        return Err(Ec2Error::new(
            ErrorCode::UnknownOperationException,
            format!("No operation at {method} {path}."),
        ));
    }
    let input = super::kms::json_body(body)?;
    match path {
        "/DescribeSavingsPlansOfferings" => {
            let ids = strings(&input, "offeringIds")?;
            let plan_types = strings(&input, "planTypes")?;
            let payments = strings(&input, "paymentOptions")?;
            let durations = strings(&input, "durations")?;
            for p in &plan_types {
                PlanType::parse(p).ok_or_else(|| validation(format!("Invalid planType: {p}")))?;
            }
            for p in &payments {
                Payment::parse(p)
                    .ok_or_else(|| validation(format!("Invalid paymentOption: {p}")))?;
            }
            let mut props: Vec<(String, Vec<String>)> = Vec::new();
            if let Some(Value::Array(fs)) = input.get("filters") {
                for f in fs {
                    let name = f.get("name").and_then(Value::as_str).unwrap_or_default();
                    if name != "region" && name != "instanceFamily" {
                        return Err(validation(format!("Invalid filter name: {name}")));
                    }
                    let values = f
                        .as_object()
                        .map(|m| strings(m, "values"))
                        .transpose()?
                        .unwrap_or_default();
                    props.push((name.to_string(), values));
                }
            }
            let found: Vec<Value> = cp
                .savings_plans_offerings()
                .iter()
                .filter(|o| ids.is_empty() || ids.contains(&o.id))
                .filter(|o| {
                    plan_types.is_empty() || plan_types.iter().any(|p| p == o.plan_type.as_str())
                })
                .filter(|o| payments.is_empty() || payments.iter().any(|p| p == o.payment.as_str()))
                .filter(|o| {
                    durations.is_empty() || durations.contains(&o.term.seconds().to_string())
                })
                .filter(|o| {
                    props.iter().all(|(name, values)| {
                        let v = if name == "region" {
                            &o.region
                        } else {
                            &o.family
                        };
                        v.as_ref().is_some_and(|v| values.contains(v))
                    })
                })
                .map(offering_json)
                .collect();
            Ok(json!({ "searchResults": found }))
        }
        "/CreateSavingsPlan" => {
            let offering = match input.get("savingsPlanOfferingId") {
                Some(Value::String(s)) => s.clone(),
                _ => return Err(validation("savingsPlanOfferingId is required")),
            };
            let commitment = amount(&input, "commitment")?
                .ok_or_else(|| validation("commitment is required"))?;
            let upfront = amount(&input, "upfrontPaymentAmount")?;
            if input.get("purchaseTime").is_some_and(|v| !v.is_null()) {
                return Err(validation(
                    "purchaseTime (a queued purchase) is not supported: plans start when bought",
                ));
            }
            let token = match input.get("clientToken") {
                Some(Value::String(t)) if !t.is_empty() => Some(t.as_str()),
                _ => None,
            };
            let plan = cp.create_savings_plan(who, &offering, commitment, upfront, token)?;
            Ok(json!({ "savingsPlanId": plan.id }))
        }
        "/DescribeSavingsPlans" => {
            let ids = strings(&input, "savingsPlanIds")?;
            let arns = strings(&input, "savingsPlanArns")?;
            let ids: Vec<String> = ids
                .into_iter()
                .chain(
                    arns.iter()
                        .filter_map(|a| a.rsplit('/').next().map(str::to_string)),
                )
                .collect();
            let states = strings(&input, "states")?;
            let mut filters: Vec<(String, Vec<String>)> = Vec::new();
            if let Some(Value::Array(fs)) = input.get("filters") {
                for f in fs {
                    let name = f.get("name").and_then(Value::as_str).unwrap_or_default();
                    if !matches!(
                        name,
                        "region"
                            | "ec2-instance-family"
                            | "instance-family"
                            | "commitment"
                            | "savings-plan-type"
                            | "payment-option"
                    ) {
                        return Err(validation(format!(
                            "The filter {name:?} is not supported by these Savings Plans (region, ec2-instance-family, commitment, savings-plan-type and payment-option are)."
                        )));
                    }
                    let values = f
                        .as_object()
                        .map(|m| strings(m, "values"))
                        .transpose()?
                        .unwrap_or_default();
                    filters.push((name.to_string(), values));
                }
            }
            let plans: Vec<Value> = cp
                .describe_savings_plans(who, &ids, &states)
                .into_iter()
                .filter(|v| {
                    let p = &v.record;
                    filters.iter().all(|(name, values)| {
                        let have = match name.as_str() {
                            "region" => p.region.clone().unwrap_or_default(),
                            "ec2-instance-family" | "instance-family" => {
                                p.family.clone().unwrap_or_default()
                            }
                            "commitment" => money(p.commitment),
                            "savings-plan-type" => p.plan_type.as_str().to_string(),
                            _ => p.payment.as_str().to_string(),
                        };
                        values.contains(&have)
                    })
                })
                .map(|v| {
                    let p = &v.record;
                    json!({
                        "offeringId": p.offering_id,
                        "savingsPlanId": p.id,
                        "savingsPlanArn": format!("arn:aws:savingsplans::{}:savingsplan/{}", p.account, p.id),
                        "description": format!("{} Savings Plan", p.plan_type.as_str()),
                        "start": time(p.start_ms),
                        "end": time(p.end_ms()),
                        "state": v.state,
                        "region": p.region.clone().unwrap_or_default(),
                        "ec2InstanceFamily": p.family.clone().unwrap_or_default(),
                        "savingsPlanType": p.plan_type.as_str(),
                        "paymentOption": p.payment.as_str(),
                        "productTypes": ["EC2"],
                        "currency": "USD",
                        "commitment": money(p.commitment),
                        "upfrontPaymentAmount": money(p.upfront()),
                        "recurringPaymentAmount": money(p.recurring()),
                        "termDurationInSeconds": p.term.seconds(),
                        "tags": {},
                    })
                })
                .collect();
            Ok(json!({ "savingsPlans": plans }))
        }
        _ => Err(Ec2Error::new(
            ErrorCode::UnknownOperationException,
            format!("No operation at {method} {path}."),
        )),
    }
}
