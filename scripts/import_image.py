#!/usr/bin/env python3
"""Imports a raw disk image as an EBS snapshot, and optionally an AMI, through the AWS APIs the
server speaks: the EBS direct APIs upload it block by block (StartSnapshot, PutSnapshotBlock
with each block's SHA-256, CompleteSnapshot with the LINEAR aggregate, as `coldsnap upload`
does against AWS), then RegisterImage makes an AMI whose root device is restored from it.
Blocks of zeros are not sent: the snapshot reads them as zeros anyway.

Works against any endpoint with the EBS direct APIs and EC2: this server's (`--endpoint
http://127.0.0.1:4566`, the default) or AWS itself (no `--endpoint`, your usual credentials).

usage: import_image.py IMAGE [--endpoint URL] [--name AMI-NAME] [--root-device /dev/xvda]
                       [--volume-size GIB] [--description TEXT] [--threads N]

Prints the SnapshotId, then the ImageId when --name is given.
"""
import argparse
import base64
import concurrent.futures
import hashlib
import os
import sys

import boto3
from botocore.config import Config

BLOCK = 512 * 1024
GIB = 1 << 30


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("image", help="a raw disk image (a file or a block device)")
    p.add_argument("--endpoint", default="http://127.0.0.1:4566",
                   help="the AWS endpoint ('aws' for AWS itself)")
    p.add_argument("--region", default=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    p.add_argument("--name", help="register an AMI of this name")
    p.add_argument("--root-device", default="/dev/xvda")
    p.add_argument("--volume-size", type=int, help="GiB (default: the image rounded up)")
    p.add_argument("--description", default="")
    p.add_argument("--threads", type=int, default=8)
    return p.parse_args()


def image_size(path):
    with open(path, "rb") as f:
        return f.seek(0, os.SEEK_END)


def clients(endpoint, region, threads):
    config = Config(max_pool_connections=threads, retries={"max_attempts": 5, "mode": "standard"})
    kwargs = {"region_name": region, "config": config}
    if endpoint != "aws":
        kwargs["endpoint_url"] = endpoint
        # The server's local mode takes any key; real credentials are used when present.
        session = boto3.session.Session()
        if session.get_credentials() is None:
            kwargs["aws_access_key_id"] = "test"
            kwargs["aws_secret_access_key"] = "test"
    return boto3.client("ebs", **kwargs), boto3.client("ec2", **kwargs)


def upload(ebs, path, size, volume_gib, description, threads):
    """Uploads `path`; returns the snapshot id."""
    started = ebs.start_snapshot(VolumeSize=volume_gib, Description=description, Timeout=60)
    snapshot_id = started["SnapshotId"]
    if started["BlockSize"] != BLOCK:
        sys.exit(f"unexpected block size {started['BlockSize']}")
    blocks = (size + BLOCK - 1) // BLOCK

    def put(index):
        with open(path, "rb") as f:
            f.seek(index * BLOCK)
            data = f.read(BLOCK)
        data = data + bytes(BLOCK - len(data))
        if data.count(0) == BLOCK:
            return index, None
        digest = hashlib.sha256(data).digest()
        ebs.put_snapshot_block(
            SnapshotId=snapshot_id, BlockIndex=index, BlockData=data, DataLength=BLOCK,
            Checksum=base64.b64encode(digest).decode(), ChecksumAlgorithm="SHA256",
        )
        return index, digest

    digests = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
        for index, digest in pool.map(put, range(blocks)):
            if digest is not None:
                digests[index] = digest
    aggregate = hashlib.sha256(b"".join(digests[i] for i in sorted(digests))).digest()
    done = ebs.complete_snapshot(
        SnapshotId=snapshot_id, ChangedBlocksCount=len(digests),
        Checksum=base64.b64encode(aggregate).decode(),
        ChecksumAlgorithm="SHA256", ChecksumAggregationMethod="LINEAR",
    )
    if done["Status"] not in ("completed", "pending"):
        sys.exit(f"{snapshot_id}: {done['Status']}")
    print(f"uploaded {len(digests)} of {blocks} blocks ({blocks - len(digests)} zero)",
          file=sys.stderr)
    return snapshot_id


def main():
    args = parse_args()
    size = image_size(args.image)
    if size == 0:
        sys.exit(f"{args.image} is empty")
    volume_gib = args.volume_size or max(1, (size + GIB - 1) // GIB)
    if volume_gib * GIB < size:
        sys.exit(f"--volume-size {volume_gib} GiB is smaller than the image ({size} bytes)")
    ebs, ec2 = clients(args.endpoint, args.region, args.threads)
    snapshot_id = upload(ebs, args.image, size, volume_gib, args.description, args.threads)
    ec2.get_waiter("snapshot_completed").wait(
        SnapshotIds=[snapshot_id], WaiterConfig={"Delay": 1, "MaxAttempts": 600})
    print(snapshot_id)
    if args.name:
        image = ec2.register_image(
            Name=args.name, Description=args.description, Architecture="x86_64",
            VirtualizationType="hvm", EnaSupport=True, RootDeviceName=args.root_device,
            BlockDeviceMappings=[{
                "DeviceName": args.root_device,
                "Ebs": {"SnapshotId": snapshot_id, "VolumeSize": volume_gib,
                        "VolumeType": "gp3", "DeleteOnTermination": True},
            }],
        )
        print(image["ImageId"])


if __name__ == "__main__":
    main()
