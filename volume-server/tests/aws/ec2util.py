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


def members_in_model(value, shape, path):
    """Asserts every member of a JSON reply is in botocore's output shape (botocore silently
    drops anything else, so a misspelt member would be missing for every SDK)."""
    if shape.type_name == "structure":
        assert isinstance(value, dict), (path, value)
        for k, v in value.items():
            assert k in shape.members, f"{path}.{k} is not in the model"
            members_in_model(v, shape.members[k], f"{path}.{k}")
    elif shape.type_name == "list":
        assert isinstance(value, list), (path, value)
        for i, v in enumerate(value):
            members_in_model(v, shape.member, f"{path}[{i}]")
    elif shape.type_name == "map":
        assert isinstance(value, dict), (path, value)
        for k, v in value.items():
            members_in_model(v, shape.value, f"{path}[{k}]")


def check_json_replies(client, service):
    """Checks every successful JSON reply of `client` against its model; returns the set of
    operations checked so far."""
    import json
    answered = set()

    def check(http_response, model, **_):
        if http_response.status_code == 200 and model.output_shape is not None:
            members_in_model(json.loads(http_response.content or b"{}"), model.output_shape, model.name)
            answered.add(model.name)

    client.meta.events.register(f"after-call.{service}", check)
    return answered
