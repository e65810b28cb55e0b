"""KMS and the EBS encryption calls through boto3 (tests/encryption.rs): keys named every way
KMS names them, aliases, paging, key states and their errors, the AWS managed key, and two
accounts that never see or use each other's keys.

usage: kms.py ENDPOINT
"""
import sys
import time

import boto3
from botocore.exceptions import ClientError

from ec2util import check_json_replies

endpoint = sys.argv[1]
AZ = "us-east-1a"


def clients(key):
    s = boto3.session.Session(aws_access_key_id=key, aws_secret_access_key="x", region_name="us-east-1")
    return s.client("kms", endpoint_url=endpoint), s.client("ec2", endpoint_url=endpoint)


kms, ec2 = clients("test")  # account 000000000000
kms_b, ec2_b = clients("111122223333")

# Every KMS answer against botocore's model (see ec2util.check_json_replies).
answered = check_json_replies(kms, "kms")


def fails(code, call, **kw):
    try:
        call(**kw)
    except ClientError as e:
        assert e.response["Error"]["Code"] == code, (code, e.response)
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 400, e.response
        return e
    raise AssertionError(f"{call.__name__}({kw}) succeeded; expected {code}")


k = kms.create_key(Description="app data", Tags=[{"TagKey": "team", "TagValue": "x"}])["KeyMetadata"]
assert k["KeyState"] == "Enabled" and k["Enabled"] and k["KeyManager"] == "CUSTOMER", k
assert k["KeySpec"] == "SYMMETRIC_DEFAULT" and k["KeyUsage"] == "ENCRYPT_DECRYPT", k
assert k["Arn"] == f"arn:aws:kms:us-east-1:000000000000:key/{k['KeyId']}", k
assert k["AWSAccountId"] == "000000000000", k
assert abs(k["CreationDate"].timestamp() - time.time()) < 600, k

# Named by id, ARN, alias and alias ARN.
kms.create_alias(AliasName="alias/app", TargetKeyId=k["KeyId"])
for name in (k["KeyId"], k["Arn"], "alias/app", "arn:aws:kms:us-east-1:000000000000:alias/app"):
    assert kms.describe_key(KeyId=name)["KeyMetadata"]["KeyId"] == k["KeyId"], name
fails("AlreadyExistsException", kms.create_alias, AliasName="alias/app", TargetKeyId=k["KeyId"])
fails("InvalidAliasNameException", kms.create_alias, AliasName="alias/aws/mine", TargetKeyId=k["KeyId"])
fails("InvalidAliasNameException", kms.create_alias, AliasName="app", TargetKeyId=k["KeyId"])
fails("NotFoundException", kms.describe_key, KeyId="alias/missing")
fails("NotFoundException", kms.describe_key, KeyId="00000000-0000-4000-a000-000000000000")
fails("NotFoundException", kms.describe_key, KeyId=k["Arn"].replace("us-east-1", "eu-west-1"))
fails("InvalidArnException", kms.describe_key, KeyId="arn:aws:s3:::bucket")
fails("UnsupportedOperationException", kms.create_key, KeySpec="RSA_2048")

# Paging.
more = [kms.create_key()["KeyMetadata"]["KeyId"] for _ in range(3)]
page = kms.list_keys(Limit=2)
assert page["Truncated"] and len(page["Keys"]) == 2 and "NextMarker" in page, page
listed = {x["KeyId"] for p in kms.get_paginator("list_keys").paginate(PaginationConfig={"PageSize": 2})
          for x in p["Keys"]}
assert {k["KeyId"], *more} <= listed, listed
fails("InvalidMarkerException", kms.list_keys, Marker="zz")
assert [a["AliasName"] for a in kms.list_aliases(KeyId=k["KeyId"])["Aliases"]] == ["alias/app"]
alias = kms.list_aliases()["Aliases"][0]
assert alias["AliasArn"] == "arn:aws:kms:us-east-1:000000000000:alias/app", alias

# States.
kms.disable_key(KeyId="alias/app")
d = kms.describe_key(KeyId=k["KeyId"])["KeyMetadata"]
assert d["KeyState"] == "Disabled" and not d["Enabled"], d
fails("InvalidKMSKey.InvalidState", ec2.create_volume, AvailabilityZone=AZ, Size=1, Encrypted=True,
      KmsKeyId=k["KeyId"])
kms.enable_key(KeyId=k["Arn"])
s = kms.schedule_key_deletion(KeyId=k["KeyId"], PendingWindowInDays=7)
assert s["KeyState"] == "PendingDeletion" and s["PendingWindowInDays"] == 7 and s["KeyId"] == k["Arn"], s
assert abs(s["DeletionDate"].timestamp() - (time.time() + 7 * 86400)) < 600, s
d = kms.describe_key(KeyId=k["KeyId"])["KeyMetadata"]
assert d["KeyState"] == "PendingDeletion" and d["PendingDeletionWindowInDays"] == 7 and "DeletionDate" in d, d
fails("KMSInvalidStateException", kms.enable_key, KeyId=k["KeyId"])
fails("KMSInvalidStateException", kms.schedule_key_deletion, KeyId=k["KeyId"])
fails("ValidationException", kms.schedule_key_deletion, KeyId=more[0], PendingWindowInDays=3)
fails("InvalidKMSKey.InvalidState", ec2.create_volume, AvailabilityZone=AZ, Size=1, Encrypted=True,
      KmsKeyId="alias/app")
assert kms.cancel_key_deletion(KeyId=k["KeyId"])["KeyId"] == k["Arn"]
assert kms.describe_key(KeyId=k["KeyId"])["KeyMetadata"]["KeyState"] == "Disabled"
fails("KMSInvalidStateException", kms.cancel_key_deletion, KeyId=k["KeyId"])
kms.enable_key(KeyId=k["KeyId"])

# The AWS managed key: made on first use, neither disabled nor deleted, its alias reserved.
m = kms.describe_key(KeyId="alias/aws/ebs")["KeyMetadata"]
assert m["KeyManager"] == "AWS" and m["KeyState"] == "Enabled", m
assert ec2.get_ebs_default_kms_key_id()["KmsKeyId"] == m["Arn"]
fails("UnsupportedOperationException", kms.disable_key, KeyId=m["KeyId"])
fails("UnsupportedOperationException", kms.schedule_key_deletion, KeyId=m["KeyId"])
fails("InvalidAliasNameException", kms.delete_alias, AliasName="alias/aws/ebs")
fails("UnsupportedOperationException", kms.create_alias, AliasName="alias/managed", TargetKeyId=m["KeyId"])

# EC2's rules for the key of a new volume.
fails("InvalidParameterCombination", ec2.create_volume, AvailabilityZone=AZ, Size=1, KmsKeyId=k["KeyId"])
fails("InvalidParameterValue", ec2.create_volume, AvailabilityZone=AZ, Size=1, Encrypted=True,
      KmsKeyId="alias/missing")
v = ec2.create_volume(AvailabilityZone=AZ, Size=1, Encrypted=True, KmsKeyId="alias/app")
assert v["Encrypted"] and v["KmsKeyId"] == k["Arn"], v
v2 = ec2.create_volume(AvailabilityZone=AZ, Size=1, Encrypted=True)
assert v2["KmsKeyId"] == m["Arn"], v2
ec2.modify_ebs_default_kms_key_id(KmsKeyId="alias/app")
assert ec2.get_ebs_default_kms_key_id()["KmsKeyId"] == k["Arn"]
assert ec2.create_volume(AvailabilityZone=AZ, Size=1, Encrypted=True)["KmsKeyId"] == k["Arn"]
assert ec2.reset_ebs_default_kms_key_id()["KmsKeyId"] == m["Arn"]
fails("InvalidParameterValue", ec2.modify_ebs_default_kms_key_id, KmsKeyId="alias/missing")
plain = ec2.create_volume(AvailabilityZone=AZ, Size=1)
assert not plain["Encrypted"] and "KmsKeyId" not in plain, plain
only = lambda value: {x["VolumeId"] for x in ec2.describe_volumes(
    Filters=[{"Name": "encrypted", "Values": [value]}])["Volumes"]}
assert v["VolumeId"] in only("true") and plain["VolumeId"] not in only("true")
assert plain["VolumeId"] in only("false") and v["VolumeId"] not in only("false")
ec2.delete_volume(VolumeId=plain["VolumeId"])

# Another account sees none of these keys and cannot use them, even by ARN.
assert kms_b.list_keys()["Keys"] == [], "another account's keys listed"
assert kms_b.list_aliases()["Aliases"] == []
for name in (k["KeyId"], k["Arn"], "arn:aws:kms:us-east-1:000000000000:alias/app"):
    fails("NotFoundException", kms_b.describe_key, KeyId=name)
    fails("NotFoundException", kms_b.disable_key, KeyId=name)
fails("InvalidParameterValue", ec2_b.create_volume, AvailabilityZone=AZ, Size=1, Encrypted=True,
      KmsKeyId=k["Arn"])
assert not ec2_b.get_ebs_encryption_by_default()["EbsEncryptionByDefault"]
ec2.enable_ebs_encryption_by_default()
assert not ec2_b.get_ebs_encryption_by_default()["EbsEncryptionByDefault"], "a default leaked across accounts"
ec2.disable_ebs_encryption_by_default()
mb = kms_b.describe_key(KeyId="alias/aws/ebs")["KeyMetadata"]
assert mb["KeyId"] != m["KeyId"] and mb["AWSAccountId"] == "111122223333", mb

kms.delete_alias(AliasName="alias/app")
fails("NotFoundException", kms.delete_alias, AliasName="alias/app")
for vol in (v, v2):
    ec2.delete_volume(VolumeId=vol["VolumeId"])
served = {"CreateKey", "DescribeKey", "ListKeys", "ScheduleKeyDeletion", "CancelKeyDeletion",
          "ListAliases"}
assert served <= answered, f"not checked against the model: {sorted(served - answered)}"
print("kms ok")
