// The AWS SDK for JavaScript v3 against the AWS endpoint (tests/aws_endpoint.rs): create,
// describe (with a filter) and delete a volume, and the error code of a missing one.
// usage: node volumes.mjs ENDPOINT
import {
  EC2Client,
  CreateVolumeCommand,
  DescribeVolumesCommand,
  DeleteVolumeCommand,
} from "@aws-sdk/client-ec2";

const ec2 = new EC2Client({
  endpoint: process.argv[2],
  region: "us-east-1",
  credentials: { accessKeyId: "test", secretAccessKey: "test" },
  maxAttempts: 1,
});

function check(cond, what) {
  if (!cond) {
    console.error("FAILED:", what);
    process.exit(1);
  }
}

const v = await ec2.send(
  new CreateVolumeCommand({
    AvailabilityZone: "us-east-1c",
    Size: 3,
    VolumeType: "gp3",
    TagSpecifications: [{ ResourceType: "volume", Tags: [{ Key: "sdk", Value: "js" }] }],
  }),
);
check(v.VolumeId?.startsWith("vol-"), `VolumeId ${JSON.stringify(v)}`);
check(v.Size === 3 && v.VolumeType === "gp3", `shape ${JSON.stringify(v)}`);
check(v.CreateTime instanceof Date, "CreateTime is a date");

const d = await ec2.send(
  new DescribeVolumesCommand({ Filters: [{ Name: "tag:sdk", Values: ["js"] }] }),
);
check(d.Volumes.length === 1 && d.Volumes[0].VolumeId === v.VolumeId, `describe ${JSON.stringify(d)}`);
check(d.Volumes[0].Tags[0].Value === "js", "tags");

await ec2.send(new DeleteVolumeCommand({ VolumeId: v.VolumeId }));
try {
  await ec2.send(new DescribeVolumesCommand({ VolumeIds: [v.VolumeId] }));
  check(false, "the deleted volume is still described");
} catch (e) {
  check(e.name === "InvalidVolume.NotFound" || e.Code === "InvalidVolume.NotFound", `error ${e.name}`);
  check(e.$metadata?.httpStatusCode === 400, `status ${e.$metadata?.httpStatusCode}`);
}
console.log("js sdk: ok");
