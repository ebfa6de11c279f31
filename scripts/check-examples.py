#!/usr/bin/env python3
"""The stream's truth for the example consumers (examples/python, examples/typescript), and the
comparison of an example's projection with it.

    check-examples.py TRUTH.jsonl --wait SECONDS -- DUMP COMMAND...

TRUTH.jsonl is `followup-projector show-events` (one line per stream message, as our contract
reads it). From it, independently of the examples' code: per lead the `lead.changed.v1` with the
largest `sequence` (status, owner, contactable, deleted), the number of `sent` and `failed`
events per kind and of `processed` events, and the number of distinct idempotency keys. The
dump command prints an example's projection as JSON ({"leads", "counts", "applied"}); it is run
until it equals the truth (the example may still be catching up) or SECONDS pass, then the
differences are printed and the exit status is 1.
"""

import json
import subprocess
import sys
import time
from collections import Counter


def truth(path):
    leads, counts, keys = {}, Counter(), set()
    with open(path) as f:
        for line in f:
            message = json.loads(line)
            if "event" not in message:
                sys.exit(f"the stream holds an invalid message: {message}")
            event = message["event"]
            keys.add(event["idempotencykey"])
            data, kind = event["data"], event["type"]
            if kind == "lead.changed.v1":
                known = leads.get(str(data["leadId"]))
                if known is None or data["sequence"] > known["sequence"]:
                    leads[str(data["leadId"])] = {
                        "sequence": data["sequence"], "status": data["status"],
                        "owner": data.get("ownerUserId"),
                        "contactable": data.get("contactable", True),
                        "deleted": data["deleted"]}
            elif kind == "lead.followup.sent.v1":
                counts[f"sent:{data['kind']}"] += 1
            elif kind == "lead.followup.failed.v1":
                counts[f"failed:{data['kind']}"] += 1
            elif kind == "lead.followup.processed.v1":
                counts["runs"] += 1
    return {"leads": leads, "counts": dict(counts), "applied": len(keys)}


def differences(want, got):
    out = [f"applied keys: stream {want['applied']}, example {got.get('applied')}"] \
        if want["applied"] != got.get("applied") else []
    if want["counts"] != got.get("counts"):
        out.append(f"counts: stream {want['counts']}, example {got.get('counts')}")
    got_leads = got.get("leads", {})
    for lead in sorted(set(want["leads"]) | set(got_leads), key=int):
        if want["leads"].get(lead) != got_leads.get(lead):
            out.append(f"lead {lead}: stream {want['leads'].get(lead)}, example {got_leads.get(lead)}")
    return out


def main():
    path, wait, command = sys.argv[1], float(sys.argv[3]), sys.argv[5:]
    want = truth(path)
    if want["applied"] == 0 or not all(want["counts"].get(k) for k in ("sent:t3", "failed:t3", "runs")):
        sys.exit(f"the stream proves too little: {want['counts']}, {want['applied']} keys")
    deadline = time.monotonic() + wait
    while True:
        got = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
        diff = differences(want, got)
        if not diff:
            print(f"{' '.join(command[:2])}: projection equals the stream "
                  f"({want['applied']} events, {len(want['leads'])} leads, {want['counts']})")
            return 0
        if time.monotonic() > deadline:
            print(f"{' '.join(command)}: projection differs from the stream "
                  f"({len(diff)} differences):", *diff[:20], sep="\n  ")
            return 1
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
