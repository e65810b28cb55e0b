"""CreateVpc, CreateSubnet, DeleteSubnet and DeleteVpc through boto3: shapes, EC2's rules and
error codes, instances launched into a made subnet, and accounts kept apart.

Usage: boto3_vpcs.py ENDPOINT
"""
import sys

from ec2util import ec2_client, fails

ENDPOINT = sys.argv[1]
ec2 = ec2_client(ENDPOINT)

default = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
assert default["CidrBlock"] == "172.31.0.0/16"

vpc = ec2.create_vpc(
    CidrBlock="10.0.0.0/16",
    TagSpecifications=[{"ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": "lab"}]}],
)["Vpc"]
vpc_id = vpc["VpcId"]
assert vpc["State"] == "pending" and vpc["CidrBlock"] == "10.0.0.0/16", vpc
assert vpc["IsDefault"] is False and vpc["Tags"] == [{"Key": "Name", "Value": "lab"}], vpc
ec2.get_waiter("vpc_available").wait(VpcIds=[vpc_id], WaiterConfig={"Delay": 1})
got = ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": ["lab"]}])["Vpcs"]
assert [v["VpcId"] for v in got] == [vpc_id], got
assert len(ec2.describe_vpcs()["Vpcs"]) == 2
# The made VPC has its own default security group.
groups = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["SecurityGroups"]
assert len(groups) == 1 and groups[0]["GroupName"] == "default", groups

# Blocks EC2 refuses.
fails("InvalidParameterValue", ec2.create_vpc, CidrBlock="10.0.0.0")
fails("InvalidVpc.Range", ec2.create_vpc, CidrBlock="10.0.0.0/8")
fails("InvalidVpc.Range", ec2.create_vpc, CidrBlock="10.0.0.0/29")

zone = ec2.describe_availability_zones()["AvailabilityZones"][1]["ZoneName"]
subnet = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.0.1.0/24", AvailabilityZone=zone)["Subnet"]
subnet_id = subnet["SubnetId"]
assert subnet["State"] == "pending" and subnet["AvailabilityZone"] == zone, subnet
assert subnet["AvailableIpAddressCount"] == 251, subnet
assert subnet["DefaultForAz"] is False and subnet["MapPublicIpOnLaunch"] is False
ec2.get_waiter("subnet_available").wait(SubnetIds=[subnet_id], WaiterConfig={"Delay": 1})
fails("InvalidSubnet.Conflict", ec2.create_subnet, VpcId=vpc_id, CidrBlock="10.0.1.128/25")
fails("InvalidSubnet.Range", ec2.create_subnet, VpcId=vpc_id, CidrBlock="10.1.0.0/24")
fails("InvalidSubnet.Range", ec2.create_subnet, VpcId=vpc_id, CidrBlock="10.0.0.0/30")
fails("InvalidVpcID.NotFound", ec2.create_subnet, VpcId="vpc-0123456789abcdef0", CidrBlock="10.0.2.0/24")
fails("InvalidParameterValue", ec2.create_subnet, VpcId=vpc_id, CidrBlock="10.0.2.0/24",
      AvailabilityZone="mars-1a")
# A subnet of the default VPC beside the default ones.
extra = ec2.create_subnet(VpcId=default["VpcId"], CidrBlock="172.31.200.0/24")["Subnet"]["SubnetId"]
fails("InvalidSubnet.Conflict", ec2.create_subnet, VpcId=default["VpcId"], CidrBlock="172.31.0.0/24")

# An instance launched into the made subnet: its address, VPC and group are that subnet's.
vol = ec2.create_volume(AvailabilityZone=zone, Size=1)["VolumeId"]
ec2.get_waiter("volume_available").wait(VolumeIds=[vol], WaiterConfig={"Delay": 1})
snap = ec2.create_snapshot(VolumeId=vol)["SnapshotId"]
ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[snap], WaiterConfig={"Delay": 1})
ami = ec2.register_image(Name="blank", RootDeviceName="/dev/xvda", BlockDeviceMappings=[
    {"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snap}}])["ImageId"]
image = [{"ImageId": ami}]
r = ec2.run_instances(ImageId=image[0]["ImageId"], MinCount=2, MaxCount=2, SubnetId=subnet_id)
ids = [i["InstanceId"] for i in r["Instances"]]
addrs = sorted(i["PrivateIpAddress"] for i in r["Instances"])
assert addrs == ["10.0.1.4", "10.0.1.5"], addrs
i = r["Instances"][0]
assert i["VpcId"] == vpc_id and i["SubnetId"] == subnet_id, i
assert i["Placement"]["AvailabilityZone"] == zone
assert i["SecurityGroups"][0]["GroupId"] == groups[0]["GroupId"], i["SecurityGroups"]
left = ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"][0]["AvailableIpAddressCount"]
assert left == 249, left
fails("InvalidParameterValue", ec2.run_instances, ImageId=image[0]["ImageId"], MinCount=1,
      MaxCount=1, SubnetId=subnet_id,
      SecurityGroupIds=[ec2.describe_security_groups(GroupNames=["default"])["SecurityGroups"][0]["GroupId"]])
fails("DependencyViolation", ec2.delete_subnet, SubnetId=subnet_id)
ec2.terminate_instances(InstanceIds=ids)
ec2.get_waiter("instance_terminated").wait(InstanceIds=ids, WaiterConfig={"Delay": 1})

# Another account sees none of it.
other = ec2_client(ENDPOINT, key="111122223333")
assert all(v["VpcId"] != vpc_id for v in other.describe_vpcs()["Vpcs"])
fails("InvalidVpcID.NotFound", other.delete_vpc, VpcId=vpc_id)
fails("InvalidSubnetID.NotFound", other.delete_subnet, SubnetId=subnet_id)

fails("DependencyViolation", ec2.delete_vpc, VpcId=vpc_id)
fails("OperationNotPermitted", ec2.delete_vpc, VpcId=default["VpcId"])
default_subnet = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"][0]
fails("OperationNotPermitted", ec2.delete_subnet, SubnetId=default_subnet["SubnetId"])
ec2.delete_subnet(SubnetId=subnet_id)
ec2.delete_subnet(SubnetId=extra)
ec2.delete_vpc(VpcId=vpc_id)
fails("InvalidVpcID.NotFound", ec2.describe_vpcs, VpcIds=[vpc_id])
fails("InvalidSubnetID.NotFound", ec2.describe_subnets, SubnetIds=[subnet_id])

# Five VPCs per region, the default one counted.
made = [ec2.create_vpc(CidrBlock=f"10.{n}.0.0/16")["Vpc"]["VpcId"] for n in range(1, 5)]
fails("VpcLimitExceeded", ec2.create_vpc, CidrBlock="10.9.0.0/16")
for v in made:
    ec2.delete_vpc(VpcId=v)
print("vpcs: ok")
