//! The EBS rules for volume sizes, IOPS, throughput, tags and device names
//! (`shared/EBS-REFERENCE.md` §1, §5), with the EC2 error code each violation gets.

use std::collections::BTreeMap;

use super::error::{Ec2Error, ErrorCode};
use crate::catalog::VolumeType;

/// A validated volume configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeSpec {
    /// GiB.
    pub size_gib: u32,
    /// Type.
    pub volume_type: VolumeType,
    /// Provisioned IOPS (gp3, io1, io2) or gp2's baseline; `None` for HDD types.
    pub iops: Option<u32>,
    /// Provisioned throughput in MiB/s (gp3 only).
    pub throughput: Option<u32>,
    /// Multi-Attach (io1/io2 only).
    pub multi_attach: bool,
}

/// The per-type limits from the reference.
struct Limits {
    size: (u32, u32),
    /// (min, max, max per GiB) when the type takes provisioned IOPS.
    iops: Option<(u32, u32, u32)>,
}

fn limits(t: VolumeType) -> Limits {
    match t {
        VolumeType::Gp2 => Limits {
            size: (1, 16_384),
            iops: None,
        },
        VolumeType::Gp3 => Limits {
            size: (1, 65_536),
            iops: Some((3_000, 80_000, 500)),
        },
        VolumeType::Io1 => Limits {
            size: (4, 16_384),
            iops: Some((100, 64_000, 50)),
        },
        VolumeType::Io2 => Limits {
            size: (4, 65_536),
            iops: Some((100, 256_000, 1_000)),
        },
        VolumeType::St1 | VolumeType::Sc1 => Limits {
            size: (125, 16_384),
            iops: None,
        },
        VolumeType::Standard => Limits {
            size: (1, 1_024),
            iops: None,
        },
    }
}

/// gp3 baseline IOPS and throughput, included in the price.
pub const GP3_BASELINE_IOPS: u32 = 3_000;
/// gp3 baseline throughput, MiB/s.
pub const GP3_BASELINE_THROUGHPUT: u32 = 125;
const GP3_MAX_THROUGHPUT: u32 = 2_000;

/// gp2's baseline IOPS: 3 per GiB, at least 100, at most 16,000.
pub fn gp2_baseline_iops(size_gib: u32) -> u32 {
    size_gib.saturating_mul(3).clamp(100, 16_000)
}

/// Parses a volume type name; `None` means the API default, gp2.
pub fn parse_volume_type(name: Option<&str>) -> Result<VolumeType, Ec2Error> {
    match name {
        None | Some("") => Ok(VolumeType::Gp2),
        Some(s) => VolumeType::parse(s).ok_or_else(|| {
            Ec2Error::new(
                ErrorCode::UnknownVolumeType,
                format!("The volume type '{s}' is not supported."),
            )
        }),
    }
}

/// Validates a CreateVolume request's performance parameters and fills in defaults.
pub fn volume_spec(
    size_gib: Option<i32>,
    volume_type: VolumeType,
    iops: Option<i32>,
    throughput: Option<i32>,
    multi_attach: bool,
) -> Result<VolumeSpec, Ec2Error> {
    let t = volume_type.as_str();
    let lim = limits(volume_type);
    let size = size_gib.ok_or_else(|| Ec2Error::missing("size or snapshotId"))?;
    if size < lim.size.0 as i32 {
        return Err(Ec2Error::invalid_value(format!(
            "Volume of size {size}GiB is too small; minimum is {}GiB for {t} volumes.",
            lim.size.0
        )));
    }
    if size > lim.size.1 as i32 {
        return Err(Ec2Error::invalid_value(format!(
            "Volume of size {size}GiB is too large; maximum is {}GiB for {t} volumes.",
            lim.size.1
        )));
    }
    let size = size as u32;

    let iops = match (lim.iops, iops) {
        (None, Some(_)) => {
            return Err(Ec2Error::invalid_combination(format!(
                "The parameter iops is not supported for {t} volumes."
            )));
        }
        (None, None) if volume_type == VolumeType::Gp2 => Some(gp2_baseline_iops(size)),
        (None, None) => None,
        (Some(_), None) if volume_type == VolumeType::Gp3 => Some(GP3_BASELINE_IOPS),
        (Some(_), None) => {
            return Err(Ec2Error::new(
                ErrorCode::MissingParameter,
                format!("The parameter iops must be specified for {t} volumes."),
            ));
        }
        (Some((min, max, per_gib)), Some(n)) => {
            if n < min as i32 {
                return Err(Ec2Error::invalid_value(format!(
                    "Volume iops of {n} is too low; minimum is {min}."
                )));
            }
            if n > max as i32 {
                return Err(Ec2Error::invalid_value(format!(
                    "Volume iops of {n} is too high; maximum is {max}."
                )));
            }
            let n = n as u32;
            // gp3's included 3,000 IOPS are available at any size; the ratio binds above it.
            let ratio_applies = volume_type != VolumeType::Gp3 || n > GP3_BASELINE_IOPS;
            if ratio_applies && u64::from(n) > u64::from(per_gib) * u64::from(size) {
                return Err(Ec2Error::invalid_value(format!(
                    "Iops to volume size ratio of {:.6} is too high; maximum is {:.6}.",
                    f64::from(n) / f64::from(size),
                    f64::from(per_gib)
                )));
            }
            Some(n)
        }
    };

    let throughput = match (volume_type, throughput) {
        (VolumeType::Gp3, None) => Some(GP3_BASELINE_THROUGHPUT),
        (VolumeType::Gp3, Some(mbps)) => {
            if mbps < GP3_BASELINE_THROUGHPUT as i32 {
                return Err(Ec2Error::invalid_value(format!(
                    "Throughput of {mbps} MiB/s is too low; minimum is {GP3_BASELINE_THROUGHPUT} MiB/s."
                )));
            }
            if mbps > GP3_MAX_THROUGHPUT as i32 {
                return Err(Ec2Error::invalid_value(format!(
                    "Throughput of {mbps} MiB/s is too high; maximum is {GP3_MAX_THROUGHPUT} MiB/s."
                )));
            }
            let mbps = mbps as u32;
            let iops = iops.unwrap_or(GP3_BASELINE_IOPS);
            // At most 0.25 MiB/s per provisioned IOPS (above the included 125 MiB/s).
            if mbps > GP3_BASELINE_THROUGHPUT && u64::from(mbps) * 4 > u64::from(iops) {
                return Err(Ec2Error::invalid_value(format!(
                    "Throughput (MiBps) to iops ratio of {:.6} is too high; maximum is 0.250000 MiBps per iops.",
                    f64::from(mbps) / f64::from(iops)
                )));
            }
            Some(mbps)
        }
        (_, Some(_)) => {
            return Err(Ec2Error::invalid_combination(format!(
                "The parameter throughput is not supported for {t} volumes."
            )));
        }
        (_, None) => None,
    };

    if multi_attach && !matches!(volume_type, VolumeType::Io1 | VolumeType::Io2) {
        return Err(Ec2Error::invalid_combination(format!(
            "Multi-Attach is supported only for io1 and io2 volumes, not {t}."
        )));
    }

    Ok(VolumeSpec {
        size_gib: size,
        volume_type,
        iops,
        throughput,
        multi_attach,
    })
}

/// Tags allowed per resource.
pub const MAX_TAGS: usize = 50;

/// Validates one tag.
pub fn tag(key: &str, value: &str) -> Result<(), Ec2Error> {
    if key.is_empty() {
        return Err(Ec2Error::invalid_value("Tag keys must not be empty."));
    }
    if key.chars().count() > 128 {
        return Err(Ec2Error::invalid_value(format!(
            "Tag key exceeds the maximum length of 128 characters: '{key}'."
        )));
    }
    if value.chars().count() > 256 {
        return Err(Ec2Error::invalid_value(format!(
            "Tag value exceeds the maximum length of 256 characters for key '{key}'."
        )));
    }
    if key.to_ascii_lowercase().starts_with("aws:") {
        return Err(Ec2Error::invalid_value(format!(
            "Tag keys starting with 'aws:' are reserved for internal use: '{key}'."
        )));
    }
    Ok(())
}

/// Adds `new` to `tags` and checks the per-resource limit.
pub fn merge_tags<'a>(
    resource: &str,
    tags: &mut BTreeMap<String, String>,
    new: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(), Ec2Error> {
    for (k, v) in new {
        tag(k, v)?;
        tags.insert(k.to_string(), v.to_string());
    }
    if tags.len() > MAX_TAGS {
        return Err(Ec2Error::new(
            ErrorCode::TagLimitExceeded,
            format!(
                "The maximum number of tags ({MAX_TAGS}) for resource '{resource}' has been reached."
            ),
        ));
    }
    Ok(())
}

/// The tags of a request's `TagSpecifications`, which may only name `resource_type`.
pub fn tag_specifications(
    resource_type: &str,
    specs: &[super::model::TagSpecification],
) -> Result<BTreeMap<String, String>, Ec2Error> {
    let mut tags = BTreeMap::new();
    for ts in specs {
        if ts.resource_type != resource_type {
            return Err(Ec2Error::invalid_value(format!(
                "'{}' is not a valid taggable resource type for this operation.",
                ts.resource_type
            )));
        }
        merge_tags(
            resource_type,
            &mut tags,
            ts.tags.iter().map(|t| (t.key.as_str(), t.value.as_str())),
        )?;
    }
    Ok(tags)
}

/// Whether `device` is a device name EC2 accepts for an EBS attachment on Linux (HVM):
/// `/dev/sd[a-z]`, `/dev/sda1`, `/dev/xvd[a-z]`, `/dev/xvd[b-c][a-z]`.
pub fn device_name(device: &str) -> Result<(), Ec2Error> {
    let ok = match device.strip_prefix("/dev/") {
        Some("sda1") => true,
        Some(rest) => {
            let b = rest.as_bytes();
            let lower = |c: u8| c.is_ascii_lowercase();
            match b {
                [b's', b'd', c] => lower(*c),
                [b'x', b'v', b'd', c] => lower(*c),
                [b'x', b'v', b'd', c, d] => (*c == b'b' || *c == b'c') && lower(*d),
                _ => false,
            }
        }
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Ec2Error::invalid_value(format!(
            "Value ({device}) for parameter device is invalid. {device} is not a valid EBS device name."
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(
        size: i32,
        t: &str,
        iops: Option<i32>,
        tp: Option<i32>,
    ) -> Result<VolumeSpec, Ec2Error> {
        volume_spec(Some(size), parse_volume_type(Some(t))?, iops, tp, false)
    }

    fn code(r: Result<VolumeSpec, Ec2Error>) -> &'static str {
        r.expect_err("must be rejected").code.as_str()
    }

    #[test]
    fn defaults_per_type() {
        let gp3 = spec(8, "gp3", None, None).unwrap();
        assert_eq!((gp3.iops, gp3.throughput), (Some(3000), Some(125)));
        let gp2 = spec(100, "gp2", None, None).unwrap();
        assert_eq!((gp2.iops, gp2.throughput), (Some(300), None));
        assert_eq!(spec(1, "gp2", None, None).unwrap().iops, Some(100));
        assert_eq!(spec(16_384, "gp2", None, None).unwrap().iops, Some(16_000));
        assert_eq!(spec(500, "st1", None, None).unwrap().iops, None);
        assert_eq!(parse_volume_type(None).unwrap(), VolumeType::Gp2);
    }

    #[test]
    fn size_ranges_per_type() {
        for (t, min, max) in [
            ("gp2", 1, 16_384),
            ("gp3", 1, 65_536),
            ("io1", 4, 16_384),
            ("io2", 4, 65_536),
            ("st1", 125, 16_384),
            ("sc1", 125, 16_384),
            ("standard", 1, 1_024),
        ] {
            let iops = matches!(t, "io1" | "io2").then_some(100);
            assert!(spec(min, t, iops, None).is_ok(), "{t} min");
            assert!(spec(max, t, iops, None).is_ok(), "{t} max");
            assert_eq!(
                code(spec(min - 1, t, iops, None)),
                "InvalidParameterValue",
                "{t} below min"
            );
            assert_eq!(
                code(spec(max + 1, t, iops, None)),
                "InvalidParameterValue",
                "{t} above max"
            );
        }
        assert_eq!(
            code(volume_spec(None, VolumeType::Gp3, None, None, false)),
            "MissingParameter"
        );
    }

    #[test]
    fn iops_rules() {
        assert_eq!(
            code(spec(100, "gp2", Some(300), None)),
            "InvalidParameterCombination"
        );
        assert_eq!(
            code(spec(500, "st1", Some(500), None)),
            "InvalidParameterCombination"
        );
        assert_eq!(code(spec(100, "io1", None, None)), "MissingParameter");
        assert_eq!(code(spec(100, "io2", None, None)), "MissingParameter");
        assert_eq!(
            code(spec(100, "gp3", Some(2_999), None)),
            "InvalidParameterValue"
        );
        assert_eq!(
            code(spec(1000, "gp3", Some(80_001), None)),
            "InvalidParameterValue"
        );
        assert!(spec(160, "gp3", Some(80_000), None).is_ok());
        assert_eq!(
            code(spec(159, "gp3", Some(80_000), None)),
            "InvalidParameterValue",
            "500 IOPS/GiB"
        );
        assert!(
            spec(1, "gp3", Some(3_000), None).is_ok(),
            "baseline at any size"
        );
        assert!(spec(100, "io1", Some(5_000), None).is_ok());
        assert_eq!(
            code(spec(100, "io1", Some(5_001), None)),
            "InvalidParameterValue",
            "50 IOPS/GiB"
        );
        assert_eq!(
            code(spec(10_000, "io1", Some(64_001), None)),
            "InvalidParameterValue"
        );
        assert_eq!(
            code(spec(100, "io1", Some(99), None)),
            "InvalidParameterValue"
        );
        assert!(spec(256, "io2", Some(256_000), None).is_ok());
        assert_eq!(
            code(spec(255, "io2", Some(256_000), None)),
            "InvalidParameterValue",
            "1000 IOPS/GiB"
        );
        assert_eq!(
            code(spec(1000, "io2", Some(256_001), None)),
            "InvalidParameterValue"
        );
    }

    #[test]
    fn throughput_rules() {
        assert_eq!(
            code(spec(100, "gp2", None, Some(125))),
            "InvalidParameterCombination"
        );
        assert_eq!(
            code(spec(100, "io2", Some(1000), Some(125))),
            "InvalidParameterCombination"
        );
        assert_eq!(
            code(spec(100, "gp3", None, Some(124))),
            "InvalidParameterValue"
        );
        assert_eq!(
            code(spec(1000, "gp3", Some(80_000), Some(2_001))),
            "InvalidParameterValue"
        );
        assert!(
            spec(100, "gp3", None, Some(750)).is_ok(),
            "3000 IOPS allow 750 MiB/s"
        );
        assert_eq!(
            code(spec(100, "gp3", None, Some(751))),
            "InvalidParameterValue",
            "0.25 MiB/s per IOPS"
        );
        assert!(spec(1000, "gp3", Some(8_000), Some(2_000)).is_ok());
    }

    #[test]
    fn types_and_multi_attach() {
        assert_eq!(
            parse_volume_type(Some("gp4")).unwrap_err().code,
            "UnknownVolumeType"
        );
        let e = volume_spec(Some(100), VolumeType::Gp3, None, None, true).unwrap_err();
        assert_eq!(e.code, "InvalidParameterCombination");
        assert!(volume_spec(Some(100), VolumeType::Io2, Some(1000), None, true).is_ok());
    }

    #[test]
    fn tags_and_devices() {
        assert!(tag("Name", "db").is_ok());
        assert_eq!(tag("", "x").unwrap_err().code, "InvalidParameterValue");
        assert_eq!(
            tag("aws:foo", "x").unwrap_err().code,
            "InvalidParameterValue"
        );
        assert_eq!(
            tag(&"k".repeat(129), "x").unwrap_err().code,
            "InvalidParameterValue"
        );
        assert_eq!(
            tag("k", &"v".repeat(257)).unwrap_err().code,
            "InvalidParameterValue"
        );
        let mut tags = BTreeMap::new();
        let many: Vec<(String, String)> =
            (0..51).map(|i| (format!("k{i}"), String::new())).collect();
        let err = merge_tags(
            "vol-1",
            &mut tags,
            many.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        assert_eq!(err.unwrap_err().code, "TagLimitExceeded");
        for ok in ["/dev/sdf", "/dev/sda1", "/dev/xvdf", "/dev/xvdba"] {
            assert!(device_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "/dev/sdf1",
            "sdf",
            "/dev/nvme1n1",
            "/dev/xvdzz",
            "",
            "/dev/SDF",
        ] {
            assert_eq!(
                device_name(bad).unwrap_err().code,
                "InvalidParameterValue",
                "{bad}"
            );
        }
    }
}
