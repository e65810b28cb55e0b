"""A registered host through the EC2 instance calls (tests/aws_endpoint.rs): it is a running
instance in DescribeInstances and DescribeInstanceStatus, with an address in its zone's default
subnet and its attached volumes; tags work on it; Stop/Start/Reboot answer UnsupportedOperation
(its workload lives outside); TerminateInstances deregisters it, detaching its volumes.

usage: boto3_hosts.py ENDPOINT INSTANCE_ID
"""
import sys

from ec2util import ec2_client, fails

endpoint, host = sys.argv[1], sys.argv[2]
FAST = {"Delay": 0.2, "MaxAttempts": 100}
ec2 = ec2_client(endpoint)


vol = ec2.create_volume(AvailabilityZone="us-east-1a", Size=1)["VolumeId"]
ec2.get_waiter("volume_available").wait(VolumeIds=[vol], WaiterConfig=FAST)
ec2.attach_volume(VolumeId=vol, InstanceId=host, Device="/dev/sdf")

listed = [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]
assert [i["InstanceId"] for i in listed] == [host], listed
i = ec2.describe_instances(InstanceIds=[host])["Reservations"][0]["Instances"][0]
assert i["State"]["Name"] == "running", i
assert i["Placement"]["AvailabilityZone"] == "us-east-1a", i
assert i["PrivateIpAddress"] == "172.31.0.4", i
assert [m["Ebs"]["VolumeId"] for m in i["BlockDeviceMappings"]] == [vol], i
ec2.get_waiter("instance_running").wait(InstanceIds=[host], WaiterConfig=FAST)
status = ec2.describe_instance_status(InstanceIds=[host])["InstanceStatuses"][0]
assert status["InstanceState"]["Name"] == "running" and status["InstanceStatus"]["Status"] == "ok", status
assert [s["InstanceId"] for s in ec2.describe_instance_status()["InstanceStatuses"]] == [host]
running = ec2.describe_instances(Filters=[{"Name": "instance-state-name", "Values": ["running"]}])
assert [i["InstanceId"] for r in running["Reservations"] for i in r["Instances"]] == [host], running
ec2.create_tags(Resources=[host], Tags=[{"Key": "role", "Value": "db"}])
tagged = ec2.describe_instances(Filters=[{"Name": "tag:role", "Values": ["db"]}])["Reservations"]
assert tagged[0]["Instances"][0]["InstanceId"] == host, tagged

for call in (ec2.stop_instances, ec2.start_instances, ec2.reboot_instances):
    fails("UnsupportedOperation", call, InstanceIds=[host])
fails("UnsupportedOperation", ec2.get_console_output, InstanceId=host)

gone = ec2.terminate_instances(InstanceIds=[host])["TerminatingInstances"][0]
assert gone["PreviousState"]["Name"] == "running" and gone["CurrentState"]["Name"] == "terminated", gone
fails("InvalidInstanceID.NotFound", ec2.describe_instances, InstanceIds=[host])
ec2.get_waiter("volume_available").wait(VolumeIds=[vol], WaiterConfig=FAST)
ec2.delete_volume(VolumeId=vol)
print("hosts ok")
