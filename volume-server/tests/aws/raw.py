"""Sends one raw request to the AWS endpoint and prints `STATUS CODE` (the error code from the
XML, or `-`), for the bad-input tests of tests/aws_endpoint.rs.

usage: raw.py ENDPOINT MODE [BODY]
  MODE signed:  SigV4-signed with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (botocore's signer)
  MODE stale:   signed, then X-Amz-Date moved 20 minutes back
  MODE unsigned: no Authorization header
  MODE big:     signed, with a body of 3 MiB
  MODE rebind:  signed, then sent with Host: attacker.example (a DNS-rebinding page's request)
  MODE swapped: signed, then sent with another body and an (unsigned) x-amz-content-sha256
                header naming the signed body's hash
BODY is the form body (default: Action=DescribeVolumes&Version=2016-11-15). SERVICE (env,
default ec2) is the service signed for.
"""
import os
import re
import sys
import urllib.error
import urllib.request

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

endpoint, mode = sys.argv[1], sys.argv[2]
body = sys.argv[3] if len(sys.argv) > 3 else "Action=DescribeVolumes&Version=2016-11-15"
if mode == "big":
    body = "Action=DescribeVolumes&Version=2016-11-15&Junk=" + "x" * (3 << 20)
data = body.encode("latin-1")
headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
if mode != "unsigned":
    req = AWSRequest(method="POST", url=endpoint + "/", data=data, headers=headers)
    creds = Credentials(os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"])
    SigV4Auth(creds, os.environ.get("SERVICE", "ec2"), "us-east-1").add_auth(req)
    headers = dict(req.headers.items())
    if mode == "stale":
        import datetime

        old = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=20)
        headers["X-Amz-Date"] = old.strftime("%Y%m%dT%H%M%SZ")
        # The scope's date must still match the request's.
        headers["Authorization"] = re.sub(
            r"/\d{8}/", "/" + old.strftime("%Y%m%d") + "/", headers["Authorization"]
        )
if mode == "rebind":
    headers["Host"] = "attacker.example:4566"
if mode == "swapped":
    import hashlib

    headers["x-amz-content-sha256"] = hashlib.sha256(data).hexdigest()
    data = b"Action=DeleteVolume&VolumeId=vol-0123456789abcdef0&Version=2016-11-15"
r = urllib.request.Request(endpoint + "/", data=data, headers=headers, method="POST")
try:
    with urllib.request.urlopen(r, timeout=30) as resp:
        status, text = resp.status, resp.read().decode()
except urllib.error.HTTPError as e:
    status, text = e.code, e.read().decode()
m = re.search(r"<Code>([^<]*)</Code>", text)
print(status, m.group(1) if m else "-")
