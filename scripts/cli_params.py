#!/usr/bin/env python3
"""Which aws CLI parameters `ebsctl` lacks: for every ebsctl command named like an EC2 operation,
the input members of botocore's EC2 model (as the aws CLI spells them: `--volume-ids`,
`--dry-run`; booleans also as `--no-…`) that the command's `--help` does not offer.
`--cli-input-json`, `--cli-input-yaml` and `--generate-cli-skeleton` are counted as the CLI's
own. The measure of issue 20's "parameters missing".

usage: cli_params.py [PATH-TO-EBSCTL]
"""
import re
import subprocess
import sys

import botocore.session
from botocore import xform_name

ebsctl = sys.argv[1] if len(sys.argv) > 1 else "target/debug/ebsctl"
model = botocore.session.get_session().get_service_model("ec2")
ops = {xform_name(name, "-"): name for name in model.operation_names}

top = subprocess.run([ebsctl, "--help"], capture_output=True, text=True, check=True).stdout
commands = re.findall(r"^  ([a-z][a-z0-9-]+)\s", top.split("Commands:")[1].split("Options:")[0], re.M)
total = 0
covered = 0
for cmd in commands:
    if cmd not in ops:
        continue
    covered += 1
    shown = subprocess.run([ebsctl, cmd, "--help"], capture_output=True, text=True, check=True).stdout
    flags = set(re.findall(r"--([a-z0-9-]+)", shown))
    shape = model.operation_model(ops[cmd]).input_shape
    wanted = [xform_name(m, "-") for m in (shape.members if shape else [])]
    wanted += ["cli-input-json"]
    lacking = [w for w in wanted if w not in flags and f"no-{w}" not in flags]
    total += len(lacking)
    if lacking:
        print(f"{cmd} ({len(lacking)}): {' '.join('--' + w for w in lacking)}")
print(f"commands shaped like EC2 operations: {covered}; aws CLI parameters missing: {total}")
