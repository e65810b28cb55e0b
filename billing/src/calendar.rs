//! UTC calendar arithmetic for billing periods: dates and hours as AWS bills them (months of
//! their own length), on milliseconds since the Unix epoch. No time zones: AWS bills in UTC.

use crate::BillingError;

/// Milliseconds in an hour.
pub const HOUR_MS: u64 = 3_600_000;
/// Milliseconds in a day.
pub const DAY_MS: u64 = 24 * HOUR_MS;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp as i64 + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// The first millisecond of the UTC month holding `ms`.
pub fn month_start(ms: u64) -> u64 {
    let (y, m, _) = civil_from_days((ms / DAY_MS) as i64);
    days_from_civil(y, m, 1) as u64 * DAY_MS
}

/// The first millisecond of the month after the one holding `ms`.
pub fn next_month(ms: u64) -> u64 {
    let (y, m, _) = civil_from_days((ms / DAY_MS) as i64);
    let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    days_from_civil(y, m, 1) as u64 * DAY_MS
}

/// Milliseconds in the month holding `ms` (what a "month" is in GB-month prices).
pub fn month_len(ms: u64) -> u64 {
    next_month(ms) - month_start(ms)
}

/// `YYYY-MM-DD` or `YYYY-MM-DDThh:mm:ssZ` (Cost Explorer's two forms) as milliseconds.
pub fn parse(s: &str) -> Result<u64, BillingError> {
    let bad = || BillingError::InvalidDate(s.to_string());
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t.strip_suffix('Z').ok_or_else(bad)?)),
        None => (s, None),
    };
    let parts: Vec<&str> = date.split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        return Err(bad());
    };
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return Err(bad());
    }
    let num = |p: &str| p.parse::<u32>().map_err(|_| bad());
    let (y, m, d) = (num(y)?, num(m)?, num(d)?);
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || d == 0 {
        return Err(bad());
    }
    let day = days_from_civil(y as i64, m, d);
    if civil_from_days(day) != (y as i64, m, d) {
        return Err(bad());
    }
    let mut ms = day as u64 * DAY_MS;
    if let Some(t) = time {
        let hms: Vec<&str> = t.split(':').collect();
        let [h, mi, sec] = hms.as_slice() else {
            return Err(bad());
        };
        let (h, mi, sec) = (num(h)?, num(mi)?, num(sec)?);
        if h > 23 || mi > 59 || sec > 59 {
            return Err(bad());
        }
        ms += (h as u64 * 3600 + mi as u64 * 60 + sec as u64) * 1000;
    }
    Ok(ms)
}

/// `YYYY-MM-DD` of `ms`.
pub fn date(ms: u64) -> String {
    let (y, m, d) = civil_from_days((ms / DAY_MS) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DDThh:mm:ssZ` of `ms`.
pub fn date_time(ms: u64) -> String {
    let s = (ms % DAY_MS) / 1000;
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        date(ms),
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_months_have_their_length() {
        for day in [-1000i64, 0, 59, 365 * 30 + 7, 20_000, 30_000] {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
        let feb_2028 = parse("2028-02-10").unwrap();
        assert_eq!(month_len(feb_2028), 29 * DAY_MS);
        assert_eq!(month_len(parse("2027-02-01").unwrap()), 28 * DAY_MS);
        assert_eq!(
            month_len(parse("2026-12-31T23:59:59Z").unwrap()),
            31 * DAY_MS
        );
        assert_eq!(date(next_month(parse("2026-12-07").unwrap())), "2027-01-01");
        assert_eq!(
            date_time(parse("2026-12-07T05:06:07Z").unwrap()),
            "2026-12-07T05:06:07Z"
        );
        assert_eq!(parse("2026-12-07").unwrap(), 1_796_601_600_000);
    }

    #[test]
    fn bad_dates_are_refused() {
        for s in [
            "2026-02-30",
            "2026-13-01",
            "26-12-07",
            "2026-12-07T25:00:00Z",
            "2026-12-07T01:00:00",
            "",
            "2026/12/07",
        ] {
            assert!(parse(s).is_err(), "{s}");
        }
    }
}
