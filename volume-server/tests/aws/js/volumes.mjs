// The AWS SDK for JavaScript v3 against the AWS endpoint (tests/aws_endpoint.rs): create,
// describe (with a filter) and delete a volume, and the error code of a missing one; a key
// pair imported (the blob encoded by the SDK) and made, and an Elastic IP allocated and released.
// usage: node volumes.mjs ENDPOINT
import {
  EC2Client,
  CreateVolumeCommand,
  DescribeVolumesCommand,
  DeleteVolumeCommand,
  CreateKeyPairCommand,
  ImportKeyPairCommand,
  DescribeKeyPairsCommand,
  DeleteKeyPairCommand,
  AllocateAddressCommand,
  DescribeAddressesCommand,
  ReleaseAddressCommand,
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
// Key pairs: an ED25519 public key (from the one the server made) imported as bytes.
const made = await ec2.send(new CreateKeyPairCommand({ KeyName: "js-made", KeyType: "ed25519" }));
check(made.KeyMaterial?.startsWith("-----BEGIN OPENSSH PRIVATE KEY-----"), `KeyMaterial ${made.KeyMaterial}`);
const shown = await ec2.send(
  new DescribeKeyPairsCommand({ KeyNames: ["js-made"], IncludePublicKey: true }),
);
const publicKey = shown.KeyPairs[0].PublicKey;
check(shown.KeyPairs[0].CreateTime instanceof Date, "CreateTime is a date");
const imported = await ec2.send(
  new ImportKeyPairCommand({ KeyName: "js-imported", PublicKeyMaterial: new TextEncoder().encode(publicKey) }),
);
check(imported.KeyFingerprint === made.KeyFingerprint, `fingerprints ${JSON.stringify([imported, made])}`);
try {
  await ec2.send(new CreateKeyPairCommand({ KeyName: "js-made" }));
  check(false, "a duplicate key pair was made");
} catch (e) {
  check(e.name === "InvalidKeyPair.Duplicate", `error ${e.name}`);
}
await ec2.send(new DeleteKeyPairCommand({ KeyName: "js-made" }));
await ec2.send(new DeleteKeyPairCommand({ KeyPairId: imported.KeyPairId }));

// Elastic IPs.
const a = await ec2.send(new AllocateAddressCommand({ Domain: "vpc" }));
check(a.AllocationId?.startsWith("eipalloc-") && a.Domain === "vpc", `allocate ${JSON.stringify(a)}`);
const listed = await ec2.send(new DescribeAddressesCommand({ AllocationIds: [a.AllocationId] }));
check(listed.Addresses[0].PublicIp === a.PublicIp, `describe ${JSON.stringify(listed)}`);
await ec2.send(new ReleaseAddressCommand({ AllocationId: a.AllocationId }));
console.log("js sdk: ok");
