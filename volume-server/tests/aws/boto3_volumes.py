"""boto3 against the AWS endpoint (tests/aws_endpoint.rs): volumes through a paginator and
waiters, ClientError codes, and STS. Exits non-zero on the first failed check.

usage: boto3_volumes.py ENDPOINT
"""
import sys

import boto3
from botocore.exceptions import ClientError

endpoint = sys.argv[1]
session = boto3.session.Session(
    aws_access_key_id="123456789012", aws_secret_access_key="x", region_name="us-east-1"
)
ec2 = session.client("ec2", endpoint_url=endpoint)
sts = session.client("sts", endpoint_url=endpoint)

assert sts.get_caller_identity()["Account"] == "123456789012"

made = []
for i in range(12):
    v = ec2.create_volume(
        AvailabilityZone="us-east-1b",
        Size=1,
        VolumeType="gp3",
        TagSpecifications=[
            {"ResourceType": "volume", "Tags": [{"Key": "batch", "Value": "boto3"}]}
        ],
    )
    made.append(v["VolumeId"])
ec2.get_waiter("volume_available").wait(VolumeIds=made)

pages = ec2.get_paginator("describe_volumes").paginate(
    Filters=[{"Name": "tag:batch", "Values": ["boto3"]}], PaginationConfig={"PageSize": 5}
)
seen, npages = [], 0
for page in pages:
    npages += 1
    seen += [v["VolumeId"] for v in page["Volumes"]]
assert sorted(seen) == sorted(made), (seen, made)
assert npages == 3, npages

try:
    ec2.describe_volumes(VolumeIds=["vol-0123456789abcdef0"])
    raise AssertionError("describe of a missing volume succeeded")
except ClientError as e:
    assert e.response["Error"]["Code"] == "InvalidVolume.NotFound", e.response
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 400, e.response

try:
    ec2.create_volume(AvailabilityZone="us-east-1a", Size=1, VolumeType="gp9")
    raise AssertionError("a volume of an unknown type was made")
except ClientError as e:
    assert e.response["Error"]["Code"] in ("InvalidParameterValue", "UnknownVolumeType"), e.response

ec2.create_tags(Resources=made[:2], Tags=[{"Key": "keep", "Value": "yes"}])
kept = ec2.describe_volumes(Filters=[{"Name": "tag:keep", "Values": ["yes"]}])["Volumes"]
assert sorted(v["VolumeId"] for v in kept) == sorted(made[:2]), kept

for v in made:
    ec2.delete_volume(VolumeId=v)
ec2.get_waiter("volume_deleted").wait(VolumeIds=made)
print("boto3: ok")
