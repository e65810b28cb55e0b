"""The network a new account starts with, through boto3 (tests/aws_endpoint.rs): the default
VPC, one default subnet per zone and the default security group (DescribeVpcs,
DescribeSubnets, DescribeSecurityGroups with ids, names and filters, and their NotFound
errors), and each instance's place in them: RunInstances into a subnet or zone, the private
address, DNS name and network interface DescribeInstances shows, addresses freed at
termination.

usage: boto3_network.py ENDPOINT
"""
import ipaddress
import sys

from ec2util import ec2_client, fails

endpoint = sys.argv[1]
FAST = {"Delay": 1, "MaxAttempts": 120}
ec2 = ec2_client(endpoint)


# One default VPC, as in a new account.
vpcs = ec2.describe_vpcs()["Vpcs"]
assert len(vpcs) == 1, vpcs
vpc = vpcs[0]
assert vpc["IsDefault"] is True and vpc["State"] == "available", vpc
assert vpc["CidrBlock"] == "172.31.0.0/16", vpc
assert vpc["CidrBlockAssociationSet"][0]["CidrBlockState"]["State"] == "associated", vpc
assert vpc["OwnerId"] == "000000000000" and vpc["InstanceTenancy"] == "default", vpc
vpc_id = vpc["VpcId"]
assert ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"] == vpcs
assert ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"] == vpcs
assert ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["false"]}])["Vpcs"] == []
assert ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": ["x"]}])["Vpcs"] == []
fails("InvalidVpcID.NotFound", ec2.describe_vpcs, VpcIds=["vpc-0123456789abcdef0"])
fails("InvalidParameterValue", ec2.describe_vpcs, Filters=[{"Name": "colour", "Values": ["x"]}])
# It does not change across calls (ids are derived, not random).
assert ec2.describe_vpcs()["Vpcs"][0]["VpcId"] == vpc_id

# A default subnet per zone, the /20s EC2 gives them.
subnets = ec2.describe_subnets()["Subnets"]
assert [s["AvailabilityZone"] for s in subnets] == ["us-east-1a", "us-east-1b", "us-east-1c"], subnets
assert [s["CidrBlock"] for s in subnets] == ["172.31.0.0/20", "172.31.16.0/20", "172.31.32.0/20"], subnets
for s in subnets:
    assert s["VpcId"] == vpc_id and s["DefaultForAz"] and s["State"] == "available", s
    assert s["AvailableIpAddressCount"] == 4091, s
    assert s["SubnetArn"] == f"arn:aws:ec2:us-east-1:000000000000:subnet/{s['SubnetId']}", s
assert subnets[0]["AvailabilityZoneId"] == "use1-az1", subnets[0]
by_zone = {s["AvailabilityZone"]: s for s in subnets}
b = ec2.describe_subnets(Filters=[{"Name": "availability-zone", "Values": ["us-east-1b"]}])["Subnets"]
assert b == [by_zone["us-east-1b"]], b
assert ec2.describe_subnets(SubnetIds=[subnets[2]["SubnetId"]])["Subnets"] == [subnets[2]]
assert len(ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]},
                                         {"Name": "default-for-az", "Values": ["true"]}])["Subnets"]) == 3
fails("InvalidSubnetID.NotFound", ec2.describe_subnets, SubnetIds=["subnet-0123456789abcdef0"])

# The default security group: by id, by name, by filter.
groups = ec2.describe_security_groups()["SecurityGroups"]
assert len(groups) == 1, groups
sg = groups[0]
assert sg["GroupName"] == "default" and sg["VpcId"] == vpc_id, sg
assert sg["Description"] == "default VPC security group", sg
assert sg["IpPermissions"][0]["UserIdGroupPairs"][0]["GroupId"] == sg["GroupId"], sg
assert sg["IpPermissionsEgress"][0]["IpRanges"] == [{"CidrIp": "0.0.0.0/0"}], sg
assert ec2.describe_security_groups(GroupNames=["default"])["SecurityGroups"] == groups
assert ec2.describe_security_groups(GroupIds=[sg["GroupId"]])["SecurityGroups"] == groups
assert ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["web"]}])["SecurityGroups"] == []
fails("InvalidGroup.NotFound", ec2.describe_security_groups, GroupIds=["sg-0123456789abcdef0"])
fails("InvalidGroup.NotFound", ec2.describe_security_groups, GroupNames=["web"])

# Instances take their place in a subnet: by SubnetId, by Placement, or the first zone.
snap_vol = ec2.create_volume(AvailabilityZone="us-east-1a", Size=1)["VolumeId"]
ec2.get_waiter("volume_available").wait(VolumeIds=[snap_vol], WaiterConfig=FAST)
snap = ec2.create_snapshot(VolumeId=snap_vol)["SnapshotId"]
ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[snap], WaiterConfig=FAST)
ami = ec2.register_image(Name="net", RootDeviceName="/dev/xvda",
                         BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snap}}])["ImageId"]
sub_b = by_zone["us-east-1b"]["SubnetId"]
r = ec2.run_instances(ImageId=ami, MinCount=2, MaxCount=2, InstanceType="t3.micro",
                      SubnetId=sub_b, SecurityGroupIds=[sg["GroupId"]])
ids = [i["InstanceId"] for i in r["Instances"]]
for i in r["Instances"]:
    assert i["Placement"]["AvailabilityZone"] == "us-east-1b", i
    assert i["SubnetId"] == sub_b and i["VpcId"] == vpc_id, i
    assert ipaddress.ip_address(i["PrivateIpAddress"]) in ipaddress.ip_network("172.31.16.0/20"), i
    assert i["PrivateDnsName"] == "ip-" + i["PrivateIpAddress"].replace(".", "-") + ".ec2.internal", i
    assert i["SecurityGroups"] == [{"GroupId": sg["GroupId"], "GroupName": "default"}], i
    eni = i["NetworkInterfaces"][0]
    assert eni["NetworkInterfaceId"].startswith("eni-") and eni["Status"] == "in-use", eni
    assert eni["PrivateIpAddress"] == i["PrivateIpAddress"] and eni["SubnetId"] == sub_b, eni
    assert eni["Attachment"]["DeviceIndex"] == 0 and eni["MacAddress"].startswith("02:"), eni
addresses = [i["PrivateIpAddress"] for i in r["Instances"]]
assert addresses == ["172.31.16.4", "172.31.16.5"], addresses
assert ec2.describe_subnets(SubnetIds=[sub_b])["Subnets"][0]["AvailableIpAddressCount"] == 4089
fails("InvalidSubnetID.NotFound", ec2.run_instances, ImageId=ami, MinCount=1, MaxCount=1,
      SubnetId="subnet-0123456789abcdef0")
fails("InvalidGroup.NotFound", ec2.run_instances, ImageId=ami, MinCount=1, MaxCount=1,
      SecurityGroupIds=["sg-0123456789abcdef0"])
fails("InvalidParameterCombination", ec2.run_instances, ImageId=ami, MinCount=1, MaxCount=1,
      SubnetId=sub_b, Placement={"AvailabilityZone": "us-east-1a"})
one = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t3.micro")["Instances"][0]
assert one["SubnetId"] == by_zone["us-east-1a"]["SubnetId"] and one["PrivateIpAddress"] == "172.31.0.4", one

# The same answers from DescribeInstances; terminated instances give their address back.
ec2.get_waiter("instance_running").wait(InstanceIds=ids, WaiterConfig=FAST)
described = ec2.describe_instances(InstanceIds=ids)["Reservations"][0]["Instances"]
assert [i["PrivateIpAddress"] for i in described] == addresses, described
ec2.terminate_instances(InstanceIds=[ids[0]])
ec2.get_waiter("instance_terminated").wait(InstanceIds=[ids[0]], WaiterConfig=FAST)
gone = ec2.describe_instances(InstanceIds=[ids[0]])["Reservations"][0]["Instances"][0]
assert "PrivateIpAddress" not in gone and gone["NetworkInterfaces"] == [], gone
again = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, SubnetId=sub_b)["Instances"][0]
assert again["PrivateIpAddress"] == "172.31.16.4", again
ec2.terminate_instances(InstanceIds=[ids[1], one["InstanceId"], again["InstanceId"]])

# Launches racing in one subnet never share an address.
from concurrent.futures import ThreadPoolExecutor
sub_c = by_zone["us-east-1c"]["SubnetId"]
with ThreadPoolExecutor(max_workers=8) as pool:
    launched = list(pool.map(
        lambda _: ec2.run_instances(ImageId=ami, MinCount=2, MaxCount=2, SubnetId=sub_c)["Instances"],
        range(8)))
raced = [i["PrivateIpAddress"] for r in launched for i in r]
assert len(raced) == 16 and len(set(raced)) == 16, raced
assert all(ipaddress.ip_address(a) in ipaddress.ip_network("172.31.32.0/20") for a in raced), raced
assert ec2.describe_subnets(SubnetIds=[sub_c])["Subnets"][0]["AvailableIpAddressCount"] == 4091 - 16
ec2.terminate_instances(InstanceIds=[i["InstanceId"] for r in launched for i in r])
print("network ok")
