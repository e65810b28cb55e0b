//! Telling the workload where its devices are: the `devices.json` file in the instance's
//! directory and the `EBS_*` environment variables.
//!
//! # Contract with the workload
//!
//! Each block device of the instance (EBS volumes and instance store disks) is served over NBD;
//! the workload finds them as follows.
//!
//! `<dir>/devices.json` (written atomically, so a reader never sees half of it):
//!
//! ```json
//! {
//!   "InstanceId": "i-0123456789abcdef0",
//!   "InstanceType": "m5d.large",
//!   "AvailabilityZone": "us-east-1a",
//!   "Devices": [
//!     {"DeviceName": "/dev/xvda", "Type": "ebs", "VolumeId": "vol-0123456789abcdef0",
//!      "NbdUri": "nbd://127.0.0.1:10809/tok", "SizeBytes": 8589934592, "Root": true},
//!     {"DeviceName": "/dev/sdb", "Type": "instance-store", "VirtualName": "ephemeral0",
//!      "NbdUri": "nbd://127.0.0.1:10809/tok2", "SizeBytes": 75000000000, "Root": false}
//!   ]
//! }
//! ```
//!
//! `Type` is `ebs` (with `VolumeId`) or `instance-store` (with `VirtualName`); devices are listed
//! in the order given.
//!
//! Environment:
//!
//! | Variable | Value |
//! |---|---|
//! | `EBS_INSTANCE_ID`, `EBS_INSTANCE_TYPE`, `EBS_AVAILABILITY_ZONE` | as in the file |
//! | `EBS_DEVICES_FILE` | the path of `devices.json` |
//! | `EBS_ROOT_DEVICE` | the root device's NBD URI; absent without a root device |
//! | `EBS_DEVICE_<NAME>` | each device's NBD URI |
//! | `EBS_DEVICE_<VIRTUAL NAME>` | again, for instance store devices, e.g. `EBS_DEVICE_EPHEMERAL0` |
//!
//! `<NAME>` is the device name without its `/dev/` prefix, uppercased, with every character other
//! than an ASCII letter or digit replaced by `_`: `/dev/sdf` → `EBS_DEVICE_SDF`, `/dev/sda1` →
//! `EBS_DEVICE_SDA1`, `/dev/nvme1n1` → `EBS_DEVICE_NVME1N1`. The virtual name is treated alike.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

/// The file, in the instance's directory, that lists its devices.
pub const DEVICES_FILE: &str = "devices.json";

/// Failure to write `devices.json`.
#[derive(Debug, thiserror::Error)]
pub enum DevicesError {
    /// The device list could not be serialized.
    #[error("Cannot serialize the device list")]
    Serialize(#[source] serde_json::Error),
    /// The file could not be written or renamed into place.
    #[error("Cannot write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// What backs a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceKind {
    /// An EBS volume.
    Ebs {
        /// e.g. `vol-0123456789abcdef0`.
        volume_id: String,
    },
    /// An instance store disk.
    InstanceStore {
        /// e.g. `ephemeral0`.
        virtual_name: String,
    },
}

/// One block device of an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// e.g. `/dev/xvda`.
    pub device_name: String,
    /// What backs it.
    pub kind: DeviceKind,
    /// Where the workload reaches it, e.g. `nbd://127.0.0.1:10809/<export>`.
    pub nbd_uri: String,
    /// Size, bytes.
    pub size_bytes: u64,
    /// The root device.
    pub root: bool,
}

/// The instance the devices belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceInfo<'a> {
    /// e.g. `i-0123456789abcdef0`.
    pub instance_id: &'a str,
    /// e.g. `m5d.large`.
    pub instance_type: &'a str,
    /// e.g. `us-east-1a`.
    pub availability_zone: &'a str,
}

/// `devices.json`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DevicesJson<'a> {
    instance_id: &'a str,
    instance_type: &'a str,
    availability_zone: &'a str,
    devices: Vec<DeviceJson<'a>>,
}

/// One entry of `devices.json`'s `Devices`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DeviceJson<'a> {
    device_name: &'a str,
    #[serde(rename = "Type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    volume_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    virtual_name: Option<&'a str>,
    nbd_uri: &'a str,
    size_bytes: u64,
    root: bool,
}

impl<'a> From<&'a Device> for DeviceJson<'a> {
    fn from(device: &'a Device) -> Self {
        let (kind, volume_id, virtual_name) = match &device.kind {
            DeviceKind::Ebs { volume_id } => ("ebs", Some(volume_id.as_str()), None),
            DeviceKind::InstanceStore { virtual_name } => {
                ("instance-store", None, Some(virtual_name.as_str()))
            }
        };
        DeviceJson {
            device_name: &device.device_name,
            kind,
            volume_id,
            virtual_name,
            nbd_uri: &device.nbd_uri,
            size_bytes: device.size_bytes,
            root: device.root,
        }
    }
}

/// Writes `<dir>/devices.json` (pretty JSON, see the module doc) atomically, through a temporary
/// file renamed over it, and returns its path.
pub fn write_devices_file(
    dir: &Path,
    info: &InstanceInfo,
    devices: &[Device],
) -> Result<PathBuf, DevicesError> {
    let json = DevicesJson {
        instance_id: info.instance_id,
        instance_type: info.instance_type,
        availability_zone: info.availability_zone,
        devices: devices.iter().map(DeviceJson::from).collect(),
    };
    let mut text = serde_json::to_vec_pretty(&json).map_err(DevicesError::Serialize)?;
    text.push(b'\n');

    let path = dir.join(DEVICES_FILE);
    // In the same directory, so that the rename is atomic; named after our pid so that two
    // servers sharing a directory by mistake do not write into each other's temporary file.
    let tmp = dir.join(format!(".{DEVICES_FILE}.{}.tmp", std::process::id()));
    let written = write_synced(&tmp, &text).and_then(|()| fs::rename(&tmp, &path));
    if let Err(source) = written {
        let _ = fs::remove_file(&tmp);
        return Err(DevicesError::Write { path, source });
    }
    // Make the rename itself durable; the file is complete either way, so failing here is moot.
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(path)
}

/// Writes `data` to a new `path` and syncs it, so the rename never exposes an empty file after a
/// crash.
fn write_synced(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(data)?;
    file.sync_all()
}

/// The environment of the workload (see the module doc), in a stable order: the instance, the
/// devices file, the root device, then each device in order.
pub fn environment(
    info: &InstanceInfo,
    devices_file: &Path,
    devices: &[Device],
) -> Vec<(String, String)> {
    let mut env = vec![
        ("EBS_INSTANCE_ID".to_owned(), info.instance_id.to_owned()),
        (
            "EBS_INSTANCE_TYPE".to_owned(),
            info.instance_type.to_owned(),
        ),
        (
            "EBS_AVAILABILITY_ZONE".to_owned(),
            info.availability_zone.to_owned(),
        ),
        (
            "EBS_DEVICES_FILE".to_owned(),
            devices_file.to_string_lossy().into_owned(),
        ),
    ];
    if let Some(root) = devices.iter().find(|d| d.root) {
        env.push(("EBS_ROOT_DEVICE".to_owned(), root.nbd_uri.clone()));
    }
    for device in devices {
        let name = device
            .device_name
            .strip_prefix("/dev/")
            .unwrap_or(&device.device_name);
        env.push((device_variable(name), device.nbd_uri.clone()));
        if let DeviceKind::InstanceStore { virtual_name } = &device.kind {
            env.push((device_variable(virtual_name), device.nbd_uri.clone()));
        }
    }
    env
}

/// `EBS_DEVICE_<NAME>`: `name` uppercased, non-alphanumerics as `_`.
fn device_variable(name: &str) -> String {
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("EBS_DEVICE_{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: InstanceInfo<'static> = InstanceInfo {
        instance_id: "i-0123456789abcdef0",
        instance_type: "m5d.large",
        availability_zone: "us-east-1a",
    };

    fn devices() -> Vec<Device> {
        vec![
            Device {
                device_name: "/dev/xvda".to_owned(),
                kind: DeviceKind::Ebs {
                    volume_id: "vol-0123456789abcdef0".to_owned(),
                },
                nbd_uri: "nbd://127.0.0.1:10809/root".to_owned(),
                size_bytes: 8 << 30,
                root: true,
            },
            Device {
                device_name: "/dev/sdb".to_owned(),
                kind: DeviceKind::InstanceStore {
                    virtual_name: "ephemeral0".to_owned(),
                },
                nbd_uri: "nbd://127.0.0.1:10809/eph".to_owned(),
                size_bytes: 75_000_000_000,
                root: false,
            },
            Device {
                device_name: "/dev/sda1".to_owned(),
                kind: DeviceKind::Ebs {
                    volume_id: "vol-1".to_owned(),
                },
                nbd_uri: "nbd://127.0.0.1:10809/data".to_owned(),
                size_bytes: 1 << 30,
                root: false,
            },
        ]
    }

    #[test]
    fn writes_the_devices_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_devices_file(dir.path(), &INFO, &devices()).unwrap();
        assert_eq!(path, dir.path().join(DEVICES_FILE));
        let text = fs::read_to_string(&path).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let expected = serde_json::json!({
            "InstanceId": "i-0123456789abcdef0",
            "InstanceType": "m5d.large",
            "AvailabilityZone": "us-east-1a",
            "Devices": [
                {"DeviceName": "/dev/xvda", "Type": "ebs", "VolumeId": "vol-0123456789abcdef0",
                 "NbdUri": "nbd://127.0.0.1:10809/root", "SizeBytes": 8589934592u64, "Root": true},
                {"DeviceName": "/dev/sdb", "Type": "instance-store", "VirtualName": "ephemeral0",
                 "NbdUri": "nbd://127.0.0.1:10809/eph", "SizeBytes": 75000000000u64, "Root": false},
                {"DeviceName": "/dev/sda1", "Type": "ebs", "VolumeId": "vol-1",
                 "NbdUri": "nbd://127.0.0.1:10809/data", "SizeBytes": 1073741824u64, "Root": false},
            ],
        });
        assert_eq!(json, expected);
        // Pretty, with fields in the documented order.
        assert!(text.contains("\n  \"InstanceId\""));
        let order = [
            "\"DeviceName\"",
            "\"Type\"",
            "\"VolumeId\"",
            "\"NbdUri\"",
            "\"SizeBytes\"",
            "\"Root\"",
        ];
        let positions: Vec<usize> = order.iter().map(|k| text.find(k).unwrap()).collect();
        assert!(positions.is_sorted(), "{text}");

        // Rewritten in place, no temporary file left behind.
        write_devices_file(dir.path(), &INFO, &[]).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(json["Devices"], serde_json::json!([]));
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [DEVICES_FILE]);
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let e = write_devices_file(&missing, &INFO, &devices()).unwrap_err();
        assert!(matches!(e, DevicesError::Write { .. }), "{e}");
    }

    #[test]
    fn environment_names_every_device() {
        let file = Path::new("/var/lib/ebs/i-0123456789abcdef0/devices.json");
        let env = environment(&INFO, file, &devices());
        let expected = [
            ("EBS_INSTANCE_ID", "i-0123456789abcdef0"),
            ("EBS_INSTANCE_TYPE", "m5d.large"),
            ("EBS_AVAILABILITY_ZONE", "us-east-1a"),
            (
                "EBS_DEVICES_FILE",
                "/var/lib/ebs/i-0123456789abcdef0/devices.json",
            ),
            ("EBS_ROOT_DEVICE", "nbd://127.0.0.1:10809/root"),
            ("EBS_DEVICE_XVDA", "nbd://127.0.0.1:10809/root"),
            ("EBS_DEVICE_SDB", "nbd://127.0.0.1:10809/eph"),
            ("EBS_DEVICE_EPHEMERAL0", "nbd://127.0.0.1:10809/eph"),
            ("EBS_DEVICE_SDA1", "nbd://127.0.0.1:10809/data"),
        ];
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(env, expected);

        // No root device: no EBS_ROOT_DEVICE.
        let data_only = &devices()[2..];
        assert!(
            !environment(&INFO, file, data_only)
                .iter()
                .any(|(k, _)| k == "EBS_ROOT_DEVICE")
        );
    }

    #[test]
    fn device_variables_are_sanitized() {
        assert_eq!(device_variable("sdf"), "EBS_DEVICE_SDF");
        assert_eq!(device_variable("nvme1n1"), "EBS_DEVICE_NVME1N1");
        assert_eq!(
            device_variable("disk/by-id/x.y"),
            "EBS_DEVICE_DISK_BY_ID_X_Y"
        );
        assert_eq!(device_variable("é"), "EBS_DEVICE__");
    }
}
