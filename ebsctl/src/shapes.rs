//! What each subcommand prints: protobuf replies as AWS-shaped structs (PascalCase names, AWS field order).
//!
//! Like the AWS CLI, optional numbers (`Iops`, `Throughput`) and empty `Tags` are left out, while an empty
//! `SnapshotId` stays `""`.

use proto::ebs::v1 as pb;
use serde::Serialize;

/// A volume, as `create-volume` and `describe-volumes` print it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Volume {
    pub attachments: Vec<Attachment>,
    pub availability_zone: String,
    pub create_time: String,
    pub encrypted: bool,
    pub size: i32,
    pub snapshot_id: String,
    pub state: String,
    pub volume_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iops: Option<i32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    pub volume_type: String,
    pub multi_attach_enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throughput: Option<i32>,
    pub fast_restored: bool,
}

impl From<pb::Volume> for Volume {
    fn from(v: pb::Volume) -> Self {
        Self {
            attachments: v.attachments.into_iter().map(Attachment::listed).collect(),
            availability_zone: v.availability_zone,
            create_time: v.create_time,
            encrypted: v.encrypted,
            size: v.size,
            snapshot_id: v.snapshot_id,
            state: v.state,
            volume_id: v.volume_id,
            iops: v.iops,
            tags: v.tags.into_iter().map(Tag::from).collect(),
            volume_type: v.volume_type,
            multi_attach_enabled: v.multi_attach_enabled,
            throughput: v.throughput,
            fast_restored: v.fast_restored,
        }
    }
}

/// A volume attachment, plus the emulator's `NbdUri` and fencing `Generation`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Attachment {
    pub attach_time: String,
    pub device: String,
    pub instance_id: String,
    pub state: String,
    pub volume_id: String,
    /// Shown where AWS shows it: in a volume's or host's list, not in attach/detach replies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delete_on_termination: Option<bool>,
    pub nbd_uri: String,
    pub generation: u64,
}

impl Attachment {
    /// As an element of `Volume.Attachments` / `Host.Attachments` (with `DeleteOnTermination`).
    pub fn listed(a: pb::VolumeAttachment) -> Self {
        let delete_on_termination = Some(a.delete_on_termination);
        Self {
            delete_on_termination,
            ..Self::reply(a)
        }
    }

    /// As the reply of attach-volume / detach-volume (no `DeleteOnTermination`, like AWS).
    pub fn reply(a: pb::VolumeAttachment) -> Self {
        Self {
            attach_time: a.attach_time,
            device: a.device,
            instance_id: a.instance_id,
            state: a.state,
            volume_id: a.volume_id,
            delete_on_termination: None,
            nbd_uri: a.nbd_uri,
            generation: a.generation,
        }
    }
}

/// A resource tag.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    pub key: String,
    pub value: String,
}

impl From<pb::Tag> for Tag {
    fn from(t: pb::Tag) -> Self {
        Self {
            key: t.key,
            value: t.value,
        }
    }
}

/// A registered host.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Host {
    pub instance_id: String,
    pub name: String,
    pub availability_zone: String,
    pub state: String,
    pub launch_time: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    pub attachments: Vec<Attachment>,
}

impl From<pb::Host> for Host {
    fn from(h: pb::Host) -> Self {
        Self {
            instance_id: h.instance_id,
            name: h.name,
            availability_zone: h.availability_zone,
            state: h.state,
            launch_time: h.launch_time,
            tags: h.tags.into_iter().map(Tag::from).collect(),
            attachments: h.attachments.into_iter().map(Attachment::listed).collect(),
        }
    }
}

/// `describe-volumes`: every page merged, or one page and its `NextToken`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Volumes {
    pub volumes: Vec<Volume>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// `describe-hosts`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Hosts {
    pub hosts: Vec<Host>,
}

/// `deregister-host`: the attachments it detached (and fenced).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Detached {
    pub detached: Vec<Attachment>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn attachment() -> pb::VolumeAttachment {
        pb::VolumeAttachment {
            volume_id: "vol-0123456789abcdef0".into(),
            instance_id: "i-0123456789abcdef0".into(),
            device: "/dev/sdf".into(),
            state: "attached".into(),
            attach_time: "2024-05-01T12:00:01.000Z".into(),
            delete_on_termination: false,
            nbd_uri: "nbd://127.0.0.1:10809/tok".into(),
            generation: 3,
        }
    }

    pub(crate) fn volume() -> pb::Volume {
        pb::Volume {
            volume_id: "vol-0123456789abcdef0".into(),
            size: 8,
            snapshot_id: String::new(),
            availability_zone: "us-east-1a".into(),
            state: "in-use".into(),
            create_time: "2024-05-01T12:00:00.000Z".into(),
            attachments: vec![attachment()],
            volume_type: "gp3".into(),
            iops: Some(3000),
            throughput: Some(125),
            encrypted: false,
            multi_attach_enabled: false,
            fast_restored: false,
            tags: vec![pb::Tag {
                key: "Name".into(),
                value: "db".into(),
            }],
        }
    }

    fn pretty(value: &impl Serialize) -> String {
        match crate::output::json(value) {
            Ok(text) => text,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn volume_json_uses_aws_names_and_order() {
        let want = r#"{
    "Attachments": [
        {
            "AttachTime": "2024-05-01T12:00:01.000Z",
            "Device": "/dev/sdf",
            "InstanceId": "i-0123456789abcdef0",
            "State": "attached",
            "VolumeId": "vol-0123456789abcdef0",
            "DeleteOnTermination": false,
            "NbdUri": "nbd://127.0.0.1:10809/tok",
            "Generation": 3
        }
    ],
    "AvailabilityZone": "us-east-1a",
    "CreateTime": "2024-05-01T12:00:00.000Z",
    "Encrypted": false,
    "Size": 8,
    "SnapshotId": "",
    "State": "in-use",
    "VolumeId": "vol-0123456789abcdef0",
    "Iops": 3000,
    "Tags": [
        {
            "Key": "Name",
            "Value": "db"
        }
    ],
    "VolumeType": "gp3",
    "MultiAttachEnabled": false,
    "Throughput": 125,
    "FastRestored": false
}
"#;
        assert_eq!(pretty(&Volume::from(volume())), want);
    }

    #[test]
    fn volume_json_omits_absent_numbers_and_empty_tags() {
        let v = pb::Volume {
            iops: None,
            throughput: None,
            tags: vec![],
            attachments: vec![],
            ..volume()
        };
        let json: serde_json::Value = match serde_json::to_value(Volume::from(v)) {
            Ok(json) => json,
            Err(e) => panic!("{e}"),
        };
        let keys: Vec<&str> = json
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        for absent in ["Iops", "Throughput", "Tags"] {
            assert!(!keys.contains(&absent), "{absent} in {keys:?}");
        }
        assert_eq!(json["Attachments"], serde_json::json!([]));
        assert_eq!(json["SnapshotId"], "");
    }

    #[test]
    fn attach_reply_has_no_delete_on_termination() {
        let want = r#"{
    "AttachTime": "2024-05-01T12:00:01.000Z",
    "Device": "/dev/sdf",
    "InstanceId": "i-0123456789abcdef0",
    "State": "attached",
    "VolumeId": "vol-0123456789abcdef0",
    "NbdUri": "nbd://127.0.0.1:10809/tok",
    "Generation": 3
}
"#;
        assert_eq!(pretty(&Attachment::reply(attachment())), want);
    }

    #[test]
    fn next_token_only_when_present() {
        let page = Volumes {
            volumes: vec![],
            next_token: None,
        };
        assert_eq!(pretty(&page), "{\n    \"Volumes\": []\n}\n");
        let page = Volumes {
            volumes: vec![],
            next_token: Some("t".into()),
        };
        assert_eq!(
            pretty(&page),
            "{\n    \"Volumes\": [],\n    \"NextToken\": \"t\"\n}\n"
        );
    }
}
