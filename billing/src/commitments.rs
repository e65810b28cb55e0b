//! Reserved Instances and Savings Plans: their offerings and prices (from the price list's
//! discounts), and how they cover an hour of instance usage, in AWS's order: zonal Reserved
//! Instances (type and zone), then regional ones (any size of the family and any zone, by
//! normalization factor, smallest sizes first), then Savings Plans, the highest discount
//! first; what is left is On-Demand.
//!
//! The bill, per hour: usage a reservation covers costs nothing itself, and each reservation's
//! fee (`HeavyUsage:TYPE`) is charged for every hour of its term, used or not (unblended: the
//! hourly charge, and the upfront payment once at purchase; amortized: the hourly charge plus
//! the upfront payment spread over the term). A Savings Plan charges its commitment every hour
//! (`ComputeSP:1yrNoUpfront`, ...): covered usage is amortized at the plan's rate and the
//! unused rest of the commitment is the fee's amortized cost, so both sum to the commitment.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::BillingError;
use crate::calendar::HOUR_MS;
use crate::prices::PriceList;
use crate::usage::{Charge, Granularity, Meter, SERVICE_COMPUTE, Segment, charges};

/// Discount fractions by offering (the price list's `commitments`).
#[derive(Debug, Clone, Deserialize)]
pub struct CommitmentPrices {
    /// class (`standard`, `convertible`) → term (`1yr`, `3yr`) → payment → fraction off.
    pub reserved: BTreeMap<String, BTreeMap<String, BTreeMap<String, f64>>>,
    /// plan type (`Compute`, `EC2Instance`) → term → payment → fraction off.
    pub savings_plans: BTreeMap<String, BTreeMap<String, BTreeMap<String, f64>>>,
}

/// A Reserved Instance's offering class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OfferingClass {
    #[serde(rename = "standard")]
    Standard,
    #[serde(rename = "convertible")]
    Convertible,
}

impl OfferingClass {
    pub fn as_str(self) -> &'static str {
        match self {
            OfferingClass::Standard => "standard",
            OfferingClass::Convertible => "convertible",
        }
    }

    /// Cost Explorer's PURCHASE_TYPE of usage it covers.
    pub fn purchase_type(self) -> &'static str {
        match self {
            OfferingClass::Standard => "Standard Reserved Instances",
            OfferingClass::Convertible => "Convertible Reserved Instances",
        }
    }

    pub fn parse(s: &str) -> Option<OfferingClass> {
        match s {
            "standard" => Some(OfferingClass::Standard),
            "convertible" => Some(OfferingClass::Convertible),
            _ => None,
        }
    }
}

/// How a commitment is paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Payment {
    #[serde(rename = "No Upfront")]
    NoUpfront,
    #[serde(rename = "Partial Upfront")]
    PartialUpfront,
    #[serde(rename = "All Upfront")]
    AllUpfront,
}

impl Payment {
    pub const ALL: [Payment; 3] = [
        Payment::NoUpfront,
        Payment::PartialUpfront,
        Payment::AllUpfront,
    ];

    /// The API spelling (`No Upfront`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Payment::NoUpfront => "No Upfront",
            Payment::PartialUpfront => "Partial Upfront",
            Payment::AllUpfront => "All Upfront",
        }
    }

    pub fn parse(s: &str) -> Option<Payment> {
        Payment::ALL.into_iter().find(|p| p.as_str() == s)
    }

    fn tag(self) -> &'static str {
        match self {
            Payment::NoUpfront => "NoUpfront",
            Payment::PartialUpfront => "PartialUpfront",
            Payment::AllUpfront => "AllUpfront",
        }
    }
}

/// A term: one or three years (of 365 days, as AWS counts them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Term {
    #[serde(rename = "1yr")]
    OneYear,
    #[serde(rename = "3yr")]
    ThreeYears,
}

impl Term {
    pub const ALL: [Term; 2] = [Term::OneYear, Term::ThreeYears];

    pub fn seconds(self) -> u64 {
        match self {
            Term::OneYear => 31_536_000,
            Term::ThreeYears => 94_608_000,
        }
    }

    pub fn of_seconds(s: u64) -> Option<Term> {
        Term::ALL.into_iter().find(|t| t.seconds() == s)
    }

    fn key(self) -> &'static str {
        match self {
            Term::OneYear => "1yr",
            Term::ThreeYears => "3yr",
        }
    }
}

/// A Savings Plan's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlanType {
    Compute,
    #[serde(rename = "EC2Instance")]
    Ec2Instance,
}

impl PlanType {
    pub fn as_str(self) -> &'static str {
        match self {
            PlanType::Compute => "Compute",
            PlanType::Ec2Instance => "EC2Instance",
        }
    }

    pub fn parse(s: &str) -> Option<PlanType> {
        match s {
            "Compute" => Some(PlanType::Compute),
            "EC2Instance" => Some(PlanType::Ec2Instance),
            _ => None,
        }
    }
}

/// A Reserved Instance's price per instance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RiPrice {
    /// Paid once at purchase (USD).
    pub upfront: f64,
    /// Charged every hour of the term (USD).
    pub hourly: f64,
}

/// The price of a Reserved Instance of `instance_type` in `region`, from the On-Demand price
/// and the offering's discount: the effective hourly rate over the term, paid all upfront,
/// half upfront and half by the hour, or all by the hour.
pub fn ri_price(
    prices: &PriceList,
    region: &str,
    instance_type: &str,
    class: OfferingClass,
    term: Term,
    payment: Payment,
) -> Result<RiPrice, BillingError> {
    let od = *prices
        .region(region)?
        .instances
        .get(instance_type)
        .ok_or_else(|| BillingError::NoPrice(format!("{instance_type} in {region}")))?;
    let off = discount(prices, true, class.as_str(), term, payment)?;
    let effective = od * (1.0 - off);
    let hours = term.seconds() as f64 / 3600.0;
    Ok(match payment {
        Payment::AllUpfront => RiPrice {
            upfront: effective * hours,
            hourly: 0.0,
        },
        Payment::PartialUpfront => RiPrice {
            upfront: effective * hours / 2.0,
            hourly: effective / 2.0,
        },
        Payment::NoUpfront => RiPrice {
            upfront: 0.0,
            hourly: effective,
        },
    })
}

/// A Savings Plan's discount off On-Demand.
pub fn plan_discount(
    prices: &PriceList,
    plan: PlanType,
    term: Term,
    payment: Payment,
) -> Result<f64, BillingError> {
    discount(prices, false, plan.as_str(), term, payment)
}

fn discount(
    prices: &PriceList,
    reserved: bool,
    kind: &str,
    term: Term,
    payment: Payment,
) -> Result<f64, BillingError> {
    let c = prices
        .commitments
        .as_ref()
        .ok_or_else(|| BillingError::NoPrice("commitments (the price list has none)".into()))?;
    let table = if reserved {
        &c.reserved
    } else {
        &c.savings_plans
    };
    table
        .get(kind)
        .and_then(|t| t.get(term.key()))
        .and_then(|t| t.get(payment.as_str()))
        .copied()
        .ok_or_else(|| BillingError::NoPrice(format!("{kind} {} {}", term.key(), payment.as_str())))
}

/// A bought Reserved Instance (one purchase of `count` instances).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reservation {
    pub id: String,
    pub account: String,
    pub region: String,
    pub instance_type: String,
    /// Zonal: this zone only (and no size flexibility); `None`: regional.
    pub az: Option<String>,
    pub count: u32,
    pub class: OfferingClass,
    pub payment: Payment,
    pub term: Term,
    pub start_ms: u64,
    /// Per instance.
    pub price: RiPriceRecord,
}

/// [`RiPrice`] as stored.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RiPriceRecord {
    pub upfront: f64,
    pub hourly: f64,
}

impl Reservation {
    pub fn end_ms(&self) -> u64 {
        self.start_ms + self.term.seconds() * 1000
    }
}

/// A bought Savings Plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavingsPlan {
    pub id: String,
    /// The offering it was bought under.
    #[serde(default)]
    pub offering_id: String,
    pub account: String,
    pub plan_type: PlanType,
    /// EC2 Instance plans: the region and family they cover.
    pub region: Option<String>,
    pub family: Option<String>,
    pub payment: Payment,
    pub term: Term,
    /// USD per hour.
    pub commitment: f64,
    pub start_ms: u64,
    /// Fraction off On-Demand.
    pub discount: f64,
    /// CreateSavingsPlan's idempotency token, if one was sent.
    #[serde(default)]
    pub client_token: Option<String>,
}

impl SavingsPlan {
    pub fn end_ms(&self) -> u64 {
        self.start_ms + self.term.seconds() * 1000
    }

    /// Paid at purchase: all of the term's commitment, half of it, or nothing.
    pub fn upfront(&self) -> f64 {
        let total = self.commitment * self.term.seconds() as f64 / 3600.0;
        match self.payment {
            Payment::AllUpfront => total,
            Payment::PartialUpfront => total / 2.0,
            Payment::NoUpfront => 0.0,
        }
    }

    /// Charged each hour.
    pub fn recurring(&self) -> f64 {
        match self.payment {
            Payment::AllUpfront => 0.0,
            Payment::PartialUpfront => self.commitment / 2.0,
            Payment::NoUpfront => self.commitment,
        }
    }

    fn covers(&self, c: &Charge) -> bool {
        match self.plan_type {
            PlanType::Compute => true,
            PlanType::Ec2Instance => {
                self.region.as_deref() == Some(c.region.as_str())
                    && self.family.as_deref() == Some(family(&c.instance_type))
            }
        }
    }
}

/// The family of an instance type (`m5` of `m5.large`).
pub fn family(instance_type: &str) -> &str {
    instance_type.split('.').next().unwrap_or(instance_type)
}

/// AWS's normalization factor of an instance size (`large` 4, `xlarge` 8, `2xlarge` 16, ...);
/// `metal` counts as the largest size of its family among `known` types.
pub fn normalization_factor<'a>(
    instance_type: &str,
    known: impl Iterator<Item = &'a String>,
) -> f64 {
    let size_of = |t: &str| -> Option<f64> {
        let size = t.split_once('.')?.1;
        Some(match size {
            "nano" => 0.25,
            "micro" => 0.5,
            "small" => 1.0,
            "medium" => 2.0,
            "large" => 4.0,
            "xlarge" => 8.0,
            s => {
                let n: f64 = s.strip_suffix("xlarge")?.parse().ok()?;
                8.0 * n
            }
        })
    };
    if let Some(f) = size_of(instance_type) {
        return f;
    }
    let fam = family(instance_type);
    known
        .filter(|t| family(t) == fam)
        .filter_map(|t| size_of(t))
        .fold(0.0, f64::max)
}

/// Splits `c` into the part of `hours` (at most its quantity) that a commitment covers and the
/// rest (which stays as it was, pro rata).
fn split(c: &Charge, hours: f64) -> (Charge, Option<Charge>) {
    let share = if c.quantity > 0.0 {
        hours / c.quantity
    } else {
        0.0
    };
    let mut covered = c.clone();
    covered.quantity = hours;
    covered.cost = 0.0;
    covered.amortized = 0.0;
    let rest = (c.quantity - hours > 1e-12).then(|| {
        let mut r = c.clone();
        r.quantity = c.quantity - hours;
        r.cost = c.cost * (1.0 - share);
        r.amortized = c.amortized * (1.0 - share);
        r
    });
    (covered, rest)
}

/// Instance usage of one hour (charges with period `hour`, `Hrs`), covered by what of
/// `reservations` and `plans` applies, plus the commitments' fees for that hour up to `until`
/// (the billing clock, or the end of the question), all of one account. Returns the charges
/// that replace them.
pub fn cover_hour(
    hour: u64,
    (from, until): (u64, u64),
    usage: Vec<Charge>,
    reservations: &[&Reservation],
    plans: &[&SavingsPlan],
    prices: &PriceList,
    factors: &HashMap<String, f64>,
) -> Vec<Charge> {
    let mut open = usage;
    let mut out = Vec::new();
    // The part of the hour asked about: the question's start and the clock clip it.
    let begin = hour.max(from);
    let end = (hour + HOUR_MS).min(until);
    let overlap = |start: u64, stop: u64| -> f64 {
        let (a, b) = (start.max(begin), stop.min(end));
        if b > a {
            (b - a) as f64 / HOUR_MS as f64
        } else {
            0.0
        }
    };
    // Zonal reservations first, then regional ones.
    let mut ris: Vec<&&Reservation> = reservations.iter().collect();
    ris.sort_by_key(|r| (r.az.is_none(), r.start_ms, r.id.clone()));
    for r in ris {
        let share = overlap(r.start_ms, r.end_ms());
        if share == 0.0 {
            continue;
        }
        let prefix = prices
            .region(&r.region)
            .map(|p| p.usage_type_prefix.clone())
            .unwrap_or_default();
        let nf = |t: &str| factors.get(t).copied().unwrap_or(0.0);
        // Capacity in normalized hours (zonal: in hours of its own type).
        let mut capacity = f64::from(r.count)
            * share
            * if r.az.is_some() {
                1.0
            } else {
                nf(&r.instance_type)
            };
        let mut order: Vec<usize> = (0..open.len())
            .filter(|&i| {
                let c = &open[i];
                c.region == r.region
                    && c.purchase_type == crate::usage::ON_DEMAND
                    && match &r.az {
                        Some(az) => c.instance_type == r.instance_type && &c.az == az,
                        None => family(&c.instance_type) == family(&r.instance_type),
                    }
            })
            .collect();
        order.sort_by(|&a, &b| nf(&open[a].instance_type).total_cmp(&nf(&open[b].instance_type)));
        let mut replaced: Vec<(usize, Charge, Option<Charge>)> = Vec::new();
        for i in order {
            if capacity <= 1e-12 {
                break;
            }
            let c = &open[i];
            let per_hour = if r.az.is_some() {
                1.0
            } else {
                nf(&c.instance_type)
            };
            let hours = c.quantity.min(capacity / per_hour);
            capacity -= hours * per_hour;
            let (mut covered, rest) = split(c, hours);
            covered.purchase_type = r.class.purchase_type();
            replaced.push((i, covered, rest));
        }
        // Replace covered charges: the covered part is final, the rest stays open.
        replaced.sort_by_key(|(i, _, _)| std::cmp::Reverse(*i));
        for (i, covered, rest) in replaced {
            open.remove(i);
            out.push(covered);
            if let Some(rest) = rest {
                open.push(rest);
            }
        }
        // The fee, used or not.
        let count = f64::from(r.count);
        let term_hours = r.term.seconds() as f64 / 3600.0;
        out.push(Charge {
            period_ms: hour,
            account: r.account.clone(),
            region: r.region.clone(),
            az: r.az.clone().unwrap_or_default(),
            service: SERVICE_COMPUTE,
            usage_type: format!("{prefix}HeavyUsage:{}", r.instance_type),
            operation: "RunInstances",
            instance_type: r.instance_type.clone(),
            purchase_type: r.class.purchase_type(),
            resource_id: r.id.clone(),
            tags: BTreeMap::new(),
            unit: "Hrs",
            quantity: count * share,
            cost: count * r.price.hourly * share,
            amortized: count * (r.price.hourly + r.price.upfront / term_hours) * share,
        });
        if (begin..end).contains(&r.start_ms) && r.price.upfront > 0.0 {
            out.push(Charge {
                period_ms: hour,
                account: r.account.clone(),
                region: r.region.clone(),
                az: r.az.clone().unwrap_or_default(),
                service: SERVICE_COMPUTE,
                usage_type: format!("{prefix}HeavyUsage:{}", r.instance_type),
                operation: "RunInstances",
                instance_type: r.instance_type.clone(),
                purchase_type: r.class.purchase_type(),
                resource_id: r.id.clone(),
                tags: BTreeMap::new(),
                unit: "Hrs",
                quantity: 0.0,
                cost: count * r.price.upfront,
                amortized: 0.0,
            });
        }
    }
    // Savings Plans: EC2 Instance plans before Compute plans (AWS's order: the narrower plan
    // first, so the Compute plan is left for what only it covers), then the highest discount.
    let mut sps: Vec<&&SavingsPlan> = plans.iter().collect();
    sps.sort_by(|a, b| {
        (a.plan_type != PlanType::Ec2Instance)
            .cmp(&(b.plan_type != PlanType::Ec2Instance))
            .then(b.discount.total_cmp(&a.discount))
            .then(a.id.cmp(&b.id))
    });
    for p in sps {
        let share = overlap(p.start_ms, p.end_ms());
        if share == 0.0 {
            continue;
        }
        let mut left = p.commitment * share;
        let mut replaced: Vec<(usize, Charge, Option<Charge>)> = Vec::new();
        for (i, c) in open.iter().enumerate() {
            if left <= 1e-12 {
                break;
            }
            if c.purchase_type != crate::usage::ON_DEMAND || !p.covers(c) || c.quantity <= 0.0 {
                continue;
            }
            let rate = c.cost / c.quantity * (1.0 - p.discount);
            let hours = if rate > 0.0 {
                c.quantity.min(left / rate)
            } else {
                c.quantity
            };
            left -= hours * rate;
            let (mut covered, rest) = split(c, hours);
            covered.purchase_type = "Savings Plans";
            covered.amortized = hours * rate;
            replaced.push((i, covered, rest));
        }
        replaced.sort_by_key(|(i, _, _)| std::cmp::Reverse(*i));
        for (i, covered, rest) in replaced {
            open.remove(i);
            out.push(covered);
            if let Some(rest) = rest {
                open.push(rest);
            }
        }
        let term = match p.term {
            Term::OneYear => "1yr",
            Term::ThreeYears => "3yr",
        };
        let kind = match p.plan_type {
            PlanType::Compute => "ComputeSP",
            PlanType::Ec2Instance => "EC2InstanceSP",
        };
        let fee = |cost: f64, amortized: f64, quantity: f64| Charge {
            period_ms: hour,
            account: p.account.clone(),
            region: p.region.clone().unwrap_or_default(),
            az: String::new(),
            service: SERVICE_SAVINGS_PLANS,
            usage_type: format!("{kind}:{term}{}", p.payment.tag()),
            operation: "",
            instance_type: crate::usage::NO_INSTANCE_TYPE.into(),
            purchase_type: "Savings Plans",
            resource_id: p.id.clone(),
            tags: BTreeMap::new(),
            unit: "Hrs",
            quantity,
            cost,
            amortized,
        };
        out.push(fee(p.recurring() * share, left.max(0.0), share));
        if (begin..end).contains(&p.start_ms) && p.upfront() > 0.0 {
            out.push(fee(p.upfront(), 0.0, 0.0));
        }
    }
    out.extend(open);
    out
}

/// What `segments` cost within `[from_ms, to_ms)` with the billing clock at `now_ms`, with
/// instance usage covered by `reservations` and `plans` hour by hour (all of one account).
#[allow(clippy::too_many_arguments)]
pub fn bill(
    segments: &[Segment],
    reservations: &[Reservation],
    plans: &[SavingsPlan],
    prices: &PriceList,
    granularity: Granularity,
    from_ms: u64,
    to_ms: u64,
    now_ms: u64,
) -> Vec<Charge> {
    let (instances, other): (Vec<Segment>, Vec<Segment>) = segments
        .iter()
        .cloned()
        .partition(|s| matches!(s.meter, Meter::Instance { .. }));
    let mut out = charges(&other, prices, granularity, from_ms, to_ms, now_ms);
    let until = to_ms.min(now_ms);
    // Instance usage needs hour-by-hour coverage only while a commitment runs: elsewhere it is
    // priced by the question's periods, so a long question over long-running instances does
    // not turn into one charge per instance and hour.
    let spans: Vec<(&String, u64, u64)> = reservations
        .iter()
        .map(|r| (&r.account, r.start_ms, r.end_ms()))
        .chain(plans.iter().map(|p| (&p.account, p.start_ms, p.end_ms())))
        .collect();
    let window = spans
        .iter()
        .map(|s| s.1)
        .min()
        .zip(spans.iter().map(|s| s.2).max())
        .map(|(a, b)| {
            (
                Granularity::Hourly.period_start(a.max(from_ms)),
                b.min(to_ms),
            )
        })
        .filter(|(a, b)| a < b);
    let Some((w0, w1)) = window else {
        out.extend(charges(
            &instances,
            prices,
            granularity,
            from_ms,
            to_ms,
            now_ms,
        ));
        return out;
    };
    out.extend(charges(
        &instances,
        prices,
        granularity,
        from_ms,
        w0.max(from_ms),
        now_ms,
    ));
    out.extend(charges(&instances, prices, granularity, w1, to_ms, now_ms));
    let mut hours: BTreeMap<(String, u64), Vec<Charge>> = BTreeMap::new();
    for c in charges(
        &instances,
        prices,
        Granularity::Hourly,
        w0.max(from_ms),
        w1,
        now_ms,
    ) {
        hours
            .entry((c.account.clone(), c.period_ms))
            .or_default()
            .push(c);
    }
    // Every hour a commitment runs is billed, used or not (up to the clock).
    for (account, start, end) in spans {
        let mut h = Granularity::Hourly.period_start(start.max(from_ms));
        while h < end.min(until) {
            hours.entry((account.clone(), h)).or_default();
            h += HOUR_MS;
        }
    }
    let mut factors = HashMap::new();
    for r in prices.regions.values() {
        for t in r.instances.keys() {
            factors
                .entry(t.clone())
                .or_insert_with(|| normalization_factor(t, r.instances.keys()));
        }
    }
    for ((account, hour), usage) in hours {
        let rs: Vec<&Reservation> = reservations
            .iter()
            .filter(|r| r.account == account)
            .collect();
        let ps: Vec<&SavingsPlan> = plans.iter().filter(|p| p.account == account).collect();
        for mut c in cover_hour(hour, (from_ms, until), usage, &rs, &ps, prices, &factors) {
            c.period_ms = granularity.period_start(hour);
            out.push(c);
        }
    }
    out
}

/// Cost Explorer's SERVICE of Savings Plans' fees.
pub const SERVICE_SAVINGS_PLANS: &str = "Savings Plans for AWS Compute usage";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::parse;

    const ACCOUNT: &str = "111122223333";

    fn running(id: &str, ty: &str, az: &str, start: &str, end: &str) -> Segment {
        Segment {
            id: id.into(),
            account: ACCOUNT.into(),
            region: "us-east-1".into(),
            az: Some(az.into()),
            resource_id: id.into(),
            meter: Meter::Instance {
                instance_type: ty.into(),
            },
            start_ms: parse(start).unwrap(),
            end_ms: Some(parse(end).unwrap()),
            min_ms: 60_000,
            tags: BTreeMap::new(),
        }
    }

    fn ri(ty: &str, az: Option<&str>, count: u32, start: &str, prices: &PriceList) -> Reservation {
        let (class, term, payment) = (OfferingClass::Standard, Term::OneYear, Payment::NoUpfront);
        let p = ri_price(prices, "us-east-1", ty, class, term, payment).unwrap();
        Reservation {
            id: format!("ri-{ty}"),
            account: ACCOUNT.into(),
            region: "us-east-1".into(),
            instance_type: ty.into(),
            az: az.map(str::to_string),
            count,
            class,
            payment,
            term,
            start_ms: parse(start).unwrap(),
            price: RiPriceRecord {
                upfront: p.upfront,
                hourly: p.hourly,
            },
        }
    }

    fn sum(c: &[Charge], f: impl Fn(&Charge) -> f64) -> f64 {
        c.iter().map(f).sum()
    }

    /// The scenario: two m5.large for two hours, a Reserved Instance covering one and
    /// a Savings Plan part of the other; the rest On-Demand. Worked out by hand.
    #[test]
    fn a_reservation_then_a_savings_plan_then_on_demand() {
        let prices = PriceList::builtin();
        let od = prices.region("us-east-1").unwrap().instances["m5.large"];
        let segs = [
            running(
                "i-1",
                "m5.large",
                "us-east-1a",
                "2026-12-07T10:00:00Z",
                "2026-12-07T12:00:00Z",
            ),
            running(
                "i-2",
                "m5.large",
                "us-east-1b",
                "2026-12-07T10:00:00Z",
                "2026-12-07T12:00:00Z",
            ),
        ];
        let r = ri("m5.large", None, 1, "2026-12-07T10:00:00Z", &prices);
        let d = plan_discount(
            &prices,
            PlanType::Compute,
            Term::OneYear,
            Payment::NoUpfront,
        )
        .unwrap();
        let sp = SavingsPlan {
            id: "sp-1".into(),
            offering_id: String::new(),
            account: ACCOUNT.into(),
            plan_type: PlanType::Compute,
            region: None,
            family: None,
            payment: Payment::NoUpfront,
            term: Term::OneYear,
            commitment: 0.03,
            start_ms: parse("2026-12-07T10:00:00Z").unwrap(),
            discount: d,
            client_token: None,
        };
        let (from, to) = (parse("2026-12-07").unwrap(), parse("2026-12-08").unwrap());
        let now = parse("2026-12-07T12:00:00Z").unwrap();
        let c = bill(
            &segs,
            std::slice::from_ref(&r),
            &[sp],
            &prices,
            Granularity::Daily,
            from,
            to,
            now,
        );
        // By hand, per hour: the reservation's fee; the commitment; the hours the commitment
        // buys at the plan's rate; the rest of the second instance On-Demand.
        let ri_fee = od * (1.0 - 0.375);
        assert!((r.price.hourly - ri_fee).abs() < 1e-12);
        let sp_rate = od * (1.0 - d);
        let sp_hours = 0.03 / sp_rate;
        let per_hour = ri_fee + 0.03 + (1.0 - sp_hours) * od;
        let total = sum(&c, |c| c.cost);
        assert!(
            (total - 2.0 * per_hour).abs() < 1e-9,
            "{total} against {}",
            2.0 * per_hour
        );
        assert!((sum(&c, |c| c.amortized) - 2.0 * per_hour).abs() < 1e-9);
        let by = |pt: &str| -> f64 {
            c.iter()
                .filter(|c| c.purchase_type == pt && c.usage_type == "BoxUsage:m5.large")
                .map(|c| c.quantity)
                .sum()
        };
        assert!((by("Standard Reserved Instances") - 2.0).abs() < 1e-9);
        assert!((by("Savings Plans") - 2.0 * sp_hours).abs() < 1e-9);
        assert!((by(crate::usage::ON_DEMAND) - 2.0 * (1.0 - sp_hours)).abs() < 1e-9);
        // Every usage hour is still reported: 4 instance hours.
        let hours: f64 = c
            .iter()
            .filter(|c| c.usage_type == "BoxUsage:m5.large")
            .map(|c| c.quantity)
            .sum();
        assert!((hours - 4.0).abs() < 1e-9);
    }

    #[test]
    fn regional_reservations_are_size_flexible_and_zonal_ones_are_not() {
        let prices = PriceList::builtin();
        let od = prices.region("us-east-1").unwrap().instances["m5.large"];
        let segs = [
            running(
                "i-1",
                "m5.large",
                "us-east-1a",
                "2026-12-07T10:00:00Z",
                "2026-12-07T11:00:00Z",
            ),
            running(
                "i-2",
                "m5.large",
                "us-east-1b",
                "2026-12-07T10:00:00Z",
                "2026-12-07T11:00:00Z",
            ),
        ];
        let (from, to) = (parse("2026-12-07").unwrap(), parse("2026-12-08").unwrap());
        let now = parse("2026-12-07T11:00:00Z").unwrap();
        // One m5.xlarge (factor 8) covers two m5.large (4 each).
        let big = ri("m5.xlarge", None, 1, "2026-12-07T10:00:00Z", &prices);
        let c = bill(
            &segs,
            std::slice::from_ref(&big),
            &[],
            &prices,
            Granularity::Hourly,
            from,
            to,
            now,
        );
        assert!((sum(&c, |c| c.cost) - big.price.hourly).abs() < 1e-9);
        // A zonal m5.large in us-east-1c covers neither; its fee is still due.
        let zonal = ri(
            "m5.large",
            Some("us-east-1c"),
            1,
            "2026-12-07T10:00:00Z",
            &prices,
        );
        let c = bill(
            &segs,
            std::slice::from_ref(&zonal),
            &[],
            &prices,
            Granularity::Hourly,
            from,
            to,
            now,
        );
        assert!((sum(&c, |c| c.cost) - (2.0 * od + zonal.price.hourly)).abs() < 1e-9);
        // In us-east-1a it covers that one.
        let zonal = ri(
            "m5.large",
            Some("us-east-1a"),
            1,
            "2026-12-07T10:00:00Z",
            &prices,
        );
        let c = bill(
            &segs,
            std::slice::from_ref(&zonal),
            &[],
            &prices,
            Granularity::Hourly,
            from,
            to,
            now,
        );
        assert!((sum(&c, |c| c.cost) - (od + zonal.price.hourly)).abs() < 1e-9);
    }

    #[test]
    fn upfront_payments_are_charged_once_and_amortized_over_the_term() {
        let prices = PriceList::builtin();
        let (class, term) = (OfferingClass::Standard, Term::OneYear);
        let all = ri_price(
            &prices,
            "us-east-1",
            "m5.large",
            class,
            term,
            Payment::AllUpfront,
        )
        .unwrap();
        let partial = ri_price(
            &prices,
            "us-east-1",
            "m5.large",
            class,
            term,
            Payment::PartialUpfront,
        )
        .unwrap();
        assert_eq!(all.hourly, 0.0);
        assert!(
            (partial.upfront * 2.0 - (all.upfront * (1.0 - 0.403) / (1.0 - 0.415))).abs() < 1e-6
        );
        let mut r = ri("m5.large", None, 2, "2026-12-07T10:30:00Z", &prices);
        r.payment = Payment::AllUpfront;
        r.price = RiPriceRecord {
            upfront: all.upfront,
            hourly: 0.0,
        };
        let (from, to) = (parse("2026-12-07").unwrap(), parse("2026-12-08").unwrap());
        let now = parse("2026-12-07T12:30:00Z").unwrap();
        let c = bill(&[], &[r], &[], &prices, Granularity::Daily, from, to, now);
        assert!(
            (sum(&c, |c| c.cost) - 2.0 * all.upfront).abs() < 1e-6,
            "the upfront, once"
        );
        let hours = 2.0;
        let want = 2.0 * all.upfront / (365.0 * 24.0) * hours;
        assert!(
            (sum(&c, |c| c.amortized) - want).abs() < 1e-9,
            "two hours of the term"
        );
        assert!(
            PriceList::parse(&{
                let mut v: serde_json::Value =
                    serde_json::from_str(include_str!("../data/prices.json")).unwrap();
                v.as_object_mut().unwrap().remove("commitments");
                v.to_string()
            })
            .map(
                |p| ri_price(&p, "us-east-1", "m5.large", class, term, Payment::NoUpfront).is_err()
            )
            .unwrap()
        );
    }

    #[test]
    fn ec2_instance_plans_go_before_compute_plans_and_fees_start_with_the_question() {
        let prices = PriceList::builtin();
        let od = prices.region("us-east-1").unwrap().instances["m5.large"];
        let segs = [running(
            "i-1",
            "m5.large",
            "us-east-1a",
            "2026-12-07T10:00:00Z",
            "2026-12-07T11:00:00Z",
        )];
        let plan = |id: &str, plan_type, term| SavingsPlan {
            id: id.into(),
            offering_id: String::new(),
            account: ACCOUNT.into(),
            plan_type,
            region: Some("us-east-1".into()),
            family: Some("m5".into()),
            payment: Payment::NoUpfront,
            term,
            commitment: od,
            start_ms: parse("2026-12-07T10:00:00Z").unwrap(),
            discount: plan_discount(&prices, plan_type, term, Payment::NoUpfront).unwrap(),
            client_token: None,
        };
        // The 3-year Compute plan has the larger discount, yet the EC2 Instance plan is used.
        let compute = plan("sp-a", PlanType::Compute, Term::ThreeYears);
        let instance = plan("sp-b", PlanType::Ec2Instance, Term::OneYear);
        assert!(compute.discount > instance.discount);
        let (from, to) = (parse("2026-12-07").unwrap(), parse("2026-12-08").unwrap());
        let now = parse("2026-12-07T12:00:00Z").unwrap();
        let c = bill(
            &segs,
            &[],
            &[compute, instance.clone()],
            &prices,
            Granularity::Hourly,
            from,
            to,
            now,
        );
        let used: f64 = c
            .iter()
            .filter(|c| c.purchase_type == "Savings Plans" && c.usage_type.starts_with("BoxUsage"))
            .map(|c| c.amortized)
            .sum();
        let unused: BTreeMap<&str, f64> = c
            .iter()
            .filter(|c| {
                c.service == SERVICE_SAVINGS_PLANS
                    && c.period_ms == parse("2026-12-07T10:00:00Z").unwrap()
            })
            .map(|c| (c.resource_id.as_str(), c.amortized))
            .collect();
        assert!(
            (used - od * (1.0 - instance.discount)).abs() < 1e-9,
            "at the EC2 Instance plan's rate"
        );
        assert!(unused["sp-b"] < unused["sp-a"], "{unused:?}");
        // A question starting at 10:30 is charged half of that hour's fee.
        let half = parse("2026-12-07T10:30:00Z").unwrap();
        let c = bill(
            &[],
            &[],
            &[instance],
            &prices,
            Granularity::Hourly,
            half,
            to,
            parse("2026-12-07T11:00:00Z").unwrap(),
        );
        let fee: f64 = c.iter().map(|c| c.cost).sum();
        assert!((fee - od / 2.0).abs() < 1e-9, "{fee}");
    }

    #[test]
    fn normalization_factors() {
        let known: Vec<String> = ["m5.large", "m5.24xlarge", "m5.metal"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(normalization_factor("t3.nano", known.iter()), 0.25);
        assert_eq!(normalization_factor("m5.large", known.iter()), 4.0);
        assert_eq!(normalization_factor("c5.9xlarge", known.iter()), 72.0);
        assert_eq!(normalization_factor("m5.metal", known.iter()), 192.0);
    }
}
