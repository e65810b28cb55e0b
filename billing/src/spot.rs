//! Spot prices: a seeded price process per instance type and availability zone, below
//! On-Demand and moving every hour of the billing clock. The price of an hour is a fraction of
//! the On-Demand price: a base of 35 % plus the average of three hourly draws (this hour's and
//! the two before), so it wanders between about 25 % and 45 % and each hour's change is partly
//! carried into the next, as Spot prices drift rather than jump. Deterministic: the same type,
//! zone and hour always give the same price, on every server.

use sha2::{Digest, Sha256};

use crate::BillingError;
use crate::calendar::HOUR_MS;
use crate::prices::PriceList;

/// A draw in [-1, 1] for `(instance_type, az, hour)`.
fn draw(instance_type: &str, az: &str, hour: u64) -> f64 {
    let mut h = Sha256::new();
    h.update(instance_type.as_bytes());
    h.update([0]);
    h.update(az.as_bytes());
    h.update([0]);
    h.update(hour.to_le_bytes());
    let d = h.finalize();
    let x = u64::from_le_bytes(d[..8].try_into().expect("8 bytes"));
    (x as f64 / u64::MAX as f64) * 2.0 - 1.0
}

/// The Spot price (USD per hour, to four decimals as AWS quotes it) of `instance_type` in
/// `az` of `region` during the hour holding `ms`.
pub fn price(
    prices: &PriceList,
    region: &str,
    instance_type: &str,
    az: &str,
    ms: u64,
) -> Result<f64, BillingError> {
    let od = *prices
        .region(region)?
        .instances
        .get(instance_type)
        .ok_or_else(|| BillingError::NoPrice(format!("{instance_type} in {region}")))?;
    let hour = ms / HOUR_MS;
    let noise = (0..3)
        .map(|back| draw(instance_type, az, hour.saturating_sub(back)))
        .sum::<f64>()
        / 3.0;
    let fraction = 0.35 + 0.10 * noise;
    Ok((od * fraction * 10_000.0).round().max(1.0) / 10_000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_on_demand_moving_and_deterministic() {
        let prices = PriceList::builtin();
        let od = prices.region("us-east-1").unwrap().instances["m5.large"];
        let at =
            |h: u64| price(&prices, "us-east-1", "m5.large", "us-east-1a", h * HOUR_MS).unwrap();
        let series: Vec<f64> = (1_000_000..1_000_200).map(at).collect();
        assert!(
            series
                .iter()
                .all(|p| *p >= od * 0.25 - 1e-4 && *p <= od * 0.45 + 1e-4)
        );
        assert!(
            series.windows(2).filter(|w| w[0] != w[1]).count() > 150,
            "it moves"
        );
        assert_eq!(
            at(1_000_000),
            at(1_000_000),
            "the same hour, the same price"
        );
        let other = price(
            &prices,
            "us-east-1",
            "m5.large",
            "us-east-1b",
            1_000_000 * HOUR_MS,
        )
        .unwrap();
        let same_zone_hours: Vec<f64> = (1_000_000..1_000_010).map(at).collect();
        let other_zone: Vec<f64> = (1_000_000..1_000_010)
            .map(|h| price(&prices, "us-east-1", "m5.large", "us-east-1b", h * HOUR_MS).unwrap())
            .collect();
        assert_ne!(same_zone_hours, other_zone, "each zone has its own process");
        assert!(other > 0.0);
        assert!(price(&prices, "us-east-1", "m9.huge", "us-east-1a", 0).is_err());
    }
}
