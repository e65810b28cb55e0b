//! EC2 Query encoders for Reserved Instances (the calls of `control::commitments`):
//! DescribeReservedInstancesOfferings, PurchaseReservedInstancesOffering and
//! DescribeReservedInstances; and DescribeSpotPriceHistory.

use super::ec2::filters;
use super::query::Params;
use super::xml::Xml;
use crate::api::format_time as time;
use crate::control::commitments::{RiOfferingsRequest, SpotHistoryRequest, scope};
use crate::control::filter::page_size;
use crate::control::{Account, ControlPlane, Ec2Error};

/// A long parameter.
fn long(p: &Params, name: &str) -> Result<Option<i64>, Ec2Error> {
    p.get(name)
        .map(|v| {
            v.trim().parse::<i64>().map_err(|_| {
                Ec2Error::invalid_value(format!(
                    "Value ({v}) for parameter {name} is invalid. Expected an integer."
                ))
            })
        })
        .transpose()
}

/// The recurring charge of a price per hour (none when it is zero, as EC2 lists it).
fn recurring(x: &mut Xml, hourly: f64) {
    x.node("recurringCharges", |x| {
        if hourly > 0.0 {
            x.node("item", |x| {
                x.elem("frequency", "Hourly").elem("amount", hourly);
            });
        }
    });
}

pub(super) fn describe_offerings(
    cp: &ControlPlane,
    _: Account,
    p: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    // 100 a page unless asked for fewer, as EC2 pages offerings.
    let max = page_size(p.int("MaxResults")?, false, "", 100)?.min(100);
    let req = RiOfferingsRequest {
        ids: p.list("ReservedInstancesOfferingId"),
        instance_type: p.string("InstanceType"),
        availability_zone: p.string("AvailabilityZone"),
        offering_class: p.string("OfferingClass"),
        offering_type: p.string("OfferingType"),
        min_duration: long(p, "MinDuration")?,
        max_duration: long(p, "MaxDuration")?,
        product_description: p.string("ProductDescription"),
        instance_tenancy: p.string("InstanceTenancy"),
        filters: filters(p),
    };
    let (page, next) = cp.describe_ri_offerings(&req, max, p.get("NextToken"))?;
    x.list("reservedInstancesOfferingsSet", &page, |x, o| {
        x.elem("reservedInstancesOfferingId", &o.id)
            .elem("instanceType", &o.instance_type)
            .opt("availabilityZone", o.az.as_deref())
            .elem("duration", o.term.seconds())
            .elem("usagePrice", 0.0)
            .elem("fixedPrice", o.fixed_price)
            .elem("productDescription", "Linux/UNIX")
            .elem("instanceTenancy", "default")
            .elem("currencyCode", "USD")
            .elem("offeringType", o.payment.as_str());
        recurring(x, o.hourly);
        x.elem("marketplace", false)
            .node("pricingDetailsSet", |_| {})
            .elem("offeringClass", o.class.as_str())
            .elem("scope", scope(o.az.is_some()));
    });
    x.opt("nextToken", next.as_deref());
    Ok(())
}

pub(super) fn purchase_offering(
    cp: &ControlPlane,
    who: Account,
    p: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    let id = p.required("ReservedInstancesOfferingId")?;
    let count = p
        .int("InstanceCount")?
        .ok_or_else(|| Ec2Error::missing("InstanceCount"))?;
    x.elem("reservedInstancesId", cp.purchase_ri(who, &id, count)?);
    Ok(())
}

pub(super) fn describe_reserved(
    cp: &ControlPlane,
    who: Account,
    p: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    let all = cp.describe_ris(
        who,
        &p.list("ReservedInstancesId"),
        p.get("OfferingClass"),
        p.get("OfferingType"),
        &filters(p),
    )?;
    x.list("reservedInstancesSet", &all, |x, v| {
        let r = &v.record;
        x.elem("reservedInstancesId", &r.id)
            .elem("instanceType", &r.instance_type)
            .opt("availabilityZone", r.az.as_deref())
            .elem("start", time(r.start_ms))
            .elem("end", time(r.end_ms()))
            .elem("duration", r.term.seconds())
            .elem("usagePrice", 0.0)
            .elem("fixedPrice", r.price.upfront)
            .elem("instanceCount", r.count)
            .elem("productDescription", "Linux/UNIX")
            .elem("state", v.state)
            .elem("instanceTenancy", "default")
            .elem("currencyCode", "USD")
            .elem("offeringType", r.payment.as_str());
        recurring(x, r.price.hourly);
        x.elem("offeringClass", r.class.as_str())
            .elem("scope", scope(r.az.is_some()));
    });
    Ok(())
}

/// A DateTime parameter (ISO 8601, as the SDKs send it).
fn date_time(p: &Params, name: &str) -> Result<Option<u64>, Ec2Error> {
    p.get(name)
        .map(|v| {
            humantime::parse_rfc3339_weak(v.trim())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_millis() as u64)
                .ok_or_else(|| {
                    Ec2Error::invalid_value(format!(
                        "Value ({v}) for parameter {name} is invalid. Expected an ISO 8601 date and time."
                    ))
                })
        })
        .transpose()
}

pub(super) fn describe_spot_price_history(
    cp: &ControlPlane,
    _: Account,
    p: &Params,
    x: &mut Xml,
) -> Result<(), Ec2Error> {
    let max = page_size(p.int("MaxResults")?, false, "", 1000)?.min(1000);
    let req = SpotHistoryRequest {
        instance_types: p.list("InstanceType"),
        availability_zone: p.string("AvailabilityZone"),
        product_descriptions: p.list("ProductDescription"),
        start_ms: date_time(p, "StartTime")?,
        end_ms: date_time(p, "EndTime")?,
        filters: filters(p),
    };
    let (page, next) = cp.describe_spot_price_history(&req, max, p.get("NextToken"))?;
    x.list("spotPriceHistorySet", &page, |x, s| {
        x.elem("availabilityZone", &s.availability_zone)
            .elem("instanceType", &s.instance_type)
            .elem("productDescription", "Linux/UNIX")
            .elem("spotPrice", format!("{:.6}", s.price))
            .elem("timestamp", time(s.timestamp_ms));
    });
    x.opt("nextToken", next.as_deref());
    Ok(())
}
