"""Billing through boto3 (tests/billing.rs): usage metered as resources change, priced from the
built-in price list, and read back with Cost Explorer's GetCostAndUsage. The server runs its
billing clock 3600 times faster than real time (a real second bills an hour); each expected
figure is worked out here from the price list and the real time measured around the calls
that start and end the usage, and the answer must fall within those bounds to the cent and be
quantity times list price exactly.

usage: billing.py ENDPOINT PHASE   (PHASE: run, or after-restart)
"""
import json
import os
import sys
import time
from datetime import datetime, timedelta, timezone

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from ec2util import check_json_replies, ec2_client

endpoint, phase = sys.argv[1], sys.argv[2]
SCALE = 3600.0
AZ = "us-east-1a"
FAST = {"Delay": 1, "MaxAttempts": 120}
PRICES = json.load(open(os.path.join(os.path.dirname(__file__), "../../../billing/data/prices.json")))
US = PRICES["regions"]["us-east-1"]
STATE = os.path.join(os.environ.get("BILLING_STATE_DIR", "/tmp"), "billing-state.json")


def ce_client(key="test"):
    return boto3.session.Session(
        aws_access_key_id=key, aws_secret_access_key="test", region_name="us-east-1"
    ).client("ce", endpoint_url=endpoint, config=Config(retries={"max_attempts": 1}))


ec2 = ec2_client(endpoint)
ce = ce_client()
checked = check_json_replies(ce, "ce")


def billing_hours(real_seconds):
    return real_seconds * SCALE / 3600.0


def window():
    """A daily window that holds all usage of this run (the billing clock runs ahead)."""
    start = datetime(2000, 1, 1, tzinfo=timezone.utc)
    end = datetime.now(timezone.utc) + timedelta(days=3650)
    return {"Start": start.strftime("%Y-%m-%d"), "End": end.strftime("%Y-%m-%d")}


def by_usage_type(key="test", **extra):
    """UsageQuantity and UnblendedCost summed per usage type over all time."""
    r = ce_client(key).get_cost_and_usage(
        TimePeriod=window(), Granularity="MONTHLY",
        Metrics=["UnblendedCost", "UsageQuantity"],
        GroupBy=[{"Type": "DIMENSION", "Key": "USAGE_TYPE"}], **extra)
    assert r["GroupDefinitions"] == [{"Type": "DIMENSION", "Key": "USAGE_TYPE"}], r
    out = {}
    months = {}
    for period in r["ResultsByTime"]:
        assert period["Total"] == {}, period
        for g in period["Groups"]:
            (ut,) = g["Keys"]
            q = float(g["Metrics"]["UsageQuantity"]["Amount"])
            c = float(g["Metrics"]["UnblendedCost"]["Amount"])
            assert g["Metrics"]["UnblendedCost"]["Unit"] == "USD", g
            prev = out.get(ut, (0.0, 0.0, g["Metrics"]["UsageQuantity"]["Unit"]))
            out[ut] = (prev[0] + q, prev[1] + c, prev[2])
            months.setdefault(ut, []).append((period["TimePeriod"]["Start"], q))
    return out, months


def month_hours(start):
    """Hours in the month starting at `start` (YYYY-MM-DD)."""
    d = datetime.strptime(start, "%Y-%m-%d")
    nxt = (d.replace(day=28) + timedelta(days=4)).replace(day=1)
    return (nxt - d).days * 24


def close(got, want, tol, what):
    assert abs(got - want) <= tol, f"{what}: got {got}, want {want} (±{tol})"


if phase == "run":
    # A gp3 volume at 4,000 IOPS and 250 MiB/s for about one billing hour.
    t0 = time.monotonic()
    vol = ec2.create_volume(AvailabilityZone=AZ, Size=100, VolumeType="gp3", Iops=4000,
                            Throughput=250, TagSpecifications=[{
                                "ResourceType": "volume", "Tags": [{"Key": "team", "Value": "storage"}]}])["VolumeId"]
    t1 = time.monotonic()
    time.sleep(1.0)
    t2 = time.monotonic()
    ec2.delete_volume(VolumeId=vol)
    t3 = time.monotonic()
    lo, hi = billing_hours(t2 - t1), billing_hours(t3 - t0)

    # An io2 volume across its three IOPS tiers (80,000 IOPS: 32,000 + 32,000 + 16,000).
    io2 = ec2.create_volume(AvailabilityZone=AZ, Size=100, VolumeType="io2", Iops=80000)["VolumeId"]
    time.sleep(0.5)
    ec2.delete_volume(VolumeId=io2)

    usage, months = by_usage_type()
    # GB-months: size x hours / hours in the month the hours fell in (the clock may have
    # crossed a month; each period's share is checked against its own month below).
    for ut, rate in [("EBS:VolumeUsage.gp3", 100), ("EBS:VolumeP-IOPS.gp3", 1000),
                     ("EBS:VolumeP-Throughput.gp3", 125)]:
        q, c, unit = usage[ut]
        hours = sum(q_ / rate * month_hours(s) for s, q_ in months[ut])
        assert lo <= hours + 1e-6 and hours <= hi + 1e-6, (ut, lo, hours, hi)
    gp3 = US["ebs"]["gp3"]
    for ut, price in [("EBS:VolumeUsage.gp3", gp3["gb_month"]), ("EBS:VolumeP-IOPS.gp3", gp3["iops_month"]),
                      ("EBS:VolumeP-Throughput.gp3", gp3["throughput_mibps_month"])]:
        q, c, unit = usage[ut]
        close(c, q * price, 1e-8, ut)
    assert usage["EBS:VolumeUsage.gp3"][2] == "GB-Mo", usage
    assert usage["EBS:VolumeP-IOPS.gp3"][2] == "IOPS-Mo", usage
    # To the cent: one hour of 100 GiB, 1,000 extra IOPS and 125 extra MiB/s.
    hour_cost = (100 * gp3["gb_month"] + 1000 * gp3["iops_month"] + 125 * gp3["throughput_mibps_month"]) \
        / month_hours(months["EBS:VolumeUsage.gp3"][0][0])
    total_gp3 = sum(usage[ut][1] for ut in ["EBS:VolumeUsage.gp3", "EBS:VolumeP-IOPS.gp3", "EBS:VolumeP-Throughput.gp3"])
    close(total_gp3, hour_cost * (lo + hi) / 2, hour_cost * (hi - lo) / 2 + 0.01, "the gp3 volume's hour")

    tiers = [usage[u][0] for u in ["EBS:VolumeP-IOPS.io2", "EBS:VolumeP-IOPS.io2.tier2", "EBS:VolumeP-IOPS.io2.tier3"]]
    close(tiers[0] / tiers[2], 2.0, 1e-6, "io2 tier 1 against tier 3")
    close(tiers[1] / tiers[2], 2.0, 1e-6, "io2 tier 2 against tier 3")
    for (a, b), price in zip([("EBS:VolumeP-IOPS.io2", 0), ("EBS:VolumeP-IOPS.io2.tier2", 1), ("EBS:VolumeP-IOPS.io2.tier3", 2)],
                             [t[1] for t in US["ebs"]["io2"]["iops_month_tiers"]]):
        close(usage[a][1], usage[a][0] * price, 1e-8, a)

    # A snapshot: billed for the blocks it stored.
    src = ec2.create_volume(AvailabilityZone=AZ, Size=1)["VolumeId"]
    snap = ec2.create_snapshot(VolumeId=src)["SnapshotId"]
    ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[snap], WaiterConfig=FAST)
    time.sleep(0.5)
    ec2.delete_snapshot(SnapshotId=snap)
    ec2.delete_volume(VolumeId=src)

    # An On-Demand instance: billed per second while running, at least 60 s per start; stopped,
    # it costs nothing (its volumes go on).
    root = ec2.create_volume(AvailabilityZone=AZ, Size=1)["VolumeId"]
    rsnap = ec2.create_snapshot(VolumeId=root)["SnapshotId"]
    ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[rsnap], WaiterConfig=FAST)
    image = ec2.register_image(Name="billed", RootDeviceName="/dev/xvda",
                               BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": rsnap}}])["ImageId"]
    a = time.monotonic()
    iid = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="m5.large",
                            UserData="#!/bin/sh\nexec sleep 600\n")["Instances"][0]["InstanceId"]
    ec2.get_waiter("instance_running").wait(InstanceIds=[iid], WaiterConfig=FAST)
    time.sleep(0.5)
    ec2.stop_instances(InstanceIds=[iid])
    ec2.get_waiter("instance_stopped").wait(InstanceIds=[iid], WaiterConfig=FAST)
    b = time.monotonic()
    before, _ = by_usage_type()
    time.sleep(0.5)
    after, _ = by_usage_type()
    q, c, unit = after["BoxUsage:m5.large"]
    assert unit == "Hrs", after
    assert before["BoxUsage:m5.large"] == after["BoxUsage:m5.large"], "a stopped instance is not billed"
    assert 0.5 <= q <= billing_hours(b - a) + 1e-6, (q, billing_hours(b - a))
    close(c, q * US["instances"]["m5.large"], 1e-8, "m5.large hours")
    root_vol = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0][
        "BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    only_root = {"Dimensions": {"Key": "RESOURCE_ID", "Values": [root_vol]}}
    r1, _ = by_usage_type(Filter=only_root)
    time.sleep(0.3)
    r2, _ = by_usage_type(Filter=only_root)
    (ut,) = r2.keys()
    assert ut.startswith("EBS:VolumeUsage"), r2
    assert r2[ut][0] > r1[ut][0], "its root volume is billed while it is stopped"
    # A snapshot of a volume nothing was written to stores no block: it costs nothing.
    assert after["EBS:SnapshotUsage"][:2] == (0.0, 0.0), after

    # Grouped by service and tag; filtered; hourly periods.
    r = ce.get_cost_and_usage(TimePeriod=window(), Granularity="MONTHLY", Metrics=["UnblendedCost"],
                              GroupBy=[{"Type": "DIMENSION", "Key": "SERVICE"}, {"Type": "TAG", "Key": "team"}])
    keys = {tuple(g["Keys"]) for p in r["ResultsByTime"] for g in p["Groups"]}
    assert ("EC2 - Other", "team$storage") in keys, keys
    assert ("Amazon Elastic Compute Cloud - Compute", "team$") in keys, keys
    r = ce.get_cost_and_usage(TimePeriod=window(), Granularity="MONTHLY", Metrics=["UnblendedCost"],
                              Filter={"Dimensions": {"Key": "INSTANCE_TYPE", "Values": ["m5.large"]}})
    total = sum(float(p["Total"]["UnblendedCost"]["Amount"]) for p in r["ResultsByTime"])
    close(total, c, 1e-8, "filtered to m5.large")
    now = datetime.now(timezone.utc)
    r = ce.get_cost_and_usage(TimePeriod={"Start": now.strftime("%Y-%m-%dT00:00:00Z"),
                                          "End": (now + timedelta(days=1)).strftime("%Y-%m-%dT00:00:00Z")},
                              Granularity="HOURLY", Metrics=["UsageQuantity"])
    assert len(r["ResultsByTime"]) == 24, len(r["ResultsByTime"])
    assert r["ResultsByTime"][0]["TimePeriod"]["Start"].endswith("T00:00:00Z"), r["ResultsByTime"][0]

    # Bad questions get Cost Explorer's ValidationException.
    for kwargs in [dict(TimePeriod={"Start": "2026-12-07", "End": "2026-12-01"}, Granularity="DAILY", Metrics=["UnblendedCost"]),
                   dict(TimePeriod={"Start": "2026-12-01", "End": "2026-12-07"}, Granularity="DAILY", Metrics=["Bogus"]),
                   dict(TimePeriod={"Start": "2026-12-01", "End": "2026-12-07"}, Granularity="HOURLY", Metrics=["UnblendedCost"]),
                   dict(TimePeriod={"Start": "2026-12-01T00:00:00Z", "End": "2026-12-16T00:00:00Z"},
                        Granularity="HOURLY", Metrics=["UnblendedCost"]),
                   dict(TimePeriod={"Start": "2026-13-01", "End": "2026-12-07"}, Granularity="DAILY", Metrics=["UnblendedCost"]),
                   dict(TimePeriod={"Start": "2026-12-01", "End": "2026-12-07"}, Granularity="DAILY", Metrics=["UnblendedCost"],
                        GroupBy=[{"Type": "DIMENSION", "Key": "NOPE"}])]:
        try:
            ce.get_cost_and_usage(**kwargs)
        except ClientError as e:
            assert e.response["Error"]["Code"] == "ValidationException", e.response
            assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 400, e.response
        else:
            raise AssertionError(f"accepted {kwargs}")

    # Another account sees none of it.
    other, _ = by_usage_type(key="222233334444")
    assert other == {}, other

    assert "GetCostAndUsage" in checked, checked
    json.dump({"usage": {k: list(v) for k, v in after.items()}, "instance": iid}, open(STATE, "w"))
    print("billing run ok")
elif phase == "after-restart":
    saved = json.load(open(STATE))
    now, _ = by_usage_type()
    for ut, (q, c, unit) in saved["usage"].items():
        assert ut in now, (ut, now)
        # Closed usage is as it was; open usage (the stopped instance's root volume) only grew.
        assert now[ut][0] >= q - 1e-9, (ut, q, now[ut])
    assert now["BoxUsage:m5.large"][0] == saved["usage"]["BoxUsage:m5.large"][0], now
    print("billing after restart ok")
else:
    raise SystemExit(f"unknown phase {phase}")
