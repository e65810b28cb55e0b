//! Usage as it is metered: a [`Segment`] is one resource using one [`Meter`] at one rate from a
//! start to an end (open while it goes on); and what a segment costs, split into the hours,
//! days or months it falls in, as [`Charge`]s named the way AWS names them (`BoxUsage:m5.large`,
//! `EBS:VolumeUsage.gp3`, ...).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::calendar::{self, HOUR_MS};
use crate::prices::{Ipv4Rule, PriceList};

/// One thing that is billed, at one rate. A change of rate (a ModifyVolume, a stop) ends a
/// segment and starts another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Meter {
    /// An On-Demand instance while `running`: hours.
    Instance { instance_type: String },
    /// A volume's provisioned size: GB-months.
    VolumeStorage { volume_type: String, gib: u64 },
    /// Provisioned IOPS that are billed (io1, io2; gp3 above 3,000): IOPS-months.
    VolumeIops { volume_type: String, iops: u64 },
    /// gp3 throughput above 125 MiB/s: MiB/s-months.
    VolumeThroughput { mibps: u64 },
    /// A snapshot's stored bytes, those it added over its lineage: GB-months.
    SnapshotStorage { bytes: u64 },
    /// A public IPv4 address (an Elastic IP), associated with a running instance or not: hours.
    PublicIpv4 { in_use: bool },
}

/// One resource's use of one meter over time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// Unique (the catalog's key).
    pub id: String,
    pub account: String,
    pub region: String,
    /// The availability zone, for what lives in one.
    #[serde(default)]
    pub az: Option<String>,
    pub resource_id: String,
    pub meter: Meter,
    /// Billing clock, ms since the Unix epoch.
    pub start_ms: u64,
    /// `None` while it goes on.
    #[serde(default)]
    pub end_ms: Option<u64>,
    /// The least billed however soon it ends (60 s for each start of a Linux instance).
    #[serde(default)]
    pub min_ms: u64,
    /// The resource's tags when the segment started (cost allocation tags).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

impl Segment {
    /// Where the segment's billing ends when the billing clock reads `now_ms`: its end (or
    /// now, while open), but not before its minimum.
    pub fn billed_end(&self, now_ms: u64) -> u64 {
        let end = self.end_ms.unwrap_or(now_ms.max(self.start_ms));
        end.max(self.start_ms + self.min_ms)
    }
}

/// Cost Explorer's SERVICE of instance hours.
pub const SERVICE_COMPUTE: &str = "Amazon Elastic Compute Cloud - Compute";
/// Cost Explorer's SERVICE of EBS and other EC2 charges.
pub const SERVICE_EC2_OTHER: &str = "EC2 - Other";
/// Cost Explorer's SERVICE of public IPv4 addresses (since 2024).
pub const SERVICE_VPC: &str = "Amazon Virtual Private Cloud";
/// PURCHASE_TYPE of On-Demand usage (and of usage that has no other).
pub const ON_DEMAND: &str = "On Demand Instances";
/// INSTANCE_TYPE of usage that is not an instance's.
pub const NO_INSTANCE_TYPE: &str = "NoInstanceType";

/// What one segment cost in one period.
#[derive(Debug, Clone, PartialEq)]
pub struct Charge {
    /// Start of the period (ms).
    pub period_ms: u64,
    pub account: String,
    pub region: String,
    pub az: String,
    pub service: &'static str,
    pub usage_type: String,
    pub operation: &'static str,
    pub instance_type: String,
    pub purchase_type: &'static str,
    pub resource_id: String,
    pub tags: BTreeMap<String, String>,
    /// The usage's unit (`Hrs`, `GB-Mo`, ...).
    pub unit: &'static str,
    pub quantity: f64,
    /// USD, as charged (Cost Explorer's unblended cost).
    pub cost: f64,
    /// USD with upfront payments spread over their terms (amortized cost).
    pub amortized: f64,
}

/// How usage is bucketed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    Hourly,
    Daily,
    Monthly,
}

impl Granularity {
    /// Start of the period holding `ms`.
    pub fn period_start(self, ms: u64) -> u64 {
        match self {
            Granularity::Hourly => ms - ms % HOUR_MS,
            Granularity::Daily => ms - ms % calendar::DAY_MS,
            Granularity::Monthly => calendar::month_start(ms),
        }
    }

    /// Start of the period after the one holding `ms`.
    pub fn period_end(self, ms: u64) -> u64 {
        match self {
            Granularity::Hourly => self.period_start(ms) + HOUR_MS,
            Granularity::Daily => self.period_start(ms) + calendar::DAY_MS,
            Granularity::Monthly => calendar::next_month(ms),
        }
    }
}

/// The usage type, operation, service and unit of a meter's (one tier's) charge, and its rate
/// in that unit per hour or per month.
struct Line {
    usage_type: String,
    operation: &'static str,
    service: &'static str,
    unit: &'static str,
    /// Quantity per hour (`Hrs` units) or per month (`-Mo` units).
    rate: f64,
    monthly: bool,
    price: f64,
}

/// EBS's usage-type suffix and CreateVolume operation of a volume type.
fn volume_names(volume_type: &str) -> (&'static str, &'static str) {
    match volume_type {
        "gp3" => (".gp3", "CreateVolume-Gp3"),
        "gp2" => (".gp2", "CreateVolume-Gp2"),
        "io1" => (".piops", "CreateVolume-P-IOPS"),
        "io2" => (".io2", "CreateVolume-Io2"),
        "st1" => (".st1", "CreateVolume-St1"),
        "sc1" => (".sc1", "CreateVolume-Sc1"),
        _ => ("", "CreateVolume"),
    }
}

/// The lines a meter is charged as in `region` (none where the price list has no price, or the
/// rule makes it free).
fn lines(meter: &Meter, prices: &PriceList, region: &str) -> Vec<Line> {
    let Ok(r) = prices.region(region) else {
        return Vec::new();
    };
    let p = &r.usage_type_prefix;
    match meter {
        Meter::Instance { instance_type } => r
            .instances
            .get(instance_type)
            .map(|&price| Line {
                usage_type: format!("{p}BoxUsage:{instance_type}"),
                operation: "RunInstances",
                service: SERVICE_COMPUTE,
                unit: "Hrs",
                rate: 1.0,
                monthly: false,
                price,
            })
            .into_iter()
            .collect(),
        Meter::VolumeStorage { volume_type, gib } => {
            let (suffix, operation) = volume_names(volume_type);
            r.ebs
                .get(volume_type)
                .map(|v| Line {
                    usage_type: format!("{p}EBS:VolumeUsage{suffix}"),
                    operation,
                    service: SERVICE_EC2_OTHER,
                    unit: "GB-Mo",
                    rate: *gib as f64,
                    monthly: true,
                    price: v.gb_month,
                })
                .into_iter()
                .collect()
        }
        Meter::VolumeIops { volume_type, iops } => {
            let (suffix, operation) = volume_names(volume_type);
            let Some(v) = r.ebs.get(volume_type) else {
                return Vec::new();
            };
            let line = |usage_type: String, rate: u64, price: f64| Line {
                usage_type,
                operation,
                service: SERVICE_EC2_OTHER,
                unit: "IOPS-Mo",
                rate: rate as f64,
                monthly: true,
                price,
            };
            if let Some(tiers) = &v.iops_month_tiers {
                // io2: each tier's share of the IOPS at its own price and usage type.
                let mut out = Vec::new();
                let mut below = 0u64;
                for (i, (upto, price)) in tiers.iter().enumerate() {
                    let top = upto.unwrap_or(u64::MAX).min(*iops);
                    if top > below {
                        let tier = if i == 0 {
                            String::new()
                        } else {
                            format!(".tier{}", i + 1)
                        };
                        out.push(line(
                            format!("{p}EBS:VolumeP-IOPS{suffix}{tier}"),
                            top - below,
                            *price,
                        ));
                    }
                    below = below.max(top);
                }
                out
            } else {
                v.iops_month
                    .map(|price| line(format!("{p}EBS:VolumeP-IOPS{suffix}"), *iops, price))
                    .into_iter()
                    .collect()
            }
        }
        Meter::VolumeThroughput { mibps } => r
            .ebs
            .get("gp3")
            .and_then(|v| v.throughput_mibps_month)
            .map(|price| Line {
                usage_type: format!("{p}EBS:VolumeP-Throughput.gp3"),
                operation: "CreateVolume-Gp3",
                service: SERVICE_EC2_OTHER,
                unit: "MiBps-Mo",
                rate: *mibps as f64,
                monthly: true,
                price,
            })
            .into_iter()
            .collect(),
        Meter::SnapshotStorage { bytes } => vec![Line {
            usage_type: format!("{p}EBS:SnapshotUsage"),
            operation: "CreateSnapshot",
            service: SERVICE_EC2_OTHER,
            unit: "GB-Mo",
            rate: *bytes as f64 / (1u64 << 30) as f64,
            monthly: true,
            price: r.snapshot.standard_gb_month,
        }],
        Meter::PublicIpv4 { in_use } => {
            if *in_use && prices.public_ipv4_rule == Ipv4Rule::IdleOnly {
                return Vec::new();
            }
            let (what, operation) = if *in_use {
                ("InUseAddress", "AssociateAddressVPC")
            } else {
                ("IdleAddress", "AllocateAddressVPC")
            };
            vec![Line {
                usage_type: format!("{p}PublicIPv4:{what}"),
                operation,
                service: SERVICE_VPC,
                unit: "Hrs",
                rate: 1.0,
                monthly: false,
                price: r.public_ipv4_hour,
            }]
        }
    }
}

/// What `segments` cost within `[from_ms, to_ms)`, one [`Charge`] per segment, line and period,
/// with the billing clock at `now_ms`.
pub fn charges(
    segments: &[Segment],
    prices: &PriceList,
    granularity: Granularity,
    from_ms: u64,
    to_ms: u64,
    now_ms: u64,
) -> Vec<Charge> {
    let mut out = Vec::new();
    for s in segments {
        let start = s.start_ms.max(from_ms);
        let end = s.billed_end(now_ms).min(to_ms);
        if start >= end {
            continue;
        }
        let lines = lines(&s.meter, prices, &s.region);
        if lines.is_empty() {
            continue;
        }
        let instance_type = match &s.meter {
            Meter::Instance { instance_type } => instance_type.clone(),
            _ => NO_INSTANCE_TYPE.to_string(),
        };
        let mut at = start;
        while at < end {
            let next = granularity.period_end(at).min(end);
            let ms = (next - at) as f64;
            for l in &lines {
                let per = if l.monthly {
                    calendar::month_len(at) as f64
                } else {
                    HOUR_MS as f64
                };
                let quantity = l.rate * ms / per;
                out.push(Charge {
                    period_ms: granularity.period_start(at),
                    account: s.account.clone(),
                    region: s.region.clone(),
                    az: s.az.clone().unwrap_or_default(),
                    service: l.service,
                    usage_type: l.usage_type.clone(),
                    operation: l.operation,
                    instance_type: instance_type.clone(),
                    purchase_type: ON_DEMAND,
                    resource_id: s.resource_id.clone(),
                    tags: s.tags.clone(),
                    unit: l.unit,
                    quantity,
                    cost: quantity * l.price,
                    amortized: quantity * l.price,
                });
            }
            at = next;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::parse;

    fn seg(meter: Meter, start: &str, end: Option<&str>, min_ms: u64) -> Segment {
        Segment {
            id: "s".into(),
            account: "111122223333".into(),
            region: "us-east-1".into(),
            az: Some("us-east-1a".into()),
            resource_id: "r".into(),
            meter,
            start_ms: parse(start).unwrap(),
            end_ms: end.map(|e| parse(e).unwrap()),
            min_ms,
            tags: BTreeMap::new(),
        }
    }

    fn total(c: &[Charge]) -> f64 {
        c.iter().map(|c| c.cost).sum()
    }

    #[test]
    fn instances_are_billed_per_second_with_a_minute_minimum() {
        let prices = PriceList::builtin();
        let hourly = prices.region("us-east-1").unwrap().instances["m5.large"];
        let m = Meter::Instance {
            instance_type: "m5.large".into(),
        };
        let short = seg(
            m.clone(),
            "2026-12-07T10:00:00Z",
            Some("2026-12-07T10:00:30Z"),
            60_000,
        );
        let long = seg(
            m,
            "2026-12-07T10:00:00Z",
            Some("2026-12-07T10:01:30Z"),
            60_000,
        );
        let (from, to) = (parse("2026-12-07").unwrap(), parse("2026-12-08").unwrap());
        let c = charges(&[short], &prices, Granularity::Daily, from, to, to);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].usage_type, "BoxUsage:m5.large");
        assert!((c[0].quantity - 60.0 / 3600.0).abs() < 1e-12);
        assert!((total(&c) - hourly * 60.0 / 3600.0).abs() < 1e-12);
        let c = charges(&[long], &prices, Granularity::Hourly, from, to, to);
        assert!((total(&c) - hourly * 90.0 / 3600.0).abs() < 1e-12);
    }

    #[test]
    fn monthly_prices_prorate_by_the_month_and_split_across_periods() {
        let prices = PriceList::builtin();
        let gp3 = &prices.region("us-east-1").unwrap().ebs["gp3"];
        // December has 31 days: one hour of 100 GiB is 100/744 GB-months.
        let s = seg(
            Meter::VolumeStorage {
                volume_type: "gp3".into(),
                gib: 100,
            },
            "2026-12-07T10:30:00Z",
            Some("2026-12-07T11:30:00Z"),
            0,
        );
        let (from, to) = (parse("2026-12-01").unwrap(), parse("2027-01-01").unwrap());
        let c = charges(&[s], &prices, Granularity::Hourly, from, to, to);
        assert_eq!(c.len(), 2, "two hours' halves");
        assert_eq!(c[0].unit, "GB-Mo");
        let want = 100.0 / 744.0;
        assert!((c.iter().map(|c| c.quantity).sum::<f64>() - want).abs() < 1e-12);
        assert!((total(&c) - want * gp3.gb_month).abs() < 1e-12);
    }

    #[test]
    fn io2_iops_are_charged_by_tier() {
        let prices = PriceList::builtin();
        let s = seg(
            Meter::VolumeIops {
                volume_type: "io2".into(),
                iops: 80_000,
            },
            "2026-12-01",
            Some("2027-01-01"),
            0,
        );
        let (from, to) = (parse("2026-12-01").unwrap(), parse("2027-01-01").unwrap());
        let c = charges(&[s], &prices, Granularity::Monthly, from, to, to);
        let by: BTreeMap<_, _> = c
            .iter()
            .map(|c| (c.usage_type.as_str(), c.quantity))
            .collect();
        assert_eq!(by.len(), 3, "{by:?}");
        assert!((by["EBS:VolumeP-IOPS.io2"] - 32_000.0).abs() < 1e-6);
        assert!((by["EBS:VolumeP-IOPS.io2.tier2"] - 32_000.0).abs() < 1e-6);
        assert!((by["EBS:VolumeP-IOPS.io2.tier3"] - 16_000.0).abs() < 1e-6);
    }

    #[test]
    fn open_segments_run_to_now_and_outside_the_window_cost_nothing() {
        let prices = PriceList::builtin();
        let m = Meter::PublicIpv4 { in_use: false };
        let s = seg(m, "2026-12-07T10:00:00Z", None, 0);
        let now = parse("2026-12-07T12:00:00Z").unwrap();
        let (from, to) = (parse("2026-12-07").unwrap(), parse("2026-12-08").unwrap());
        let c = charges(
            std::slice::from_ref(&s),
            &prices,
            Granularity::Daily,
            from,
            to,
            now,
        );
        assert!((c[0].quantity - 2.0).abs() < 1e-12);
        let c = charges(&[s], &prices, Granularity::Daily, to, to + 86_400_000, now);
        assert!(c.is_empty());
    }

    #[test]
    fn in_use_addresses_are_free_under_the_older_rule() {
        let mut prices = PriceList::builtin();
        let s = seg(
            Meter::PublicIpv4 { in_use: true },
            "2026-12-07T10:00:00Z",
            Some("2026-12-07T11:00:00Z"),
            0,
        );
        let (from, to) = (parse("2026-12-07").unwrap(), parse("2026-12-08").unwrap());
        let c = charges(
            std::slice::from_ref(&s),
            &prices,
            Granularity::Daily,
            from,
            to,
            to,
        );
        assert_eq!(c[0].usage_type, "PublicIPv4:InUseAddress");
        prices.public_ipv4_rule = Ipv4Rule::IdleOnly;
        assert!(charges(&[s], &prices, Granularity::Daily, from, to, to).is_empty());
    }
}
