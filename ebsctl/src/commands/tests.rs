//! `commands::run` end to end against an in-process mock `VolumeService` (not the real server).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use clap::Parser as _;
use proto::ebs::v1::volume_service_server::{VolumeService, VolumeServiceServer};
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

use super::*;

/// Five volumes `vol-0`..`vol-4`, served two per page unless asked otherwise.
#[derive(Debug, Default)]
struct Mock {
    describe_calls: AtomicUsize,
}

fn ec2_error(status: Status, code: &'static str) -> Status {
    let mut status = status;
    status
        .metadata_mut()
        .insert(proto::EC2_ERROR_CODE_KEY, MetadataValue::from_static(code));
    status
}

fn volume(id: &str, state: &str) -> pb::Volume {
    pb::Volume {
        volume_id: id.to_owned(),
        state: state.to_owned(),
        ..shapes::tests::volume()
    }
}

#[tonic::async_trait]
impl VolumeService for Mock {
    async fn create_volume(
        &self,
        request: Request<pb::CreateVolumeRequest>,
    ) -> Result<Response<pb::Volume>, Status> {
        let r = request.into_inner();
        let tags = r
            .tag_specifications
            .into_iter()
            .flat_map(|s| s.tags)
            .collect();
        Ok(Response::new(pb::Volume {
            volume_id: "vol-new".into(),
            size: r.size.unwrap_or(0),
            availability_zone: r.availability_zone,
            state: "available".into(),
            volume_type: r.volume_type.unwrap_or_else(|| "gp2".into()),
            iops: r.iops,
            throughput: r.throughput,
            encrypted: r.encrypted.unwrap_or(false),
            multi_attach_enabled: r.multi_attach_enabled.unwrap_or(false),
            tags,
            attachments: vec![],
            ..shapes::tests::volume()
        }))
    }

    async fn describe_volumes(
        &self,
        request: Request<pb::DescribeVolumesRequest>,
    ) -> Result<Response<pb::DescribeVolumesResponse>, Status> {
        self.describe_calls.fetch_add(1, Ordering::SeqCst);
        let r = request.into_inner();
        let all: Vec<pb::Volume> = match r.volume_ids.first().map(String::as_str) {
            Some("vol-gone") => {
                return Err(ec2_error(
                    Status::not_found("The volume 'vol-gone' does not exist."),
                    "InvalidVolume.NotFound",
                ));
            }
            Some("vol-creating") => vec![volume("vol-creating", "creating")],
            Some("vol-error") => vec![volume("vol-error", "error")],
            _ => (0..5)
                .map(|i| volume(&format!("vol-{i}"), "available"))
                .collect(),
        };
        let start: usize = r.next_token.as_deref().unwrap_or("0").parse().unwrap_or(0);
        let size = usize::try_from(r.max_results.unwrap_or(2)).unwrap_or(2);
        let end = (start + size).min(all.len());
        Ok(Response::new(pb::DescribeVolumesResponse {
            volumes: all[start..end].to_vec(),
            next_token: (end < all.len()).then(|| end.to_string()),
        }))
    }

    async fn delete_volume(
        &self,
        _: Request<pb::DeleteVolumeRequest>,
    ) -> Result<Response<pb::DeleteVolumeResponse>, Status> {
        Ok(Response::new(pb::DeleteVolumeResponse {}))
    }

    async fn attach_volume(
        &self,
        _: Request<pb::AttachVolumeRequest>,
    ) -> Result<Response<pb::VolumeAttachment>, Status> {
        Err(ec2_error(
            Status::failed_precondition("vol-1 is already attached to an instance"),
            "VolumeInUse",
        ))
    }

    async fn detach_volume(
        &self,
        _: Request<pb::DetachVolumeRequest>,
    ) -> Result<Response<pb::VolumeAttachment>, Status> {
        Ok(Response::new(shapes::tests::attachment()))
    }

    async fn create_tags(
        &self,
        _: Request<pb::CreateTagsRequest>,
    ) -> Result<Response<pb::CreateTagsResponse>, Status> {
        Err(Status::unimplemented("not in the mock"))
    }

    async fn delete_tags(
        &self,
        _: Request<pb::DeleteTagsRequest>,
    ) -> Result<Response<pb::DeleteTagsResponse>, Status> {
        Err(Status::unimplemented("not in the mock"))
    }

    async fn register_host(
        &self,
        _: Request<pb::RegisterHostRequest>,
    ) -> Result<Response<pb::Host>, Status> {
        Err(Status::unimplemented("not in the mock"))
    }

    async fn deregister_host(
        &self,
        _: Request<pb::DeregisterHostRequest>,
    ) -> Result<Response<pb::DeregisterHostResponse>, Status> {
        Err(Status::unimplemented("not in the mock"))
    }

    async fn describe_hosts(
        &self,
        _: Request<pb::DescribeHostsRequest>,
    ) -> Result<Response<pb::DescribeHostsResponse>, Status> {
        Err(Status::unimplemented("not in the mock"))
    }
}

/// Serves `mock` on a free port; returns its endpoint URL.
async fn serve(mock: Arc<Mock>) -> String {
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(listener) => listener,
        Err(e) => panic!("bind: {e}"),
    };
    let addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(e) => panic!("local_addr: {e}"),
    };
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(VolumeServiceServer::from_arc(mock))
            .serve_with_incoming(incoming),
    );
    format!("http://{addr}")
}

async fn ebsctl(endpoint: &str, args: &[&str]) -> Result<Option<String>, CliError> {
    let argv = ["ebsctl", "--endpoint", endpoint]
        .into_iter()
        .chain(args.iter().copied());
    match Cli::try_parse_from(argv) {
        Ok(cli) => run(cli).await,
        Err(e) => panic!("{args:?}: {e}"),
    }
}

fn json(out: Result<Option<String>, CliError>) -> serde_json::Value {
    match out {
        Ok(Some(text)) => match serde_json::from_str(&text) {
            Ok(value) => value,
            Err(e) => panic!("not JSON ({e}): {text}"),
        },
        other => panic!("expected output, got {other:?}"),
    }
}

#[tokio::test]
async fn describe_volumes_follows_next_token_unless_paging_is_asked_for() {
    let mock = Arc::new(Mock::default());
    let endpoint = serve(mock.clone()).await;

    let all = json(ebsctl(&endpoint, &["describe-volumes"]).await);
    let ids: Vec<&str> = all["Volumes"]
        .as_array()
        .map(|v| v.iter().filter_map(|v| v["VolumeId"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, ["vol-0", "vol-1", "vol-2", "vol-3", "vol-4"]);
    assert!(all.get("NextToken").is_none(), "{all}");
    assert_eq!(mock.describe_calls.load(Ordering::SeqCst), 3);

    let page = json(ebsctl(&endpoint, &["describe-volumes", "--max-results", "2"]).await);
    assert_eq!(page["Volumes"].as_array().map(Vec::len), Some(2));
    assert_eq!(page["NextToken"], "2");
}

#[tokio::test]
async fn create_volume_sends_flags_and_prints_the_volume() {
    let endpoint = serve(Arc::new(Mock::default())).await;
    let volume = json(
        ebsctl(
            &endpoint,
            &[
                "create-volume",
                "--availability-zone",
                "us-east-1b",
                "--size",
                "16",
                "--volume-type",
                "io2",
                "--iops",
                "1000",
                "--multi-attach-enabled",
                "--tag-specifications",
                "ResourceType=volume,Tags=[{Key=Name,Value=db}]",
            ],
        )
        .await,
    );
    assert_eq!(volume["VolumeId"], "vol-new");
    assert_eq!(volume["AvailabilityZone"], "us-east-1b");
    assert_eq!(volume["Size"], 16);
    assert_eq!(volume["VolumeType"], "io2");
    assert_eq!(volume["Iops"], 1000);
    assert_eq!(volume["MultiAttachEnabled"], true);
    assert!(volume.get("Throughput").is_none(), "{volume}");
    assert_eq!(
        volume["Tags"],
        serde_json::json!([{"Key": "Name", "Value": "db"}])
    );
}

#[tokio::test]
async fn service_errors_carry_the_ec2_code_and_operation() {
    let endpoint = serve(Arc::new(Mock::default())).await;
    let args = [
        "attach-volume",
        "--volume-id",
        "vol-1",
        "--instance-id",
        "i-1",
        "--device",
        "/dev/sdf",
    ];
    let err = match ebsctl(&endpoint, &args).await {
        Err(e) => e,
        Ok(out) => panic!("expected an error, got {out:?}"),
    };
    assert_eq!(
        err.to_string(),
        "An error occurred (VolumeInUse) when calling the AttachVolume operation: vol-1 is already attached to an instance"
    );
    assert_eq!(err.exit_code(), 254);
}

#[tokio::test]
async fn quiet_commands_print_nothing() {
    let endpoint = serve(Arc::new(Mock::default())).await;
    let out = ebsctl(&endpoint, &["delete-volume", "--volume-id", "vol-1"]).await;
    assert!(matches!(out, Ok(None)), "{out:?}");
}

#[tokio::test]
async fn no_server_is_a_connection_error() {
    // A port that was free a moment ago: nothing listens there.
    let endpoint = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0");
        match listener.and_then(|l| l.local_addr()) {
            Ok(addr) => format!("http://{addr}"),
            Err(e) => panic!("bind: {e}"),
        }
    };
    let err = match ebsctl(&endpoint, &["describe-volumes"]).await {
        Err(e) => e,
        Ok(out) => panic!("expected an error, got {out:?}"),
    };
    assert_eq!(
        err.to_string(),
        format!("Could not connect to the endpoint URL: \"{endpoint}\"")
    );
    assert_eq!(err.exit_code(), 255);
}

#[tokio::test]
async fn argument_errors_come_before_connecting() {
    let err = match ebsctl(
        "http://127.0.0.1:1",
        &["describe-volumes", "--filters", "Name"],
    )
    .await
    {
        Err(e) => e,
        Ok(out) => panic!("expected an error, got {out:?}"),
    };
    assert_eq!(err.exit_code(), 252, "{err}");
}

#[tokio::test]
async fn waiters() {
    let endpoint = serve(Arc::new(Mock::default())).await;
    let wait = |waiter: &'static str, id: &'static str| {
        let endpoint = endpoint.clone();
        async move {
            let args = [
                "wait",
                waiter,
                "--volume-ids",
                id,
                "--delay",
                "0",
                "--max-attempts",
                "2",
            ];
            ebsctl(&endpoint, &args).await
        }
    };

    assert!(matches!(wait("volume-available", "vol-1").await, Ok(None)));
    assert!(matches!(wait("volume-deleted", "vol-gone").await, Ok(None)));

    let timeout = wait("volume-available", "vol-creating").await;
    match timeout {
        Err(e) => {
            assert_eq!(
                e.to_string(),
                "Waiter VolumeAvailable failed: Max attempts exceeded"
            );
            assert_eq!(e.exit_code(), 255);
        }
        Ok(out) => panic!("expected a timeout, got {out:?}"),
    }

    match wait("volume-available", "vol-error").await {
        Err(e) => assert!(e.to_string().contains("terminal failure state"), "{e}"),
        Ok(out) => panic!("expected a failure, got {out:?}"),
    }
    match wait("volume-in-use", "vol-gone").await {
        Err(e) => assert!(e.to_string().contains("InvalidVolume.NotFound"), "{e}"),
        Ok(out) => panic!("expected a failure, got {out:?}"),
    }
}
