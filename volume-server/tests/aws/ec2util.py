"""What the boto3 test scripts share: an EC2 client for the endpoint (no retries, so an error
shows at once) and `fails`, which expects a call to fail with one EC2 error code."""
import boto3
from botocore.config import Config
from botocore.exceptions import ClientError


def ec2_client(endpoint, key="test", secret="test", region="us-east-1"):
    """A boto3 EC2 client of `endpoint` signing with `key`."""
    return boto3.session.Session(
        aws_access_key_id=key, aws_secret_access_key=secret, region_name=region
    ).client("ec2", endpoint_url=endpoint, config=Config(retries={"max_attempts": 1}))


def fails(code, call, *args, **kwargs):
    """Calls `call`, which must fail with EC2 error `code`."""
    try:
        call(*args, **kwargs)
    except ClientError as e:
        got = e.response["Error"]["Code"]
        assert got == code, f"{call.__name__}: {got} ({e}), expected {code}"
        return
    raise AssertionError(f"{call.__name__} {kwargs} succeeded; expected {code}")
