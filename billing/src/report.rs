//! Cost Explorer's GetCostAndUsage on domain types: the periods of a time range, charges summed
//! per period and group, filtered by dimensions and tags.

use std::collections::BTreeMap;

use crate::BillingError;
use crate::calendar::{self, DAY_MS};
use crate::usage::{Charge, Granularity};

/// A metric Cost Explorer reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    UnblendedCost,
    AmortizedCost,
    BlendedCost,
    NetUnblendedCost,
    NetAmortizedCost,
    UsageQuantity,
    NormalizedUsageAmount,
}

impl Metric {
    /// The metric of its API name (Cost Explorer takes them in any letter case).
    pub fn parse(name: &str) -> Result<Metric, BillingError> {
        Ok(match name.to_ascii_lowercase().as_str() {
            "unblendedcost" => Metric::UnblendedCost,
            "amortizedcost" => Metric::AmortizedCost,
            "blendedcost" => Metric::BlendedCost,
            "netunblendedcost" => Metric::NetUnblendedCost,
            "netamortizedcost" => Metric::NetAmortizedCost,
            "usagequantity" => Metric::UsageQuantity,
            "normalizedusageamount" => Metric::NormalizedUsageAmount,
            _ => {
                return Err(BillingError::Invalid(format!(
                    "Invalid metric name: {name}"
                )));
            }
        })
    }

    /// The API name.
    pub fn name(self) -> &'static str {
        match self {
            Metric::UnblendedCost => "UnblendedCost",
            Metric::AmortizedCost => "AmortizedCost",
            Metric::BlendedCost => "BlendedCost",
            Metric::NetUnblendedCost => "NetUnblendedCost",
            Metric::NetAmortizedCost => "NetAmortizedCost",
            Metric::UsageQuantity => "UsageQuantity",
            Metric::NormalizedUsageAmount => "NormalizedUsageAmount",
        }
    }
}

/// A dimension charges are filtered and grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    Service,
    UsageType,
    InstanceType,
    PurchaseType,
    Region,
    Az,
    Operation,
    LinkedAccount,
    ResourceId,
}

impl Dimension {
    /// The dimension of its API name.
    pub fn parse(name: &str) -> Result<Dimension, BillingError> {
        Ok(match name {
            "SERVICE" => Dimension::Service,
            "USAGE_TYPE" => Dimension::UsageType,
            "INSTANCE_TYPE" => Dimension::InstanceType,
            "PURCHASE_TYPE" => Dimension::PurchaseType,
            "REGION" => Dimension::Region,
            "AZ" => Dimension::Az,
            "OPERATION" => Dimension::Operation,
            "LINKED_ACCOUNT" => Dimension::LinkedAccount,
            "RESOURCE_ID" => Dimension::ResourceId,
            _ => {
                return Err(BillingError::Invalid(format!(
                    "Unsupported dimension: {name}"
                )));
            }
        })
    }

    /// The API name.
    pub fn name(self) -> &'static str {
        match self {
            Dimension::Service => "SERVICE",
            Dimension::UsageType => "USAGE_TYPE",
            Dimension::InstanceType => "INSTANCE_TYPE",
            Dimension::PurchaseType => "PURCHASE_TYPE",
            Dimension::Region => "REGION",
            Dimension::Az => "AZ",
            Dimension::Operation => "OPERATION",
            Dimension::LinkedAccount => "LINKED_ACCOUNT",
            Dimension::ResourceId => "RESOURCE_ID",
        }
    }

    fn of(self, c: &Charge) -> &str {
        match self {
            Dimension::Service => c.service,
            Dimension::UsageType => &c.usage_type,
            Dimension::InstanceType => &c.instance_type,
            Dimension::PurchaseType => c.purchase_type,
            Dimension::Region => &c.region,
            Dimension::Az => &c.az,
            Dimension::Operation => c.operation,
            Dimension::LinkedAccount => &c.account,
            Dimension::ResourceId => &c.resource_id,
        }
    }
}

/// A GroupBy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupBy {
    Dimension(Dimension),
    /// A cost allocation tag: the group key is `KEY$VALUE` (`KEY$` where untagged).
    Tag(String),
}

impl GroupBy {
    fn key(&self, c: &Charge) -> String {
        match self {
            GroupBy::Dimension(d) => d.of(c).to_string(),
            GroupBy::Tag(k) => format!("{k}${}", c.tags.get(k).map_or("", String::as_str)),
        }
    }
}

/// A Filter expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    /// The dimension's value is one of these.
    Dimension(Dimension, Vec<String>),
    /// The tag's value is one of these; with no values, the tag is absent.
    Tag(String, Vec<String>),
}

impl Expr {
    fn matches(&self, c: &Charge) -> bool {
        match self {
            Expr::And(all) => all.iter().all(|e| e.matches(c)),
            Expr::Or(any) => any.iter().any(|e| e.matches(c)),
            Expr::Not(e) => !e.matches(c),
            Expr::Dimension(d, values) => values.iter().any(|v| v == d.of(c)),
            Expr::Tag(k, values) if values.is_empty() => !c.tags.contains_key(k),
            Expr::Tag(k, values) => c.tags.get(k).is_some_and(|v| values.contains(v)),
        }
    }
}

/// The longest DAILY question (ten years; MONTHLY: a hundred).
const MAX_DAYS: u64 = 3660;

/// A GetCostAndUsage question.
#[derive(Debug, Clone)]
pub struct CostQuery {
    pub start_ms: u64,
    pub end_ms: u64,
    pub granularity: Granularity,
    pub metrics: Vec<Metric>,
    pub group_by: Vec<GroupBy>,
    pub filter: Option<Expr>,
}

impl CostQuery {
    /// Checks what Cost Explorer checks: an end after the start, at least one metric, at most
    /// two groupings.
    pub fn check(&self) -> Result<(), BillingError> {
        if self.end_ms <= self.start_ms {
            return Err(BillingError::Invalid(
                "Start date must be before end date".into(),
            ));
        }
        if self.metrics.is_empty() {
            return Err(BillingError::Invalid("Metrics is required".into()));
        }
        if self.group_by.len() > 2 {
            return Err(BillingError::Invalid(
                "GroupBy supports at most two groupings".into(),
            ));
        }
        // Cost Explorer keeps hourly data for 14 days; and no question is worth unbounded work.
        if self.granularity == Granularity::Hourly && self.end_ms - self.start_ms > 14 * DAY_MS {
            return Err(BillingError::Invalid(
                "Hourly granularity allows a time period of at most 14 days".into(),
            ));
        }
        if self.granularity == Granularity::Monthly
            && (self.end_ms - self.start_ms) / DAY_MS > 10 * MAX_DAYS
        {
            return Err(BillingError::Invalid(format!(
                "Monthly granularity allows a time period of at most {} days",
                10 * MAX_DAYS
            )));
        }
        if self.granularity == Granularity::Daily
            && (self.end_ms - self.start_ms) / DAY_MS > MAX_DAYS
        {
            return Err(BillingError::Invalid(format!(
                "Daily granularity allows a time period of at most {MAX_DAYS} days"
            )));
        }
        Ok(())
    }

    /// A question from its parts as text (the gRPC form): dates as [`calendar::parse`] takes
    /// them, `HOURLY`/`DAILY`/`MONTHLY`, metric names, and group keys (a dimension, or
    /// `TAG:KEY`). Checked as [`CostQuery::check`] does.
    pub fn from_text(
        start: &str,
        end: &str,
        granularity: &str,
        metrics: &[String],
        group_by: &[String],
    ) -> Result<CostQuery, BillingError> {
        let granularity = match granularity {
            "HOURLY" => Granularity::Hourly,
            "DAILY" => Granularity::Daily,
            "MONTHLY" => Granularity::Monthly,
            g => return Err(BillingError::Invalid(format!("Invalid Granularity: {g}"))),
        };
        let q = CostQuery {
            start_ms: calendar::parse(start)?,
            end_ms: calendar::parse(end)?,
            granularity,
            metrics: metrics
                .iter()
                .map(|m| Metric::parse(m))
                .collect::<Result<_, _>>()?,
            group_by: group_by
                .iter()
                .map(|g| match g.strip_prefix("TAG:") {
                    Some(k) => Ok(GroupBy::Tag(k.to_string())),
                    None => Dimension::parse(g).map(GroupBy::Dimension),
                })
                .collect::<Result<_, _>>()?,
            filter: None,
        };
        q.check()?;
        Ok(q)
    }

    /// The periods of the range: whole hours, days or months, the first and last clipped.
    pub fn periods(&self) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut at = self.start_ms;
        while at < self.end_ms {
            let next = self.granularity.period_end(at).min(self.end_ms);
            out.push((at, next));
            at = next;
        }
        out
    }
}

/// One metric's figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Amount {
    pub amount: f64,
    pub unit: String,
}

/// Figures per metric.
pub type Metrics = BTreeMap<Metric, Amount>;

/// One period's answer: the total (without GroupBy) or the groups.
#[derive(Debug, Clone)]
pub struct PeriodResult {
    pub start_ms: u64,
    pub end_ms: u64,
    pub total: Metrics,
    pub groups: Vec<(Vec<String>, Metrics)>,
    /// The period has not ended on the billing clock: its figures may still grow.
    pub estimated: bool,
}

/// Sums of charges for the asked metrics.
fn sum(q: &CostQuery, charges: &[&Charge]) -> Metrics {
    let cost: f64 = charges.iter().map(|c| c.cost).sum();
    let amortized: f64 = charges.iter().map(|c| c.amortized).sum();
    let quantity: f64 = charges.iter().map(|c| c.quantity).sum();
    let mut units: Vec<&str> = charges.iter().map(|c| c.unit).collect();
    units.sort_unstable();
    units.dedup();
    let unit = match units.as_slice() {
        [one] => one.to_string(),
        _ => "N/A".to_string(),
    };
    q.metrics
        .iter()
        .map(|&m| {
            let a = match m {
                Metric::UsageQuantity => Amount {
                    amount: quantity,
                    unit: unit.clone(),
                },
                Metric::NormalizedUsageAmount => Amount {
                    amount: 0.0,
                    unit: "N/A".into(),
                },
                Metric::AmortizedCost | Metric::NetAmortizedCost => Amount {
                    amount: amortized,
                    unit: "USD".into(),
                },
                // One account, no credits or refunds: blended and net are the unblended cost.
                _ => Amount {
                    amount: cost,
                    unit: "USD".into(),
                },
            };
            (m, a)
        })
        .collect()
}

/// Answers `q` from `charges` (made with `q`'s granularity over its range), the billing clock
/// at `now_ms`.
pub fn answer(q: &CostQuery, charges: &[Charge], now_ms: u64) -> Vec<PeriodResult> {
    let mut by_period: BTreeMap<u64, Vec<&Charge>> = BTreeMap::new();
    for c in charges
        .iter()
        .filter(|c| q.filter.as_ref().is_none_or(|f| f.matches(c)))
    {
        by_period.entry(c.period_ms).or_default().push(c);
    }
    q.periods()
        .into_iter()
        .map(|(start, end)| {
            let period = q.granularity.period_start(start);
            let here = by_period.remove(&period).unwrap_or_default();
            if q.group_by.is_empty() {
                return PeriodResult {
                    start_ms: start,
                    end_ms: end,
                    total: sum(q, &here),
                    groups: Vec::new(),
                    estimated: end > now_ms,
                };
            }
            let mut groups: BTreeMap<Vec<String>, Vec<&Charge>> = BTreeMap::new();
            for c in here {
                let key = q.group_by.iter().map(|g| g.key(c)).collect();
                groups.entry(key).or_default().push(c);
            }
            PeriodResult {
                start_ms: start,
                end_ms: end,
                estimated: end > now_ms,
                total: Metrics::new(),
                groups: groups.into_iter().map(|(k, cs)| (k, sum(q, &cs))).collect(),
            }
        })
        .collect()
}

/// A period's bound as Cost Explorer writes it: a date, or a date and time for HOURLY.
pub fn format_bound(granularity: Granularity, ms: u64) -> String {
    match granularity {
        Granularity::Hourly => calendar::date_time(ms),
        _ => calendar::date(ms),
    }
}

/// An amount as Cost Explorer writes it: up to ten decimals, no trailing zeros.
pub fn format_amount(x: f64) -> String {
    let s = format!("{x:.10}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::parse;
    use crate::prices::PriceList;
    use crate::usage::{Meter, Segment, charges};

    fn seg(id: &str, meter: Meter, start: &str, end: &str, tags: &[(&str, &str)]) -> Segment {
        Segment {
            id: id.into(),
            account: "111122223333".into(),
            region: "us-east-1".into(),
            az: Some("us-east-1a".into()),
            resource_id: id.into(),
            meter,
            start_ms: parse(start).unwrap(),
            end_ms: Some(parse(end).unwrap()),
            min_ms: 0,
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn groups_filters_and_periods() {
        let prices = PriceList::builtin();
        let segs = [
            seg(
                "i-1",
                Meter::Instance {
                    instance_type: "m5.large".into(),
                },
                "2026-12-07T10:00:00Z",
                "2026-12-07T12:00:00Z",
                &[("team", "a")],
            ),
            seg(
                "vol-1",
                Meter::VolumeStorage {
                    volume_type: "gp3".into(),
                    gib: 744,
                },
                "2026-12-07T10:00:00Z",
                "2026-12-07T11:00:00Z",
                &[],
            ),
        ];
        let q = CostQuery {
            start_ms: parse("2026-12-07").unwrap(),
            end_ms: parse("2026-12-09").unwrap(),
            granularity: Granularity::Daily,
            metrics: vec![Metric::UnblendedCost, Metric::UsageQuantity],
            group_by: vec![
                GroupBy::Dimension(Dimension::Service),
                GroupBy::Tag("team".into()),
            ],
            filter: None,
        };
        q.check().unwrap();
        let c = charges(
            &segs,
            &prices,
            q.granularity,
            q.start_ms,
            q.end_ms,
            q.end_ms,
        );
        let r = answer(&q, &c, q.end_ms);
        assert_eq!(r.len(), 2);
        assert!(r[1].groups.is_empty());
        let g: BTreeMap<_, _> = r[0].groups.iter().cloned().collect();
        let compute = &g[&vec![
            "Amazon Elastic Compute Cloud - Compute".to_string(),
            "team$a".to_string(),
        ]];
        let m5 = prices.region("us-east-1").unwrap().instances["m5.large"];
        assert!((compute[&Metric::UnblendedCost].amount - 2.0 * m5).abs() < 1e-12);
        assert_eq!(compute[&Metric::UsageQuantity].unit, "Hrs");
        let ebs = &g[&vec!["EC2 - Other".to_string(), "team$".to_string()]];
        // 744 GiB for one hour of a 744-hour month: one GB-month.
        assert!((ebs[&Metric::UsageQuantity].amount - 1.0).abs() < 1e-12);
        let q = CostQuery {
            group_by: vec![],
            filter: Some(Expr::Not(Box::new(Expr::Dimension(
                Dimension::Service,
                vec!["EC2 - Other".into()],
            )))),
            ..q
        };
        let r = answer(&q, &c, q.end_ms);
        assert!((r[0].total[&Metric::UnblendedCost].amount - 2.0 * m5).abs() < 1e-12);
        assert_eq!(r[1].total[&Metric::UnblendedCost].amount, 0.0);
    }

    #[test]
    fn bad_questions_are_refused_and_amounts_print_as_aws_does() {
        assert!(Metric::parse("Bogus").is_err());
        assert_eq!(
            Metric::parse("unblendedCost").unwrap(),
            Metric::UnblendedCost
        );
        assert!(Dimension::parse("NOPE").is_err());
        let q = CostQuery {
            start_ms: 10,
            end_ms: 10,
            granularity: Granularity::Daily,
            metrics: vec![Metric::UnblendedCost],
            group_by: vec![],
            filter: None,
        };
        assert!(q.check().is_err());
        let day = crate::calendar::DAY_MS;
        let hourly = |days: u64| CostQuery {
            start_ms: 0,
            end_ms: days * day,
            granularity: Granularity::Hourly,
            metrics: vec![Metric::UnblendedCost],
            group_by: vec![],
            filter: None,
        };
        assert!(hourly(14).check().is_ok());
        assert!(hourly(15).check().is_err(), "hourly data covers 14 days");
        let daily = CostQuery {
            granularity: Granularity::Daily,
            end_ms: 20_000 * day,
            ..hourly(1)
        };
        assert!(daily.check().is_err(), "no unbounded work");
        assert_eq!(format_amount(0.0), "0");
        assert_eq!(format_amount(0.096), "0.096");
        assert_eq!(format_amount(1.0 / 3.0), "0.3333333333");
    }
}
