//! Reserved Instances and Savings Plans: the offerings of this region (every instance type of
//! the price list, both classes, three payment options, one and three years, regional and in
//! each zone; Compute plans and an EC2 Instance plan per family), buying them, and listing what
//! an account bought. They start at once (no queued purchases) on the billing clock, and are
//! applied to the account's usage by `billing::commitments`. Also Spot price history, from
//! `billing::spot`'s price process.

use sha2::{Digest, Sha256};

use billing::commitments::{
    OfferingClass, Payment, PlanType, Reservation, RiPriceRecord, SavingsPlan, Term, family,
    plan_discount, ri_price,
};

use super::filter::{check_untagged_names, check_values};
use super::network::filters_pass;
use super::{Account, ControlPlane, Ec2Error, ErrorCode, model};
use crate::catalog::Change;

/// A Reserved Instance offering.
#[derive(Debug, Clone, PartialEq)]
pub struct RiOffering {
    pub id: String,
    pub instance_type: String,
    /// Zonal offerings: the zone; regional: `None`.
    pub az: Option<String>,
    pub class: OfferingClass,
    pub term: Term,
    pub payment: Payment,
    /// Per instance: paid at purchase, and every hour.
    pub fixed_price: f64,
    pub hourly: f64,
}

/// A bought Reserved Instance and its state on the billing clock.
#[derive(Debug, Clone, PartialEq)]
pub struct RiView {
    pub record: Reservation,
    /// `active` or `retired`.
    pub state: &'static str,
}

/// DescribeReservedInstancesOfferings' question.
#[derive(Debug, Clone, Default)]
pub struct RiOfferingsRequest {
    pub ids: Vec<String>,
    pub instance_type: Option<String>,
    pub availability_zone: Option<String>,
    pub offering_class: Option<String>,
    pub offering_type: Option<String>,
    pub min_duration: Option<i64>,
    pub max_duration: Option<i64>,
    pub product_description: Option<String>,
    pub instance_tenancy: Option<String>,
    pub filters: Vec<model::Filter>,
}

/// A Savings Plans offering.
#[derive(Debug, Clone, PartialEq)]
pub struct SpOffering {
    pub id: String,
    pub plan_type: PlanType,
    pub term: Term,
    pub payment: Payment,
    /// EC2 Instance plans: the region and family.
    pub region: Option<String>,
    pub family: Option<String>,
}

/// A bought Savings Plan and its state.
#[derive(Debug, Clone, PartialEq)]
pub struct SpView {
    pub record: SavingsPlan,
    pub state: &'static str,
}

/// A stable UUID-shaped id of an offering's description.
fn offering_id(key: &str) -> String {
    let h = Sha256::digest(key.as_bytes());
    uuid_of(h[..16].try_into().expect("16 bytes"))
}

/// A new UUID-shaped id.
fn new_uuid() -> String {
    uuid_of(rand::random())
}

/// 16 bytes as a UUID's text.
fn uuid_of(b: [u8; 16]) -> String {
    let x: String = b.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

fn not_offered(id: &str) -> Ec2Error {
    Ec2Error::new(
        ErrorCode::InvalidReservedInstancesOfferingId,
        format!("The Reserved Instances offering '{id}' does not exist."),
    )
}

impl ControlPlane {
    /// Every Reserved Instance offering of this region.
    fn all_ri_offerings(&self) -> Vec<RiOffering> {
        let prices = self.meters.prices();
        let region = self.cfg.region.as_str();
        let Ok(r) = prices.region(region) else {
            return Vec::new();
        };
        let scopes: Vec<Option<&String>> = std::iter::once(None)
            .chain(self.cfg.availability_zones.iter().map(Some))
            .collect();
        let mut out = Vec::new();
        for ty in r.instances.keys() {
            for class in [OfferingClass::Standard, OfferingClass::Convertible] {
                for term in Term::ALL {
                    for payment in Payment::ALL {
                        let Ok(p) = ri_price(prices, region, ty, class, term, payment) else {
                            continue;
                        };
                        for az in &scopes {
                            let key = format!(
                                "ri|{ty}|{}|{}|{}|{}",
                                az.map_or(region, |z| z.as_str()),
                                class.as_str(),
                                term.seconds(),
                                payment.as_str()
                            );
                            out.push(RiOffering {
                                id: offering_id(&key),
                                instance_type: ty.clone(),
                                az: az.cloned(),
                                class,
                                term,
                                payment,
                                fixed_price: p.upfront,
                                hourly: p.hourly,
                            });
                        }
                    }
                }
            }
        }
        out
    }

    /// DescribeReservedInstancesOfferings: Linux/UNIX, default tenancy, this region's
    /// offerings that match, a page of `max` from `token` (an index).
    pub fn describe_ri_offerings(
        &self,
        req: &RiOfferingsRequest,
        max: usize,
        token: Option<&str>,
    ) -> Result<(Vec<RiOffering>, Option<String>), Ec2Error> {
        for f in &req.filters {
            check_values(&f.name, &f.values)?;
        }
        check_untagged_names(
            &req.filters,
            &[
                "availability-zone",
                "duration",
                "fixed-price",
                "instance-type",
                "marketplace",
                "product-description",
                "reserved-instances-offering-id",
                "scope",
                "usage-price",
            ],
        )?;
        if let Some(az) = &req.availability_zone
            && !self.cfg.availability_zones.contains(az)
        {
            return Err(Ec2Error::invalid_value(format!(
                "Invalid availability zone: [{az}]"
            )));
        }
        let start = match token {
            None => 0,
            Some(t) => t
                .parse::<usize>()
                .map_err(|_| Ec2Error::invalid_value(format!("Invalid NextToken: {t}")))?,
        };
        // Only Linux/UNIX in shared tenancy is offered (the price list's prices).
        let linux = req
            .product_description
            .as_deref()
            .is_none_or(|d| d == "Linux/UNIX" || d == "Linux/UNIX (Amazon VPC)");
        let shared = req
            .instance_tenancy
            .as_deref()
            .is_none_or(|t| t == "default");
        if !linux || !shared {
            return Ok((Vec::new(), None));
        }
        let matching: Vec<RiOffering> = self
            .all_ri_offerings()
            .into_iter()
            .filter(|o| req.ids.is_empty() || req.ids.contains(&o.id))
            .filter(|o| {
                req.instance_type
                    .as_ref()
                    .is_none_or(|t| *t == o.instance_type)
            })
            .filter(|o| {
                req.availability_zone
                    .as_ref()
                    .is_none_or(|z| o.az.as_ref() == Some(z))
            })
            .filter(|o| {
                req.offering_class
                    .as_deref()
                    .is_none_or(|c| c == o.class.as_str())
            })
            .filter(|o| {
                req.offering_type
                    .as_deref()
                    .is_none_or(|t| t == o.payment.as_str())
            })
            .filter(|o| {
                let d = o.term.seconds() as i64;
                req.min_duration.is_none_or(|m| d >= m) && req.max_duration.is_none_or(|m| d <= m)
            })
            .filter(|o| {
                filters_pass(&req.filters, |name| match name {
                    "availability-zone" => Some(o.az.clone().into_iter().collect()),
                    "duration" => Some(vec![o.term.seconds().to_string()]),
                    "fixed-price" => Some(vec![o.fixed_price.to_string()]),
                    "instance-type" => Some(vec![o.instance_type.clone()]),
                    "marketplace" => Some(vec!["false".into()]),
                    "product-description" => Some(vec!["Linux/UNIX".into()]),
                    "reserved-instances-offering-id" => Some(vec![o.id.clone()]),
                    "scope" => Some(vec![scope(o.az.is_some()).into()]),
                    "usage-price" => Some(vec!["0.0".into()]),
                    _ => None,
                })
            })
            .collect();
        let page: Vec<RiOffering> = matching.iter().skip(start).take(max).cloned().collect();
        let next = (start.saturating_add(max) < matching.len()).then(|| (start + max).to_string());
        Ok((page, next))
    }

    /// PurchaseReservedInstancesOffering: `count` instances of an offering, active from now.
    pub fn purchase_ri(
        &self,
        who: Account,
        offering_id: &str,
        count: i32,
    ) -> Result<String, Ec2Error> {
        if count < 1 {
            return Err(Ec2Error::invalid_value(format!(
                "Invalid value '{count}' for instanceCount: it must be at least 1."
            )));
        }
        let o = self
            .all_ri_offerings()
            .into_iter()
            .find(|o| o.id == offering_id)
            .ok_or_else(|| not_offered(offering_id))?;
        let r = Reservation {
            id: new_uuid(),
            account: who.id().to_string(),
            region: self.cfg.region.clone(),
            instance_type: o.instance_type,
            az: o.az,
            count: count as u32,
            class: o.class,
            payment: o.payment,
            term: o.term,
            start_ms: self.meters.now(),
            price: RiPriceRecord {
                upfront: o.fixed_price,
                hourly: o.hourly,
            },
        };
        let id = r.id.clone();
        let _st = self.lock();
        if self.meters.commitments_of(who.id()).0.len() >= COMMITMENT_QUOTA {
            return Err(Ec2Error::new(
                ErrorCode::ReservedInstancesLimitExceeded,
                format!(
                    "An account may hold at most {COMMITMENT_QUOTA} Reserved Instance purchases."
                ),
            ));
        }
        self.commit(&[Change::PutReservation(r)])?;
        tracing::info!(reserved_instances_id = %id, count, "Reserved Instances bought");
        Ok(id)
    }

    /// DescribeReservedInstances: the account's, by id, filters, class and payment option.
    pub fn describe_ris(
        &self,
        who: Account,
        ids: &[String],
        offering_class: Option<&str>,
        offering_type: Option<&str>,
        filters: &[model::Filter],
    ) -> Result<Vec<RiView>, Ec2Error> {
        for f in filters {
            check_values(&f.name, &f.values)?;
        }
        check_untagged_names(
            filters,
            &[
                "availability-zone",
                "duration",
                "fixed-price",
                "instance-type",
                "product-description",
                "reserved-instances-id",
                "scope",
                "state",
                "usage-price",
            ],
        )?;
        let now = self.meters.now();
        let (mine, _) = self.meters.commitments_of(who.id());
        if let Some(id) = ids.iter().find(|id| !mine.iter().any(|r| &r.id == *id)) {
            return Err(Ec2Error::new(
                ErrorCode::InvalidReservedInstancesId,
                format!("Reserved Instances ID '{id}' does not exist."),
            ));
        }
        Ok(mine
            .into_iter()
            .filter(|r| ids.is_empty() || ids.contains(&r.id))
            .filter(|r| offering_class.is_none_or(|c| c == r.class.as_str()))
            .filter(|r| offering_type.is_none_or(|t| t == r.payment.as_str()))
            .map(|r| RiView {
                state: if now >= r.end_ms() {
                    "retired"
                } else {
                    "active"
                },
                record: r,
            })
            .filter(|v| {
                let r = &v.record;
                filters_pass(filters, |name| match name {
                    "availability-zone" => Some(r.az.clone().into_iter().collect()),
                    "duration" => Some(vec![r.term.seconds().to_string()]),
                    "instance-type" => Some(vec![r.instance_type.clone()]),
                    "product-description" => Some(vec!["Linux/UNIX".into()]),
                    "reserved-instances-id" => Some(vec![r.id.clone()]),
                    "scope" => Some(vec![scope(r.az.is_some()).into()]),
                    "state" => Some(vec![v.state.into()]),
                    "fixed-price" => Some(vec![r.price.upfront.to_string()]),
                    "usage-price" => Some(vec!["0.0".into()]),
                    _ => None,
                })
            })
            .collect())
    }

    /// Every Savings Plans offering: Compute plans, and an EC2 Instance plan per family of this
    /// region's price list.
    pub fn savings_plans_offerings(&self) -> Vec<SpOffering> {
        let prices = self.meters.prices();
        let region = self.cfg.region.as_str();
        let mut families: Vec<String> = prices
            .region(region)
            .map(|r| r.instances.keys().map(|t| family(t).to_string()).collect())
            .unwrap_or_default();
        families.dedup();
        let mut out = Vec::new();
        for term in Term::ALL {
            for payment in Payment::ALL {
                if plan_discount(prices, PlanType::Compute, term, payment).is_ok() {
                    let key = format!("sp|Compute|{}|{}", term.seconds(), payment.as_str());
                    out.push(SpOffering {
                        id: offering_id(&key),
                        plan_type: PlanType::Compute,
                        term,
                        payment,
                        region: None,
                        family: None,
                    });
                }
                if plan_discount(prices, PlanType::Ec2Instance, term, payment).is_ok() {
                    for f in &families {
                        let key = format!(
                            "sp|EC2Instance|{region}|{f}|{}|{}",
                            term.seconds(),
                            payment.as_str()
                        );
                        out.push(SpOffering {
                            id: offering_id(&key),
                            plan_type: PlanType::Ec2Instance,
                            term,
                            payment,
                            region: Some(region.to_string()),
                            family: Some(f.clone()),
                        });
                    }
                }
            }
        }
        out
    }

    /// CreateSavingsPlan: a commitment of `commitment` USD an hour under an offering, active
    /// from now. `upfront`, if given, must be what the payment option makes it. A repeated
    /// `client_token` answers with the plan it bought.
    pub fn create_savings_plan(
        &self,
        who: Account,
        offering_id: &str,
        commitment: f64,
        upfront: Option<f64>,
        client_token: Option<&str>,
    ) -> Result<SavingsPlan, Ec2Error> {
        let bad = |m: String| Ec2Error::new(ErrorCode::ValidationException, m);
        // Under the state lock from the check to the commit: two calls with one token buy once.
        let _st = self.lock();
        let (_, mine) = self.meters.commitments_of(who.id());
        if let Some(token) = client_token
            && let Some(p) = mine
                .iter()
                .find(|p| p.client_token.as_deref() == Some(token))
        {
            return Ok(p.clone());
        }
        if mine.len() >= COMMITMENT_QUOTA {
            return Err(Ec2Error::new(
                ErrorCode::ServiceQuotaExceededException,
                format!("An account may hold at most {COMMITMENT_QUOTA} Savings Plans."),
            ));
        }
        if !(commitment.is_finite() && (0.001..=5000.0).contains(&commitment)) {
            return Err(bad(format!(
                "commitment must be between 0.001 and 5000 USD an hour, got {commitment}"
            )));
        }
        let o = self
            .savings_plans_offerings()
            .into_iter()
            .find(|o| o.id == offering_id)
            .ok_or_else(|| {
                Ec2Error::new(
                    ErrorCode::ResourceNotFoundException,
                    format!("Savings Plan offering {offering_id} not found"),
                )
            })?;
        let discount = plan_discount(self.meters.prices(), o.plan_type, o.term, o.payment)
            .map_err(|e| bad(e.to_string()))?;
        let plan = SavingsPlan {
            id: new_uuid(),
            offering_id: o.id.clone(),
            account: who.id().to_string(),
            plan_type: o.plan_type,
            region: o.region,
            family: o.family,
            payment: o.payment,
            term: o.term,
            commitment,
            start_ms: self.meters.now(),
            discount,
            client_token: client_token.map(str::to_string),
        };
        if let Some(u) = upfront
            && (u - plan.upfront()).abs() > 0.005
        {
            return Err(bad(format!(
                "upfrontPaymentAmount must be {:.2} for a {} plan of this commitment",
                plan.upfront(),
                plan.payment.as_str()
            )));
        }
        self.commit(&[Change::PutSavingsPlan(plan.clone())])?;
        tracing::info!(savings_plan_id = %plan.id, commitment, "Savings Plan bought");
        Ok(plan)
    }

    /// DescribeSavingsPlans: the account's plans, by id and state.
    pub fn describe_savings_plans(
        &self,
        who: Account,
        ids: &[String],
        states: &[String],
    ) -> Vec<SpView> {
        let now = self.meters.now();
        let (_, mine) = self.meters.commitments_of(who.id());
        mine.into_iter()
            .filter(|p| ids.is_empty() || ids.contains(&p.id))
            .map(|p| SpView {
                state: if now >= p.end_ms() {
                    "retired"
                } else {
                    "active"
                },
                record: p,
            })
            .filter(|v| states.is_empty() || states.iter().any(|s| s == v.state))
            .collect()
    }

    /// The billing clock (for encoders that print commitments' dates).
    pub fn billing_clock(&self) -> u64 {
        self.meters.now()
    }
}

/// EC2's `scope` of a reservation.
pub fn scope(zonal: bool) -> &'static str {
    if zonal { "Availability Zone" } else { "Region" }
}

/// One Spot price as DescribeSpotPriceHistory lists it: in effect from `timestamp_ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct SpotPricePoint {
    pub instance_type: String,
    pub availability_zone: String,
    pub price: f64,
    pub timestamp_ms: u64,
}

/// DescribeSpotPriceHistory's question.
#[derive(Debug, Clone, Default)]
pub struct SpotHistoryRequest {
    pub instance_types: Vec<String>,
    pub availability_zone: Option<String>,
    pub product_descriptions: Vec<String>,
    pub start_ms: Option<u64>,
    pub end_ms: Option<u64>,
    pub filters: Vec<model::Filter>,
}

/// The most Reserved Instance purchases, and Savings Plans, one account may hold (a quota, so
/// that what a bill walks through stays bounded).
const COMMITMENT_QUOTA: usize = 100;

/// Spot price history is kept for 90 days, as on EC2.
const SPOT_HISTORY_MS: u64 = 90 * 24 * 3_600_000;

impl ControlPlane {
    /// DescribeSpotPriceHistory: each type's and zone's price changes from `start` to `end` on
    /// the billing clock (prices change on the hour), newest first, with the price in effect
    /// at `start`; without a range, the current price. A page of `max` from `token`.
    pub fn describe_spot_price_history(
        &self,
        req: &SpotHistoryRequest,
        max: usize,
        token: Option<&str>,
    ) -> Result<(Vec<SpotPricePoint>, Option<String>), Ec2Error> {
        const HOUR: u64 = 3_600_000;
        for f in &req.filters {
            check_values(&f.name, &f.values)?;
        }
        check_untagged_names(
            &req.filters,
            &["availability-zone", "instance-type", "product-description"],
        )?;
        let prices = self.meters.prices();
        let region = self.cfg.region.as_str();
        let known = prices
            .region(region)
            .map(|r| r.instances.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default();
        if let Some(t) = req.instance_types.iter().find(|t| !known.contains(t)) {
            return Err(Ec2Error::invalid_value(format!(
                "The instance type '{t}' has no Spot price in {region}."
            )));
        }
        if let Some(az) = &req.availability_zone
            && !self.cfg.availability_zones.contains(az)
        {
            return Err(Ec2Error::invalid_value(format!(
                "Invalid availability zone: [{az}]"
            )));
        }
        let linux = |d: &str| d == "Linux/UNIX" || d == "Linux/UNIX (Amazon VPC)";
        if !req.product_descriptions.is_empty()
            && !req.product_descriptions.iter().any(|d| linux(d))
        {
            return Ok((Vec::new(), None));
        }
        let now = self.meters.now();
        let end = req.end_ms.unwrap_or(now).min(now);
        let start = req
            .start_ms
            .unwrap_or(end)
            .max(end.saturating_sub(SPOT_HISTORY_MS));
        if start > end {
            return Err(Ec2Error::invalid_value(
                "The start time must be before the end time.",
            ));
        }
        // Hours whose price was in effect during [start, end], newest first.
        let (first, last) = (start / HOUR, end / HOUR);
        let hours = (last - first + 1) as usize;
        let combos: Vec<(String, String)> = known
            .iter()
            .filter(|t| req.instance_types.is_empty() || req.instance_types.contains(t))
            .flat_map(|t| {
                self.cfg
                    .availability_zones
                    .iter()
                    .filter(|z| req.availability_zone.as_ref().is_none_or(|a| a == *z))
                    .map(move |z| (t.clone(), z.clone()))
            })
            .filter(|(t, z)| {
                filters_pass(&req.filters, |name| match name {
                    "availability-zone" => Some(vec![z.clone()]),
                    "instance-type" => Some(vec![t.clone()]),
                    "product-description" => Some(vec!["Linux/UNIX".into()]),
                    _ => None,
                })
            })
            .collect();
        let offset = match token {
            None => 0,
            Some(t) => t
                .parse::<usize>()
                .map_err(|_| Ec2Error::invalid_value(format!("Invalid NextToken: {t}")))?,
        };
        let total = combos.len().saturating_mul(hours);
        let page: Vec<SpotPricePoint> = (offset..total.min(offset.saturating_add(max)))
            .filter_map(|i| {
                let (t, z) = &combos[i / hours];
                let hour = last - (i % hours) as u64;
                let at = hour * HOUR;
                let price = billing::spot::price(prices, region, t, z, at).ok()?;
                Some(SpotPricePoint {
                    instance_type: t.clone(),
                    availability_zone: z.clone(),
                    price,
                    timestamp_ms: at,
                })
            })
            .collect();
        let next = (offset.saturating_add(max) < total).then(|| (offset + max).to_string());
        Ok((page, next))
    }
}
