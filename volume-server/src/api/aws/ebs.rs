//! The EBS direct APIs over REST-JSON (API version 2019-11-02), as botocore speaks them: routes
//! by method and path, parameters in the path, the query, `x-amz-*` headers and a JSON body;
//! block data as the raw body; errors as a JSON body with `x-amzn-ErrorType`. A snapshot made
//! here is an EC2 snapshot like any other (DescribeSnapshots lists it, CreateVolume restores it).

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};

use crate::control::views::{BlockPage, BlockRef, ChangedBlock};
use crate::control::{Account, ControlPlane, Ec2Error, ErrorCode, model};

/// A response: status, extra headers, body, and whether the body is JSON.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: StatusCode,
    /// Headers beyond Content-Type (names in lower case).
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Bytes,
    /// JSON (else raw block data).
    pub json: bool,
}

impl Reply {
    /// A JSON reply.
    pub(super) fn json(status: StatusCode, v: Value) -> Reply {
        Reply {
            status,
            headers: vec![],
            body: Bytes::from(v.to_string()),
            json: true,
        }
    }
}

/// The error reply for `e` (`x-amzn-ErrorType` and a JSON `Message`).
pub fn error(e: &Ec2Error) -> Reply {
    json_error(e, json!({ "Message": e.message }))
}

/// A JSON protocol's error reply for `e`: `body`, the status of its code and `x-amzn-ErrorType`.
pub(super) fn json_error(e: &Ec2Error, body: Value) -> Reply {
    let mut r = Reply::json(
        StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body,
    );
    r.headers
        .push(("x-amzn-errortype", e.code.as_str().to_string()));
    r
}

fn validation(message: impl Into<String>) -> Ec2Error {
    Ec2Error::new(ErrorCode::ValidationException, message)
}

/// Epoch seconds with milliseconds, as the JSON protocols write timestamps.
fn epoch(ms: u64) -> Value {
    json!(ms as f64 / 1000.0)
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn int_header(h: &HeaderMap, name: &str) -> Result<Option<i32>, Ec2Error> {
    header(h, name)
        .map(|v| {
            v.trim()
                .parse()
                .map_err(|_| validation(format!("The header {name} must be an integer.")))
        })
        .transpose()
}

fn int(v: Option<&str>, name: &str) -> Result<Option<i32>, Ec2Error> {
    v.map(|v| {
        v.parse()
            .map_err(|_| validation(format!("The parameter {name} must be an integer.")))
    })
    .transpose()
}

/// Runs the operation `method path` names.
pub fn handle(
    cp: &ControlPlane,
    who: Account,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Reply, Ec2Error> {
    let q = super::query::query_pairs(query);
    let arg = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let segments: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (method, &segs[..]) {
        (&Method::POST, ["snapshots"]) => start_snapshot(cp, who, body),
        (&Method::POST, ["snapshots", "completion", id]) => complete_snapshot(cp, who, id, headers),
        (&Method::PUT, ["snapshots", id, "blocks", index]) => {
            put_snapshot_block(cp, who, id, index, headers, body)
        }
        (&Method::GET, ["snapshots", id, "blocks", index]) => {
            let token = arg("blockToken").ok_or_else(|| validation("blockToken is required."))?;
            get_snapshot_block(cp, who, id, index, token)
        }
        (&Method::GET, ["snapshots", id, "blocks"]) => {
            let page = cp.list_snapshot_blocks(
                who,
                model::ListSnapshotBlocksRequest {
                    snapshot_id: id.to_string(),
                    max_results: int(arg("maxResults"), "maxResults")?,
                    next_token: arg("pageToken").map(str::to_string),
                    starting_block_index: int(arg("startingBlockIndex"), "startingBlockIndex")?,
                },
            )?;
            Ok(Reply::json(
                StatusCode::OK,
                block_page(
                    &page,
                    "Blocks",
                    |b: &BlockRef| json!({ "BlockIndex": b.index, "BlockToken": b.token }),
                ),
            ))
        }
        (&Method::GET, ["snapshots", second, "changedblocks"]) => {
            let page = cp.list_changed_blocks(
                who,
                model::ListChangedBlocksRequest {
                    first_snapshot_id: arg("firstSnapshotId").map(str::to_string),
                    second_snapshot_id: second.to_string(),
                    max_results: int(arg("maxResults"), "maxResults")?,
                    next_token: arg("pageToken").map(str::to_string),
                    starting_block_index: int(arg("startingBlockIndex"), "startingBlockIndex")?,
                },
            )?;
            Ok(Reply::json(
                StatusCode::OK,
                block_page(&page, "ChangedBlocks", |c: &ChangedBlock| {
                    let mut o = json!({ "BlockIndex": c.index });
                    if let Some(t) = &c.first_token {
                        o["FirstBlockToken"] = json!(t);
                    }
                    if let Some(t) = &c.second_token {
                        o["SecondBlockToken"] = json!(t);
                    }
                    o
                }),
            ))
        }
        _ => Err(Ec2Error::new(
            ErrorCode::UnknownOperationException,
            format!("No EBS direct API operation is {method} {path}."),
        )),
    }
}

fn block_page<T>(page: &BlockPage<T>, name: &str, each: impl Fn(&T) -> Value) -> Value {
    let mut v = json!({
        "ExpiryTime": epoch(page.expiry_ms),
        "VolumeSize": page.volume_size_gib,
        "BlockSize": page.block_size,
    });
    v[name] = Value::Array(page.blocks.iter().map(each).collect());
    if let Some(t) = &page.next_token {
        v["NextToken"] = json!(t);
    }
    v
}

fn start_snapshot(cp: &ControlPlane, who: Account, body: &[u8]) -> Result<Reply, Ec2Error> {
    let v: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|e| validation(format!("The request body is not JSON: {e}")))?
    };
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let volume_size = v
        .get("VolumeSize")
        .and_then(Value::as_i64)
        .ok_or_else(|| validation("VolumeSize is required and must be an integer."))?;
    let tags = v
        .get("Tags")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|t| model::Tag {
                    key: t
                        .get("Key")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .into(),
                    value: t
                        .get("Value")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .into(),
                })
                .collect()
        })
        .unwrap_or_default();
    let (rec, parent) = cp.start_snapshot(
        who,
        model::StartSnapshotRequest {
            volume_size,
            parent_snapshot_id: s("ParentSnapshotId"),
            tags,
            description: s("Description"),
            client_token: s("ClientToken"),
            encrypted: v.get("Encrypted").and_then(Value::as_bool),
            timeout: match v.get("Timeout").and_then(Value::as_i64) {
                Some(t) => Some(
                    i32::try_from(t)
                        .map_err(|_| validation("Timeout must be between 10 and 4320 minutes."))?,
                ),
                None => None,
            },
        },
    )?;
    let mut out = json!({
        "SnapshotId": rec.snapshot_id,
        "OwnerId": rec.owner_id,
        "Status": rec.state.as_str(),
        "StartTime": epoch(rec.start_ms),
        "VolumeSize": rec.volume_size_gib,
        "BlockSize": snapshot::BLOCK_SIZE,
        "Tags": rec.tags.iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect::<Vec<_>>(),
        "Description": rec.description,
    });
    if let Some(p) = parent {
        out["ParentSnapshotId"] = json!(p);
    }
    Ok(Reply::json(StatusCode::CREATED, out))
}

fn index(s: &str) -> Result<i32, Ec2Error> {
    s.parse()
        .map_err(|_| validation(format!("The block index '{s}' is not an integer.")))
}

fn put_snapshot_block(
    cp: &ControlPlane,
    who: Account,
    id: &str,
    block: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Reply, Ec2Error> {
    let checksum = cp.put_snapshot_block(
        who,
        model::PutSnapshotBlockRequest {
            snapshot_id: id.to_string(),
            block_index: index(block)?,
            block_data: body.to_vec(),
            data_length: int_header(headers, "x-amz-data-length")?
                .ok_or_else(|| validation("The header x-amz-Data-Length is required."))?,
            checksum: header(headers, "x-amz-checksum")
                .ok_or_else(|| validation("The header x-amz-Checksum is required."))?
                .to_string(),
            checksum_algorithm: header(headers, "x-amz-checksum-algorithm")
                .unwrap_or_default()
                .to_string(),
            progress: int_header(headers, "x-amz-progress")?,
        },
    )?;
    let mut r = Reply::json(StatusCode::CREATED, json!({}));
    r.headers.push(("x-amz-checksum", checksum));
    r.headers
        .push(("x-amz-checksum-algorithm", "SHA256".into()));
    Ok(r)
}

fn complete_snapshot(
    cp: &ControlPlane,
    who: Account,
    id: &str,
    headers: &HeaderMap,
) -> Result<Reply, Ec2Error> {
    let status = cp.complete_snapshot(
        who,
        model::CompleteSnapshotRequest {
            snapshot_id: id.to_string(),
            changed_blocks_count: int_header(headers, "x-amz-changedblockscount")?
                .ok_or_else(|| validation("The header x-amz-ChangedBlocksCount is required."))?,
            checksum: header(headers, "x-amz-checksum").map(str::to_string),
            checksum_algorithm: header(headers, "x-amz-checksum-algorithm").map(str::to_string),
            checksum_aggregation_method: header(headers, "x-amz-checksum-aggregation-method")
                .map(str::to_string),
        },
    )?;
    Ok(Reply::json(
        StatusCode::ACCEPTED,
        json!({ "Status": status }),
    ))
}

fn get_snapshot_block(
    cp: &ControlPlane,
    who: Account,
    id: &str,
    block: &str,
    token: &str,
) -> Result<Reply, Ec2Error> {
    let b = cp.get_snapshot_block(
        who,
        model::GetSnapshotBlockRequest {
            snapshot_id: id.to_string(),
            block_index: index(block)?,
            block_token: token.to_string(),
        },
    )?;
    Ok(Reply {
        status: StatusCode::OK,
        headers: vec![
            ("x-amz-data-length", b.data.len().to_string()),
            ("x-amz-checksum", b.checksum),
            ("x-amz-checksum-algorithm", b.checksum_algorithm.to_string()),
        ],
        body: Bytes::from(b.data),
        json: false,
    })
}
