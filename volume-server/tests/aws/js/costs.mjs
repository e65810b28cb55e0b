// The AWS SDK for JavaScript v3's Cost Explorer client against the AWS endpoint
// (tests/billing.rs): GetCostAndUsage by usage type must say what boto3 saw (STATE, written by
// tests/aws/billing.py): the same usage types, closed usage the same, open usage no less; and
// a bad question is a ValidationException.
// usage: node costs.mjs ENDPOINT STATE
import { readFileSync } from "node:fs";
import { CostExplorerClient, GetCostAndUsageCommand } from "@aws-sdk/client-cost-explorer";

const ce = new CostExplorerClient({
  endpoint: process.argv[2],
  region: "us-east-1",
  credentials: { accessKeyId: "test", secretAccessKey: "test" },
  maxAttempts: 1,
});
const saved = JSON.parse(readFileSync(process.argv[3], "utf8")).usage;

function check(cond, what) {
  if (!cond) {
    console.error("FAILED:", what);
    process.exit(1);
  }
}

const end = new Date(Date.now() + 3650 * 86400e3).toISOString().slice(0, 10);
const r = await ce.send(
  new GetCostAndUsageCommand({
    TimePeriod: { Start: "2000-01-01", End: end },
    Granularity: "MONTHLY",
    Metrics: ["UsageQuantity", "UnblendedCost"],
    GroupBy: [{ Type: "DIMENSION", Key: "USAGE_TYPE" }],
  }),
);
const got = {};
for (const p of r.ResultsByTime) {
  for (const g of p.Groups) {
    const q = Number(g.Metrics.UsageQuantity.Amount);
    got[g.Keys[0]] = (got[g.Keys[0]] ?? 0) + q;
  }
}
check(
  JSON.stringify(Object.keys(got).sort()) === JSON.stringify(Object.keys(saved).sort()),
  `usage types ${Object.keys(got)} against ${Object.keys(saved)}`,
);
for (const [ut, [q]] of Object.entries(saved)) {
  check(got[ut] >= q - 1e-9, `${ut}: ${got[ut]} < ${q}`);
}
check(Math.abs(got["BoxUsage:m5.large"] - saved["BoxUsage:m5.large"][0]) < 1e-9, "instance hours");

try {
  await ce.send(
    new GetCostAndUsageCommand({
      TimePeriod: { Start: "2026-12-07", End: "2026-12-01" },
      Granularity: "DAILY",
      Metrics: ["UnblendedCost"],
    }),
  );
  check(false, "an end before the start was accepted");
} catch (e) {
  check(e.name === "ValidationException", `error ${e.name}`);
  check(e.$metadata.httpStatusCode === 400, `status ${e.$metadata.httpStatusCode}`);
}
console.log("costs.mjs ok");
