"""Spot price history, Reserved Instances and Savings Plans through boto3 (tests/billing.rs):
Spot prices per zone and hour; then two m5.large
running, a regional Reserved Instance bought for one and a Compute Savings Plan of $0.03 an
hour for part of the other, on a billing clock 3600 times real time; Cost Explorer must then
show the usage covered in AWS's order (the reservation, then the plan, then On-Demand) and
each fee as the offering priced it, worked out here from the price list.

usage: billing_commitments.py ENDPOINT
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

endpoint = sys.argv[1]
AZ = "us-east-1a"
FAST = {"Delay": 1, "MaxAttempts": 120}
KEY = "333344445555"
PRICES = json.load(open(os.path.join(os.path.dirname(__file__), "../../../billing/data/prices.json")))
OD = PRICES["regions"]["us-east-1"]["instances"]["m5.large"]
YEAR = 31536000


def client(service):
    return boto3.session.Session(aws_access_key_id=KEY, aws_secret_access_key="x", region_name="us-east-1").client(
        service, endpoint_url=endpoint, config=Config(retries={"max_attempts": 1}))


ec2 = ec2_client(endpoint, key=KEY)
ce, sp = client("ce"), client("savingsplans")
checked = check_json_replies(sp, "savingsplans")


def fails(code, call, **kw):
    try:
        call(**kw)
    except ClientError as e:
        assert e.response["Error"]["Code"] == code, (code, e.response)
        return e.response
    raise AssertionError(f"{call.__name__} {kw} succeeded; expected {code}")


def close(got, want, tol, what):
    assert abs(got - want) <= tol, f"{what}: got {got}, want {want} (±{tol})"


# The offerings: regional and zonal, both classes, three payments, two terms.
offers = ec2.describe_reserved_instances_offerings(
    InstanceType="m5.large", OfferingClass="standard", OfferingType="No Upfront",
    MinDuration=YEAR, MaxDuration=YEAR)["ReservedInstancesOfferings"]
assert sorted(o["Scope"] for o in offers) == ["Availability Zone"] * 3 + ["Region"], offers
regional = next(o for o in offers if o["Scope"] == "Region")
ri_hourly = regional["RecurringCharges"][0]["Amount"]
close(ri_hourly, OD * (1 - PRICES["commitments"]["reserved"]["standard"]["1yr"]["No Upfront"]), 1e-9, "RI rate")
assert regional["FixedPrice"] == 0.0 and regional["ProductDescription"] == "Linux/UNIX", regional
every = ec2.get_paginator("describe_reserved_instances_offerings").paginate(
    InstanceType="m5.large").build_full_result()["ReservedInstancesOfferings"]
assert len(every) == 2 * 3 * 2 * 4, len(every)  # classes x payments x terms x (region + 3 zones)
allup = next(o for o in every if o["OfferingType"] == "All Upfront" and o["Duration"] == YEAR
             and o["OfferingClass"] == "standard" and o["Scope"] == "Region")
assert allup["RecurringCharges"] == [] and allup["FixedPrice"] > 0, allup
fails("InvalidReservedInstancesOfferingId", ec2.purchase_reserved_instances_offering,
      ReservedInstancesOfferingId="00000000-0000-0000-0000-000000000000", InstanceCount=1)

# Spot prices: one per zone now, below On-Demand; an hourly history, newest first, the same on
# every call.
now_prices = ec2.describe_spot_price_history(InstanceTypes=["m5.large"], ProductDescriptions=["Linux/UNIX"])["SpotPriceHistory"]
assert sorted(p["AvailabilityZone"] for p in now_prices) == ["us-east-1a", "us-east-1b", "us-east-1c"], now_prices
assert all(0.2 * OD < float(p["SpotPrice"]) < 0.5 * OD for p in now_prices), now_prices
assert all(p["Timestamp"].minute == 0 and p["Timestamp"].second == 0 for p in now_prices), now_prices
since = datetime.now(timezone.utc) - timedelta(days=1)
history = ec2.get_paginator("describe_spot_price_history").paginate(
    InstanceTypes=["m5.large"], AvailabilityZone="us-east-1a", StartTime=since,
    PaginationConfig={"PageSize": 5}).build_full_result()["SpotPriceHistory"]
assert len(history) >= 24, len(history)
stamps = [p["Timestamp"] for p in history]
assert stamps == sorted(stamps, reverse=True) and len(set(stamps)) == len(stamps), stamps
assert len({p["SpotPrice"] for p in history}) > 5, "the price moves"
again = ec2.describe_spot_price_history(InstanceTypes=["m5.large"], AvailabilityZone="us-east-1a",
                                        StartTime=since, EndTime=history[0]["Timestamp"])["SpotPriceHistory"]
assert [p["SpotPrice"] for p in again] == [p["SpotPrice"] for p in history][:len(again)], "deterministic"
fails("InvalidParameterValue", ec2.describe_spot_price_history, InstanceTypes=["m9.huge"])
assert ec2.describe_spot_price_history(InstanceTypes=["m5.large"], ProductDescriptions=["Windows"])["SpotPriceHistory"] == []

# Two m5.large, running.
root = ec2.create_volume(AvailabilityZone=AZ, Size=1)["VolumeId"]
snap = ec2.create_snapshot(VolumeId=root)["SnapshotId"]
ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[snap], WaiterConfig=FAST)
ec2.delete_volume(VolumeId=root)
image = ec2.register_image(Name="reserved", RootDeviceName="/dev/xvda",
                           BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snap}}])["ImageId"]
t_launch = time.monotonic()
ids = [i["InstanceId"] for i in ec2.run_instances(
    ImageId=image, MinCount=2, MaxCount=2, InstanceType="m5.large",
    Placement={"AvailabilityZone": AZ}, UserData="#!/bin/sh\nexec sleep 600\n")["Instances"]]
ec2.get_waiter("instance_running").wait(InstanceIds=ids, WaiterConfig=FAST)

# One regional Reserved Instance, and a Compute Savings Plan of $0.03 an hour.
t_ri = time.monotonic()
ri = ec2.purchase_reserved_instances_offering(ReservedInstancesOfferingId=regional["ReservedInstancesOfferingId"],
                                              InstanceCount=1)["ReservedInstancesId"]
plans = sp.describe_savings_plans_offerings(planTypes=["Compute"], paymentOptions=["No Upfront"],
                                            durations=[YEAR])["searchResults"]
assert len(plans) == 1, plans
spid = sp.create_savings_plan(savingsPlanOfferingId=plans[0]["offeringId"], commitment="0.03",
                              clientToken="once")["savingsPlanId"]
assert sp.create_savings_plan(savingsPlanOfferingId=plans[0]["offeringId"], commitment="0.03",
                              clientToken="once")["savingsPlanId"] == spid, "a retry buys nothing more"
fails("ResourceNotFoundException", sp.create_savings_plan, savingsPlanOfferingId="nope", commitment="1")
fails("ValidationException", sp.create_savings_plan, savingsPlanOfferingId=plans[0]["offeringId"], commitment="lots")
t0 = time.monotonic()
time.sleep(1.5)
ec2.stop_instances(InstanceIds=ids)
ec2.get_waiter("instance_stopped").wait(InstanceIds=ids, WaiterConfig=FAST)
t_stopped = time.monotonic()

mine = ec2.describe_reserved_instances(ReservedInstancesIds=[ri])["ReservedInstances"]
assert len(mine) == 1 and mine[0]["State"] == "active" and mine[0]["InstanceCount"] == 1, mine
assert mine[0]["Scope"] == "Region" and mine[0]["End"] - mine[0]["Start"] == timedelta(seconds=YEAR), mine
fails("InvalidReservedInstancesId", ec2.describe_reserved_instances, ReservedInstancesIds=["nope"])
assert ec2_client(endpoint).describe_reserved_instances()["ReservedInstances"] == [], "another account's"
bought = sp.describe_savings_plans(savingsPlanIds=[spid])["savingsPlans"]
assert len(bought) == 1 and bought[0]["commitment"] == "0.03" and bought[0]["state"] == "active", bought
assert bought[0]["savingsPlanType"] == "Compute" and bought[0]["termDurationInSeconds"] == YEAR, bought
assert sp.describe_savings_plans(filters=[{"name": "savings-plan-type", "values": ["EC2Instance"]}])["savingsPlans"] == []
assert len(sp.describe_savings_plans(filters=[{"name": "commitment", "values": ["0.03"]}])["savingsPlans"]) == 1
fails("ValidationException", sp.describe_savings_plans, filters=[{"name": "start", "values": ["x"]}])
assert client("savingsplans").describe_savings_plans()["savingsPlans"] != [] and \
    boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="x", region_name="us-east-1").client(
        "savingsplans", endpoint_url=endpoint).describe_savings_plans()["savingsPlans"] == [], "another account's"
assert {"DescribeSavingsPlansOfferings", "CreateSavingsPlan", "DescribeSavingsPlans"} <= checked, checked

# The bill, by purchase type and usage type.
end = (datetime.now(timezone.utc) + timedelta(days=3650)).strftime("%Y-%m-%d")
r = ce.get_cost_and_usage(TimePeriod={"Start": "2000-01-01", "End": end}, Granularity="MONTHLY",
                          Metrics=["UnblendedCost", "AmortizedCost", "UsageQuantity"],
                          GroupBy=[{"Type": "DIMENSION", "Key": "PURCHASE_TYPE"},
                                   {"Type": "DIMENSION", "Key": "USAGE_TYPE"}])
lines = {}
for p in r["ResultsByTime"]:
    for g in p["Groups"]:
        k = tuple(g["Keys"])
        m = {n: float(v["Amount"]) for n, v in g["Metrics"].items()}
        prev = lines.get(k, {n: 0.0 for n in m})
        lines[k] = {n: prev[n] + m[n] for n in m}
box = "BoxUsage:m5.large"
ri_used = lines[("Standard Reserved Instances", box)]
sp_used = lines[("Savings Plans", box)]
od_used = lines[("On Demand Instances", box)]
ri_fee = lines[("Standard Reserved Instances", "HeavyUsage:m5.large")]
sp_fee = lines[("Savings Plans", "ComputeSP:1yrNoUpfront")]
# Usage a commitment covers costs nothing itself; the rest is On-Demand at list price.
assert ri_used["UnblendedCost"] == 0 and sp_used["UnblendedCost"] == 0, (ri_used, sp_used)
close(od_used["UnblendedCost"], od_used["UsageQuantity"] * OD, 1e-8, "On-Demand hours")
# The fees: every hour of the term so far, at the offering's rate, used or not.
close(ri_fee["UnblendedCost"], ri_fee["UsageQuantity"] * ri_hourly, 1e-8, "the reservation's fee")
close(sp_fee["UnblendedCost"], sp_fee["UsageQuantity"] * 0.03, 1e-8, "the plan's commitment")
assert ri_used["UsageQuantity"] <= ri_fee["UsageQuantity"] + 1e-9, (ri_used, ri_fee)
# While both ran, the reservation covered one of them whole.
ran = time.monotonic() - t_ri  # an upper bound on the billing hours both ran after the purchase
assert 1.5 - 1e-6 <= ri_used["UsageQuantity"] <= ran + 1e-6, (ri_used, ran)
# The plan bought 0.03 / (its rate) hours of each hour the other ran.
d = PRICES["commitments"]["savings_plans"]["Compute"]["1yr"]["No Upfront"]
close(sp_used["AmortizedCost"], sp_used["UsageQuantity"] * OD * (1 - d), 1e-8, "the plan's rate")
# Hour by hour, AWS's order: On-Demand usage only where the reservation and then the plan
# were used up, and the plan only where the reservation was.
start = datetime.now(timezone.utc) - timedelta(days=1)
r = ce.get_cost_and_usage(TimePeriod={"Start": start.strftime("%Y-%m-%dT00:00:00Z"),
                                      "End": (start + timedelta(days=14)).strftime("%Y-%m-%dT00:00:00Z")},
                          Granularity="HOURLY", Metrics=["AmortizedCost", "UsageQuantity"],
                          GroupBy=[{"Type": "DIMENSION", "Key": "PURCHASE_TYPE"},
                                   {"Type": "DIMENSION", "Key": "USAGE_TYPE"}])
hours_seen = 0
for p in r["ResultsByTime"]:
    h = {tuple(g["Keys"]): {n: float(v["Amount"]) for n, v in g["Metrics"].items()} for g in p["Groups"]}
    zero = {"AmortizedCost": 0.0, "UsageQuantity": 0.0}
    od_h, sp_h, ri_h = (h.get((t, box), zero) for t in ("On Demand Instances", "Savings Plans", "Standard Reserved Instances"))
    spf, rif = h.get(("Savings Plans", "ComputeSP:1yrNoUpfront"), zero), h.get(("Standard Reserved Instances", "HeavyUsage:m5.large"), zero)
    assert sp_h["AmortizedCost"] <= 0.03 * spf["UsageQuantity"] + 1e-9, (p["TimePeriod"], h)
    assert ri_h["UsageQuantity"] <= rif["UsageQuantity"] + 1e-9, (p["TimePeriod"], h)
    if od_h["UsageQuantity"] > 1e-9 and spf["UsageQuantity"] > 0:
        close(sp_h["AmortizedCost"], 0.03 * spf["UsageQuantity"], 1e-8, f"plan used up at {p['TimePeriod']}")
        hours_seen += 1
    if (od_h["UsageQuantity"] > 1e-9 or sp_h["UsageQuantity"] > 1e-9) and rif["UsageQuantity"] > 0:
        close(ri_h["UsageQuantity"], rif["UsageQuantity"], 1e-8, f"reservation used up at {p['TimePeriod']}")
assert hours_seen >= 1, r["ResultsByTime"]
# Every instance hour is reported once, whoever paid for it: two instances for as long as
# they ran (between launching and being stopped).
total_hours = ri_used["UsageQuantity"] + sp_used["UsageQuantity"] + od_used["UsageQuantity"]
assert 2 * 1.5 - 1e-6 <= total_hours <= 2 * (t_stopped - t_launch) + 1e-6, (total_hours, t_stopped - t_launch)
print("billing commitments ok")
