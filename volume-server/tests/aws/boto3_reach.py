"""Reaching instances: key pairs, the metadata service, SSH and Elastic IPs, with the real
clients (boto3, the aws CLI, ssh, ssh-keygen, openssl, puttygen, curl, botocore's IMDS fetcher).

Usage: boto3_reach.py ENDPOINT AMI_ID

1. Key pairs: ed25519 and rsa, pem and ppk (each read back by ssh-keygen or puttygen, whose
   public key matches what DescribeKeyPairs shows), the fingerprints computed as AWS documents
   (created RSA: SHA-1 of the PKCS#8 DER; imported RSA: MD5 of the public DER; ED25519:
   SHA-256, as ssh-keygen -l prints), imports, filters, and every error code.
2. The EC2 guide's workflow with the aws CLI: create-key-pair > demo.pem, run-instances
   --key-name, allocate-address, associate-address, `ssh -i demo.pem admin@EIP` runs a command;
   another key is refused; reassociation (refused without AllowReassociation) moves the address
   to a second instance, whose hostname differs; the address follows in DescribeInstances and
   the metadata service; stop and start keep it; termination lets it go; quota of five.
3. Races: two addresses moved, disassociated and released from several threads; the host's
   DNAT map and routes then match DescribeAddresses exactly, and SSH agrees.
4. The metadata service from inside an instance's network namespace: v1 and v2 with curl,
   HttpTokens=required refuses v1, botocore's own IMDS fetcher reads the identity document,
   tags when InstanceMetadataTags is enabled, proxied token requests refused, HttpEndpoint
   disabled answers 403, the hop limit's bounds; an instance that takes its neighbour's address
   gets nothing (the bridge drops it).
"""
import base64
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time

from ec2util import ec2_client, fails

ENDPOINT, AMI = sys.argv[1], sys.argv[2]
ec2 = ec2_client(ENDPOINT)
FAST = {"Delay": 1, "MaxAttempts": 90}
WORK = tempfile.mkdtemp()
SSH_OPTS = [
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "BatchMode=yes",
    "-o", "ConnectTimeout=5",
    "-o", "LogLevel=ERROR",
]


def run(args, input=None, check=True):
    out = subprocess.run(args, input=input, capture_output=True, timeout=120)
    if check:
        assert out.returncode == 0, f"{args}: {out}"
    return out


def aws(*args):
    """The aws CLI against the endpoint; returns stdout."""
    env = dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
               AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE="/dev/null",
               AWS_SHARED_CREDENTIALS_FILE="/dev/null")
    out = subprocess.run(["aws", "--endpoint-url", ENDPOINT, "ec2", *args],
                         capture_output=True, timeout=120, env=env)
    assert out.returncode == 0, f"aws ec2 {args}: {out}"
    return out.stdout.decode()


def path(name, data=None, mode=0o600):
    p = os.path.join(WORK, name)
    if data is not None:
        with open(p, "w" if isinstance(data, str) else "wb") as f:
            f.write(data)
        os.chmod(p, mode)
    return p


def colon_hex(digest):
    return ":".join(f"{b:02x}" for b in digest)


# --------------------------------------------------------------------------- key pairs

made = {}
for key_type in ("ed25519", "rsa"):
    for fmt in ("pem", "ppk"):
        name = f"made-{key_type}-{fmt}"
        k = ec2.create_key_pair(KeyName=name, KeyType=key_type, KeyFormat=fmt,
                                TagSpecifications=[{"ResourceType": "key-pair",
                                                    "Tags": [{"Key": "kind", "Value": key_type}]}])
        assert k["KeyName"] == name and k["KeyPairId"].startswith("key-"), k
        assert k["Tags"] == [{"Key": "kind", "Value": key_type}], k
        made[name] = k
        material = path(f"{name}.{fmt}", k["KeyMaterial"])
        if fmt == "pem":
            public = run(["ssh-keygen", "-y", "-f", material]).stdout.decode().split()[:2]
        else:
            public = run(["puttygen", material, "-O", "public-openssh", "-o", "/dev/stdout"]
                         ).stdout.decode().split()[:2]
        shown = ec2.describe_key_pairs(KeyNames=[name], IncludePublicKey=True)["KeyPairs"][0]
        assert shown["PublicKey"].split()[:2] == public, (shown, public)
        assert shown["PublicKey"].split()[2] == name, shown
        assert shown["KeyType"] == key_type and shown["KeyFingerprint"] == k["KeyFingerprint"]
        if key_type == "ed25519":
            blob = base64.b64decode(public[1])
            want = base64.b64encode(hashlib.sha256(blob).digest()).decode()
            assert k["KeyFingerprint"] == want, (k["KeyFingerprint"], want)
            if fmt == "pem":
                line = run(["ssh-keygen", "-l", "-f", material]).stdout.decode()
                assert line.split()[1] == "SHA256:" + want.rstrip("="), (line, want)
        elif fmt == "pem":
            assert k["KeyMaterial"].startswith("-----BEGIN RSA PRIVATE KEY-----"), k["KeyMaterial"][:40]
            # The EC2 guide's check for a key EC2 made.
            der = run(["openssl", "pkcs8", "-in", material, "-inform", "PEM", "-outform", "DER",
                       "-topk8", "-nocrypt"]).stdout
            assert k["KeyFingerprint"] == colon_hex(hashlib.sha1(der).digest()), k["KeyFingerprint"]

# Imported keys: the fingerprint as the EC2 guide checks it.
for key_type in ("ed25519", "rsa"):
    priv = path(f"own-{key_type}")
    run(["ssh-keygen", "-q", "-t", key_type, "-N", "", "-C", "me@host", "-f", priv])
    pub = open(priv + ".pub", "rb").read()
    k = ec2.import_key_pair(KeyName=f"own-{key_type}", PublicKeyMaterial=pub)
    if key_type == "ed25519":
        line = run(["ssh-keygen", "-l", "-f", priv + ".pub"]).stdout.decode()
        assert "SHA256:" + k["KeyFingerprint"].rstrip("=") == line.split()[1], (k, line)
    else:
        pkcs8 = run(["ssh-keygen", "-e", "-m", "PKCS8", "-f", priv + ".pub"]).stdout
        der = run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pkcs8).stdout
        md5 = run(["openssl", "md5", "-c"], input=der).stdout.decode().split()[-1]
        assert k["KeyFingerprint"] == md5, (k["KeyFingerprint"], md5)
        assert len(md5) == 47
    shown = ec2.describe_key_pairs(KeyNames=[f"own-{key_type}"], IncludePublicKey=True)["KeyPairs"][0]
    assert shown["PublicKey"].split()[:2] == pub.decode().split()[:2], shown

# Filters, ids, errors.
by_type = ec2.describe_key_pairs(Filters=[{"Name": "key-type", "Values": ["rsa"]}])["KeyPairs"]
assert sorted(k["KeyName"] for k in by_type) == ["made-rsa-pem", "made-rsa-ppk", "own-rsa"], by_type
fp = made["made-ed25519-pem"]["KeyFingerprint"]
assert [k["KeyName"] for k in ec2.describe_key_pairs(
    Filters=[{"Name": "fingerprint", "Values": [fp]}])["KeyPairs"]] == ["made-ed25519-pem"]
assert [k["KeyName"] for k in ec2.describe_key_pairs(
    Filters=[{"Name": "tag:kind", "Values": ["ed25519"]}])["KeyPairs"]] == [
    "made-ed25519-pem", "made-ed25519-ppk"]
kid = made["made-rsa-ppk"]["KeyPairId"]
assert ec2.describe_key_pairs(KeyPairIds=[kid])["KeyPairs"][0]["KeyName"] == "made-rsa-ppk"
assert "PublicKey" not in ec2.describe_key_pairs(KeyPairIds=[kid])["KeyPairs"][0]
fails("InvalidKeyPair.Duplicate", ec2.create_key_pair, KeyName="own-rsa")
fails("InvalidKeyPair.Duplicate", ec2.import_key_pair, KeyName="made-rsa-pem",
      PublicKeyMaterial=open(path("own-rsa.pub"), "rb").read())
fails("InvalidKeyPair.NotFound", ec2.describe_key_pairs, KeyNames=["nope"])
fails("InvalidKeyPair.NotFound", ec2.describe_key_pairs, KeyPairIds=["key-0123456789abcdef0"])
fails("InvalidKeyPair.NotFound", ec2.delete_key_pair, KeyPairId="key-0123456789abcdef0")
fails("InvalidKey.Format", ec2.import_key_pair, KeyName="junk", PublicKeyMaterial=b"not a key")
run(["ssh-keygen", "-q", "-t", "ecdsa", "-N", "", "-f", path("ecdsa")])
fails("InvalidKey.Format", ec2.import_key_pair, KeyName="junk",
      PublicKeyMaterial=open(path("ecdsa.pub"), "rb").read())
fails("InvalidParameterValue", ec2.create_key_pair, KeyName="x", KeyType="dsa")
fails("InvalidParameterValue", ec2.create_key_pair, KeyName="x", KeyFormat="der")
fails("InvalidParameterValue", ec2.create_key_pair, KeyName="two\nlines")
# RSA keys of 1024 bits import (EC2 takes 1024, 2048 and 4096).
run(["ssh-keygen", "-q", "-t", "rsa", "-b", "1024", "-N", "", "-f", path("rsa1024")])
ec2.import_key_pair(KeyName="rsa1024", PublicKeyMaterial=open(path("rsa1024.pub"), "rb").read())
ec2.delete_key_pair(KeyName="rsa1024")
fails("InvalidKeyPair.NotFound", ec2.run_instances, ImageId=AMI, MinCount=1, MaxCount=1,
      KeyName="nope")
# Deleting by name is idempotent, as on EC2; by id it is not.
ec2.delete_key_pair(KeyName="made-rsa-ppk")
ec2.delete_key_pair(KeyName="made-rsa-ppk")
fails("InvalidKeyPair.NotFound", ec2.describe_key_pairs, KeyNames=["made-rsa-ppk"])
assert ec2.delete_key_pair(KeyPairId=made["made-ed25519-ppk"]["KeyPairId"])["Return"]

# ------------------------------------------------------------- the EC2 guide's workflow

demo = path("demo.pem")
with open(demo, "w") as f:
    f.write(aws("create-key-pair", "--key-name", "demo", "--key-type", "ed25519",
                "--query", "KeyMaterial", "--output", "text"))
os.chmod(demo, 0o400)


def launch(**extra):
    i = aws("run-instances", "--image-id", AMI, "--instance-type", "t3.micro",
            "--key-name", "demo", "--query", "Instances[0].InstanceId", "--output", "text",
            *extra.get("args", []))
    return i.strip()


i1 = launch()
i2 = launch(args=["--metadata-options", "HttpTokens=required,InstanceMetadataTags=enabled",
                  "--tag-specifications", "ResourceType=instance,Tags=[{Key=Name,Value=second}]"])
ec2.get_waiter("instance_status_ok").wait(InstanceIds=[i1, i2], WaiterConfig=FAST)


def instance(i):
    return ec2.describe_instances(InstanceIds=[i])["Reservations"][0]["Instances"][0]


assert instance(i1)["KeyName"] == "demo"
assert instance(i1)["MetadataOptions"]["HttpTokens"] == "optional"
assert instance(i2)["MetadataOptions"]["HttpTokens"] == "required"
assert instance(i2)["MetadataOptions"]["InstanceMetadataTags"] == "enabled"
assert "PublicIpAddress" not in instance(i1)

alloc = aws("allocate-address", "--query", "AllocationId", "--output", "text").strip()
eip = ec2.describe_addresses(AllocationIds=[alloc])["Addresses"][0]
assert eip["Domain"] == "vpc" and "AssociationId" not in eip, eip
ip = eip["PublicIp"]
aws("associate-address", "--allocation-id", alloc, "--instance-id", i1)


def ssh(key, command, check=True):
    return run(["ssh", "-i", key, *SSH_OPTS, f"admin@{ip}", command], check=check)


def ssh_hostname(key):
    """`hostname` over SSH, retrying while sshd starts."""
    deadline = time.time() + 30
    while True:
        out = ssh(key, "hostname", check=False)
        if out.returncode == 0 or time.time() > deadline:
            assert out.returncode == 0, out
            return out.stdout.decode().strip()
        time.sleep(0.5)


assert ssh_hostname(demo) == instance(i1)["PrivateDnsName"], instance(i1)
whoami = ssh(demo, "id -un; cat ~/.ssh/authorized_keys").stdout.decode().split("\n")
assert whoami[0] == "admin", whoami
assert instance(i1)["PublicIpAddress"] == ip
assert instance(i1)["NetworkInterfaces"][0]["Association"]["PublicIp"] == ip
# Another key is refused.
refused = ssh(path("own-ed25519"), "true", check=False)
assert refused.returncode == 255 and b"Permission denied" in refused.stderr, refused

fails("Resource.AlreadyAssociated", ec2.associate_address, AllocationId=alloc, InstanceId=i2)
aws("associate-address", "--allocation-id", alloc, "--instance-id", i2, "--allow-reassociation")
assert ssh_hostname(demo) == instance(i2)["PrivateDnsName"] != instance(i1)["PrivateDnsName"]
assert "PublicIpAddress" not in instance(i1), instance(i1)
shown = ec2.describe_addresses(Filters=[{"Name": "instance-id", "Values": [i2]}])["Addresses"]
assert [a["PublicIp"] for a in shown] == [ip], shown
assert shown[0]["PrivateIpAddress"] == instance(i2)["PrivateIpAddress"], shown
assert shown[0]["NetworkInterfaceId"] == instance(i2)["NetworkInterfaces"][0]["NetworkInterfaceId"]

# The quota: five per region.
extra = [ec2.allocate_address(Domain="vpc")["AllocationId"] for _ in range(4)]
fails("AddressLimitExceeded", ec2.allocate_address, Domain="vpc")
for a in extra:
    ec2.release_address(AllocationId=a)
# In the default VPC, releasing an associated address lets it go first (EC2's rule; another
# VPC's is InvalidIPAddress.InUse, accounts.py).
spare = ec2.allocate_address(Domain="vpc")["AllocationId"]
ec2.associate_address(AllocationId=spare, InstanceId=i1)
assert instance(i1)["PublicIpAddress"] == ec2.describe_addresses(
    AllocationIds=[spare])["Addresses"][0]["PublicIp"]
ec2.release_address(AllocationId=spare)
assert "PublicIpAddress" not in instance(i1), instance(i1)
fails("InvalidAllocationID.NotFound", ec2.release_address, AllocationId="eipalloc-0123456789abcdef0")
fails("InvalidAllocationID.NotFound", ec2.associate_address,
      AllocationId="eipalloc-0123456789abcdef0", InstanceId=i1)
fails("InvalidAllocationID.NotFound", ec2.describe_addresses,
      AllocationIds=["eipalloc-0123456789abcdef0"])
fails("InvalidAssociationID.NotFound", ec2.disassociate_address,
      AssociationId="eipassoc-0123456789abcdef0")
fails("InvalidInstanceID.NotFound", ec2.associate_address, AllocationId=alloc,
      InstanceId="i-0123456789abcdef0", AllowReassociation=True)
fails("InvalidNetworkInterfaceID.NotFound", ec2.associate_address, AllocationId=alloc,
      NetworkInterfaceId="eni-0123456789abcdef0", AllowReassociation=True)
fails("MissingParameter", ec2.associate_address, AllocationId=alloc)
fails("InvalidAddress.NotFound", ec2.describe_addresses, PublicIps=["192.0.2.1"])

# --------------------------------------------------------------- the metadata service


def in_netns(i, args, check=True):
    return run(["ip", "netns", "exec", f"ebs-{i}", *args], check=check)


def curl(i, url, *headers, method="GET"):
    args = ["curl", "-s", "-m", "5", "-X", method, "-w", "\n%{http_code}"]
    for h in headers:
        args += ["-H", h]
    out = in_netns(i, args + ["http://169.254.169.254" + url]).stdout.decode()
    body, _, code = out.rpartition("\n")
    return int(code), body


TTL = "X-aws-ec2-metadata-token-ttl-seconds: 300"
# i1: v1 and v2 both answered (HttpTokens=optional).
assert curl(i1, "/latest/meta-data/instance-id") == (200, i1)
code, token = curl(i1, "/latest/api/token", TTL, method="PUT")
assert code == 200 and token, token
auth = f"X-aws-ec2-metadata-token: {token}"
assert curl(i1, "/latest/meta-data/local-ipv4", auth) == (200, instance(i1)["PrivateIpAddress"])
assert curl(i1, "/latest/meta-data/hostname", auth) == (200, instance(i1)["PrivateDnsName"])
assert curl(i1, "/latest/meta-data/instance-type", auth) == (200, "t3.micro")
assert curl(i1, "/latest/meta-data/ami-id", auth) == (200, AMI)
assert curl(i1, "/latest/meta-data/placement/availability-zone", auth) == (200, "us-east-1a")
assert curl(i1, "/latest/meta-data/placement/region", auth) == (200, "us-east-1")
assert curl(i1, "/latest/meta-data/mac", auth) == (200, instance(i1)["NetworkInterfaces"][0]["MacAddress"])
assert curl(i1, "/latest/meta-data/block-device-mapping/root", auth) == (200, "/dev/xvda")
demo_public = ec2.describe_key_pairs(KeyNames=["demo"], IncludePublicKey=True)["KeyPairs"][0]["PublicKey"]
assert curl(i1, "/latest/meta-data/public-keys/", auth) == (200, "0=demo")
assert curl(i1, "/latest/meta-data/public-keys/0/openssh-key", auth) == (200, demo_public)
# The address moved to i2: i1 has no public address any more.
assert curl(i1, "/latest/meta-data/public-ipv4", auth)[0] == 404
assert curl(i1, "/latest/user-data", auth)[0] == 404
assert curl(i1, "/latest/meta-data/spot/instance-action", auth)[0] == 404
assert curl(i1, "/latest/meta-data/tags/instance", auth)[0] == 404
assert curl(i1, "/latest/meta-data/instance-id", "X-aws-ec2-metadata-token: forged")[0] == 401
assert curl(i1, "/latest/api/token", method="PUT")[0] == 400
assert curl(i1, "/latest/api/token", TTL, "X-Forwarded-For: 10.0.0.9", method="PUT")[0] == 403

# i2: HttpTokens=required.
assert curl(i2, "/latest/meta-data/instance-id")[0] == 401
code, token2 = curl(i2, "/latest/api/token", TTL, method="PUT")
auth2 = f"X-aws-ec2-metadata-token: {token2}"
assert curl(i2, "/latest/meta-data/instance-id", auth2) == (200, i2)
assert curl(i2, "/latest/meta-data/public-ipv4", auth2) == (200, ip)
assert curl(i2, "/latest/meta-data/tags/instance", auth2) == (200, "Name")
assert curl(i2, "/latest/meta-data/tags/instance/Name", auth2) == (200, "second")
# One instance's token is no token for another.
assert curl(i2, "/latest/meta-data/instance-id", auth)[0] == 401
# An instance cannot pass for its neighbour: what leaves its port with another address is
# dropped at the bridge (EC2's source/destination check), so the neighbour's metadata stays its.
neighbour = instance(i2)["PrivateIpAddress"]
in_netns(i1, ["ip", "addr", "add", f"{neighbour}/32", "dev", "eth0"])
spoofed = in_netns(i1, ["curl", "-s", "-m", "3", "--interface", neighbour, "-o", "/dev/null",
                        "-w", "%{http_code}", "http://169.254.169.254/latest/meta-data/instance-id"],
                   check=False)
in_netns(i1, ["ip", "addr", "del", f"{neighbour}/32", "dev", "eth0"])
assert spoofed.stdout == b"000", spoofed
assert curl(i1, "/latest/meta-data/instance-id", auth) == (200, i1)
# botocore's own fetcher (what every Python SDK credential and region lookup uses).
doc = in_netns(i2, ["python3", "-c", """
import json, botocore.utils as u
f = u.IMDSFetcher(timeout=2, num_attempts=2)
token = f._fetch_metadata_token()
r = f._get_request('latest/dynamic/instance-identity/document', None, token)
print(r.text)
print(u.InstanceMetadataRegionFetcher().retrieve_region())
"""]).stdout.decode()
document, region = doc.rsplit("}", 1)
document = json.loads(document + "}")
assert document["instanceId"] == i2 and document["imageId"] == AMI, document
assert document["privateIp"] == instance(i2)["PrivateIpAddress"], document
assert document["accountId"] == instance(i2)["NetworkInterfaces"][0]["OwnerId"], document
assert region.strip() == "us-east-1", region

# ModifyInstanceMetadataOptions.
r = ec2.modify_instance_metadata_options(InstanceId=i1, HttpTokens="required")
assert r["InstanceMetadataOptions"]["HttpTokens"] == "required", r
assert curl(i1, "/latest/meta-data/instance-id")[0] == 401
assert curl(i1, "/latest/meta-data/instance-id", auth) == (200, i1)
ec2.modify_instance_metadata_options(InstanceId=i1, HttpEndpoint="disabled")
assert curl(i1, "/latest/meta-data/instance-id", auth)[0] == 403
ec2.modify_instance_metadata_options(InstanceId=i1, HttpEndpoint="enabled")
fails("InvalidParameterValue", ec2.modify_instance_metadata_options, InstanceId=i1,
      HttpPutResponseHopLimit=65)
fails("InvalidParameterValue", ec2.modify_instance_metadata_options, InstanceId=i1,
      HttpTokens="sometimes")
fails("InvalidInstanceID.NotFound", ec2.modify_instance_metadata_options,
      InstanceId="i-0123456789abcdef0", HttpTokens="required")
r = ec2.modify_instance_metadata_options(InstanceId=i1, HttpPutResponseHopLimit=2)
assert instance(i1)["MetadataOptions"]["HttpPutResponseHopLimit"] == 2

# ------------------------------------------------------------------------------ races
# Two addresses moved between the two instances, disassociated and released from several
# threads at once; afterwards the host's wiring (the DNAT map and the routes) is exactly what
# DescribeAddresses says, and SSH to each address reaches the instance it names.
import random
import threading

alloc2 = ec2.allocate_address(Domain="vpc")["AllocationId"]
ip2 = ec2.describe_addresses(AllocationIds=[alloc2])["Addresses"][0]["PublicIp"]
allowed = {"InvalidIPAddress.InUse", "InvalidAllocationID.NotFound",
           "InvalidAssociationID.NotFound", "InvalidAddress.NotFound"}
unexpected = []
stop_at = time.time() + 6


def storm(step):
    from botocore.exceptions import ClientError
    client = ec2_client(ENDPOINT)
    while time.time() < stop_at:
        try:
            step(client)
        except ClientError as e:
            if e.response["Error"]["Code"] not in allowed:
                unexpected.append(e)
        except Exception as e:  # noqa: BLE001 - anything else is a failure too
            unexpected.append(e)


steps = [
    lambda c: c.associate_address(AllocationId=alloc, InstanceId=random.choice([i1, i2]),
                                  AllowReassociation=True),
    lambda c: c.associate_address(AllocationId=alloc2, InstanceId=random.choice([i1, i2]),
                                  AllowReassociation=True),
    lambda c: c.disassociate_address(PublicIp=random.choice([ip, ip2])),
    lambda c: c.release_address(AllocationId=alloc2) if random.random() < 0.05 else None,
]
threads = [threading.Thread(target=storm, args=(s,)) for s in steps for _ in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert not unexpected, unexpected
addresses = ec2.describe_addresses()["Addresses"]
owners = [a["InstanceId"] for a in addresses if "InstanceId" in a]
assert len(owners) == len(set(owners)), f"an instance with two addresses: {addresses}"
want = {a["PublicIp"]: a["PrivateIpAddress"] for a in addresses if "InstanceId" in a}
for a in addresses:
    if "InstanceId" in a:
        assert instance(a["InstanceId"])["PublicIpAddress"] == a["PublicIp"], a
tables = [w for w in run(["nft", "list", "tables"]).stdout.decode().split() if w.startswith("ebs_eip_")]
if want:
    assert len(tables) == 1, tables
    got = json.loads(run(["nft", "-j", "list", "map", "ip", tables[0], "eip"]).stdout)
    elems = next(x["map"] for x in got["nftables"] if "map" in x).get("elem", [])
    assert {k: v for k, v in elems} == want, (elems, want)
else:
    assert tables == [], tables
routes = run(["ip", "-j", "route", "show", "root", "203.0.113.0/28"]).stdout
assert sorted(r["dst"] for r in json.loads(routes)) == sorted(want), (routes, want)
by_ip = {a["PublicIp"]: a for a in addresses}
for public in (ip, ip2):
    a = by_ip.get(public)
    saved, ip = ip, public
    if a and "InstanceId" in a:
        assert ssh_hostname(demo) == instance(a["InstanceId"])["PrivateDnsName"], a
    else:
        assert ssh(demo, "true", check=False).returncode == 255
    ip = saved
for a in addresses:
    if "AssociationId" in a:
        ec2.disassociate_address(AssociationId=a["AssociationId"])
    if a["AllocationId"] != alloc:
        ec2.release_address(AllocationId=a["AllocationId"])
aws("associate-address", "--allocation-id", alloc, "--instance-id", i2)

# ----------------------------------------------------- stop, start, disassociate, terminate

ec2.stop_instances(InstanceIds=[i2])
ec2.get_waiter("instance_stopped").wait(InstanceIds=[i2], WaiterConfig=FAST)
assert ec2.describe_addresses(AllocationIds=[alloc])["Addresses"][0]["InstanceId"] == i2
ec2.start_instances(InstanceIds=[i2])
ec2.get_waiter("instance_status_ok").wait(InstanceIds=[i2], WaiterConfig=FAST)
assert ssh_hostname(demo) == instance(i2)["PrivateDnsName"]
assert instance(i2)["PublicIpAddress"] == ip

association = ec2.describe_addresses(AllocationIds=[alloc])["Addresses"][0]["AssociationId"]
ec2.disassociate_address(AssociationId=association)
gone = ssh(demo, "true", check=False)
assert gone.returncode == 255, gone
assert "PublicIpAddress" not in instance(i2)
# By network interface, then termination lets it go (the address stays allocated).
eni = instance(i1)["NetworkInterfaces"][0]["NetworkInterfaceId"]
ec2.associate_address(AllocationId=alloc, NetworkInterfaceId=eni)
assert ssh_hostname(demo) == instance(i1)["PrivateDnsName"]
ec2.terminate_instances(InstanceIds=[i1, i2])
ec2.get_waiter("instance_terminated").wait(InstanceIds=[i1, i2], WaiterConfig=FAST)
left = ec2.describe_addresses(AllocationIds=[alloc])["Addresses"][0]
assert "AssociationId" not in left and "InstanceId" not in left, left
ec2.release_address(AllocationId=alloc)
assert ec2.describe_addresses()["Addresses"] == []
print("reach ok")
