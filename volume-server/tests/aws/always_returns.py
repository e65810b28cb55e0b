"""What EC2 returns on every call, by output shape: the members each element of that shape carries
in every answer AWS gives (for the states and resources the model check drives), with where that
is shown. tests/aws/model_check.py asserts every answer of the server has them.

Members that AWS returns only in some cases (an encrypted volume's KmsKeyId, a copy's
SourceVolumeId, tags, a T type's missing ValidCores, a terminated instance's lost address) are
not listed. The sources are the "Examples" sections of the EC2 API Reference pages
(https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_<Operation>.html) and of the aws CLI
reference (https://docs.aws.amazon.com/cli/latest/reference/ec2/<command>.html).
"""

API = "https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_{}.html#API_{}_Examples"
CLI = "https://docs.aws.amazon.com/cli/latest/reference/ec2/{}.html#examples"

# shape name -> (members, source)
ALWAYS = {
    "Volume": (
        ["VolumeId", "Size", "SnapshotId", "AvailabilityZone", "State", "CreateTime", "Attachments",
         "VolumeType", "Iops", "Encrypted", "MultiAttachEnabled"],
        API.format("DescribeVolumes", "DescribeVolumes")),
    "VolumeAttachment": (
        ["VolumeId", "InstanceId", "Device", "State", "AttachTime", "DeleteOnTermination"],
        API.format("DescribeVolumes", "DescribeVolumes")),
    "Snapshot": (
        ["SnapshotId", "VolumeId", "State", "StartTime", "Progress", "OwnerId", "Description",
         "VolumeSize", "Encrypted", "StorageTier"],
        CLI.format("describe-snapshots")),
    "Image": (
        ["ImageId", "ImageLocation", "State", "OwnerId", "CreationDate", "Public", "Architecture",
         "ImageType", "Name", "RootDeviceType", "RootDeviceName", "BlockDeviceMappings",
         "VirtualizationType", "Hypervisor", "EnaSupport", "SriovNetSupport", "PlatformDetails",
         "UsageOperation"],
        CLI.format("describe-images")),
    "Reservation": (
        ["ReservationId", "OwnerId", "Groups", "Instances"],
        API.format("DescribeInstances", "DescribeInstances")),
    "Instance": (
        ["InstanceId", "ImageId", "State", "PrivateDnsName", "PublicDnsName", "StateTransitionReason",
         "AmiLaunchIndex", "ProductCodes", "InstanceType", "LaunchTime", "Placement", "Monitoring",
         "SubnetId", "VpcId", "PrivateIpAddress", "Architecture", "BlockDeviceMappings",
         "EbsOptimized", "EnaSupport", "Hypervisor", "NetworkInterfaces", "RootDeviceName",
         "RootDeviceType", "SecurityGroups", "SourceDestCheck", "VirtualizationType", "CpuOptions",
         "CapacityReservationSpecification", "HibernationOptions", "MetadataOptions",
         "EnclaveOptions", "PlatformDetails", "UsageOperation", "UsageOperationUpdateTime",
         "PrivateDnsNameOptions", "MaintenanceOptions", "CurrentInstanceBootMode"],
        CLI.format("describe-instances")),
    "Placement": (
        ["AvailabilityZone", "GroupName", "Tenancy"],
        CLI.format("describe-instances")),
    "InstanceNetworkInterface": (
        ["NetworkInterfaceId", "SubnetId", "VpcId", "Description", "OwnerId", "Status", "MacAddress",
         "PrivateIpAddress", "PrivateDnsName", "SourceDestCheck", "Groups", "Attachment",
         "PrivateIpAddresses", "Ipv6Addresses", "InterfaceType"],
        CLI.format("describe-instances")),
    "CpuOptions": (["CoreCount", "ThreadsPerCore"], CLI.format("describe-instances")),
    "InstanceMetadataOptionsResponse": (
        ["State", "HttpTokens", "HttpPutResponseHopLimit", "HttpEndpoint", "HttpProtocolIpv6",
         "InstanceMetadataTags"],
        CLI.format("describe-instances")),
    "InstanceStatus": (
        ["InstanceId", "AvailabilityZone", "InstanceState", "InstanceStatus", "SystemStatus"],
        CLI.format("describe-instance-status")),
    "VolumeStatusItem": (
        ["VolumeId", "AvailabilityZone", "VolumeStatus", "Actions", "Events"],
        CLI.format("describe-volume-status")),
    # Both checks are listed on every volume; io-performance is not-applicable off io1/io2/gp3.
    "VolumeStatusInfo": (["Status", "Details"], CLI.format("describe-volume-status")),
    "VolumeModification": (
        ["VolumeId", "ModificationState", "TargetSize", "TargetIops", "TargetVolumeType",
         "TargetMultiAttachEnabled", "OriginalSize", "OriginalIops", "OriginalVolumeType",
         "OriginalMultiAttachEnabled", "Progress", "StartTime"],
        CLI.format("describe-volumes-modifications")),
    "AvailabilityZone": (
        ["State", "OptInStatus", "RegionName", "ZoneName", "ZoneId", "GroupName",
         "NetworkBorderGroup", "ZoneType"],
        CLI.format("describe-availability-zones")),
    "Region": (["Endpoint", "RegionName", "OptInStatus"], CLI.format("describe-regions")),
    "Vpc": (
        ["VpcId", "OwnerId", "State", "CidrBlock", "CidrBlockAssociationSet", "DhcpOptionsId",
         "InstanceTenancy", "IsDefault"],
        CLI.format("describe-vpcs")),
    "Subnet": (
        ["SubnetId", "SubnetArn", "State", "OwnerId", "VpcId", "CidrBlock",
         "Ipv6CidrBlockAssociationSet", "AvailableIpAddressCount", "AvailabilityZone",
         "AvailabilityZoneId", "DefaultForAz", "MapPublicIpOnLaunch", "MapCustomerOwnedIpOnLaunch",
         "AssignIpv6AddressOnCreation", "EnableDns64", "Ipv6Native", "PrivateDnsNameOptionsOnLaunch"],
        CLI.format("describe-subnets")),
    "SecurityGroup": (
        ["OwnerId", "GroupId", "GroupName", "Description", "VpcId", "IpPermissions",
         "IpPermissionsEgress"],
        CLI.format("describe-security-groups")),
    "InstanceTypeInfo": (
        ["InstanceType", "CurrentGeneration", "FreeTierEligible", "SupportedUsageClasses",
         "SupportedRootDeviceTypes", "SupportedVirtualizationTypes", "BareMetal", "ProcessorInfo",
         "VCpuInfo", "MemoryInfo", "InstanceStorageSupported", "EbsInfo", "NetworkInfo",
         "PlacementGroupInfo", "BurstablePerformanceSupported", "DedicatedHostsSupported",
         "SupportedBootModes"],
        CLI.format("describe-instance-types")),
    "ProcessorInfo": (
        ["SupportedArchitectures", "SustainedClockSpeedInGhz", "Manufacturer"],
        CLI.format("describe-instance-types")),
    "VCpuInfo": (
        ["DefaultVCpus", "DefaultCores", "DefaultThreadsPerCore"],
        CLI.format("describe-instance-types")),
    "EbsInfo": (
        ["EbsOptimizedSupport", "EncryptionSupport", "EbsOptimizedInfo", "NvmeSupport"],
        CLI.format("describe-instance-types")),
    "NetworkInfo": (
        ["NetworkPerformance", "MaximumNetworkInterfaces", "MaximumNetworkCards",
         "DefaultNetworkCardIndex", "NetworkCards", "Ipv4AddressesPerInterface",
         "Ipv6AddressesPerInterface", "Ipv6Supported", "EnaSupport", "EfaSupported",
         "EncryptionInTransitSupported", "EnaSrdSupported"],
        CLI.format("describe-instance-types")),
    "DescribeFastSnapshotRestoreSuccessItem": (
        ["SnapshotId", "AvailabilityZone", "State", "StateTransitionReason", "OwnerId",
         "EnablingTime"],
        CLI.format("describe-fast-snapshot-restores")),
}
