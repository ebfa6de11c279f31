#!/usr/bin/env python3
"""Compares what several CloudEvents readers read from the same stream.

    compare.py REFERENCE.jsonl OTHER.jsonl [OTHER.jsonl ...]

Each file holds one line per stream message: {"seq", "subject", "event": {attributes, "data"}}
(read_python.py, read_node.mjs, `followup-projector show-events`), or {"seq", "subject",
"error"} for a message that reader could not read (always a failure). The first file is the
reference. Per sequence, every other reader must have: the same NATS subject, the same attribute
names, equal attribute values (`time` as an instant, see same_time) and deep-equal `data`.
Exits 1 on any difference, on an empty reference, or when one of the four event types of the
contract is missing (a check that saw no `failed` event proved nothing about it).
"""

import json
import re
import sys
from collections import Counter
from datetime import datetime, timezone

TYPES = ["lead.followup.processed.v1", "lead.followup.sent.v1",
         "lead.followup.failed.v1", "lead.changed.v1"]
SHOWN = 20  # differences printed; the count is always complete

RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\d)[Tt](\d\d:\d\d:\d\d)(?:\.(\d+))?([Zz]|[+-]\d\d:\d\d)$")


def instant(text):
    """(nanoseconds since the epoch, fraction digits written) of an RFC 3339 time, or None.
    Parsed by hand: datetime stops at microseconds and would hide a nanosecond difference."""
    m = RFC3339.match(text) if isinstance(text, str) else None
    if not m:
        return None
    date, clock, frac, offset = m.groups()
    offset = "+00:00" if offset in "Zz" else offset
    seconds = int(datetime.fromisoformat(f"{date}T{clock}{offset}").timestamp())
    frac = frac or ""
    return seconds * 10**9 + int((frac + "0" * 9)[:9]), len(frac)


def same_time(ref, other):
    """Same instant. The JavaScript SDK keeps `time` at millisecond precision only (its
    structured parser rewrites it with new Date(Date.parse(time)).toISOString(): UTC, "Z", always
    three digits, the rest truncated), so a value with exactly three fraction digits is compared
    with the reference truncated to milliseconds; any other value at full precision."""
    a, b = instant(ref), instant(other)
    if a is None or b is None:
        return False
    if b[1] == 3:
        return a[0] // 10**6 == b[0] // 10**6
    return a[0] == b[0]


def same_json(a, b):
    """Deep equality of parsed JSON that, unlike ==, tells true from 1 (1 and 1.0 are equal:
    JavaScript has one number type)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def load(path):
    records = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            rec = json.loads(line)
            if rec["seq"] in records:
                sys.exit(f"{path}:{n}: seq {rec['seq']} appears twice")
            records[rec["seq"]] = rec
    return records


def differences(ref, other):
    """(seq, field, reference value, other value) for every disagreement."""
    for seq in sorted(ref.keys() | other.keys()):
        a, b = ref.get(seq), other.get(seq)
        if a is None or b is None:
            yield seq, "message", "present" if a else "missing", "present" if b else "missing"
            continue
        if a["subject"] != b["subject"]:
            yield seq, "NATS subject", a["subject"], b["subject"]
        if "event" not in a or "event" not in b:
            yield seq, "error", a.get("error", "<read>"), b.get("error", "<read>")
            continue
        ea, eb = a["event"], b["event"]
        for name in sorted(ea.keys() | eb.keys()):
            if name not in ea or name not in eb:
                yield seq, name, ea.get(name, "<absent>"), eb.get(name, "<absent>")
            elif name == "time":
                if not same_time(ea[name], eb[name]):
                    yield seq, name, ea[name], eb[name]
            elif name == "data":
                if not same_json(ea[name], eb[name]):
                    yield seq, name, json.dumps(ea[name], sort_keys=True), json.dumps(eb[name], sort_keys=True)
            elif ea[name] != eb[name]:
                yield seq, name, ea[name], eb[name]


def main(paths):
    if len(paths) < 2:
        sys.exit(__doc__)
    readers = {p: load(p) for p in paths}
    ref_path = paths[0]
    failed = False

    print("events per type and reader:")
    counts = {p: Counter(r["event"].get("type", "<no type>") if "event" in r else "<unreadable>"
                         for r in recs.values())
              for p, recs in readers.items()}
    names = sorted(set().union(*counts.values()) | set(TYPES))
    width = max(len(n) for n in names)
    print(f"  {'type':<{width}}  " + "  ".join(paths))
    for name in names + ["total"]:
        cells = [str(sum(c.values()) if name == "total" else c[name]).rjust(len(p))
                 for p, c in counts.items()]
        print(f"  {name:<{width}}  " + "  ".join(cells))

    # One `time` as each reader gives it: shows at a glance which precision each SDK keeps.
    first = min(readers[ref_path], default=None)
    if first is not None:
        print(f"time of seq {first} as read:")
        for p, recs in readers.items():
            print(f"  {p}: {recs.get(first, {}).get('event', {}).get('time', '<none>')}")

    if not readers[ref_path]:
        print(f"FAIL: the reference {ref_path} has no events")
        failed = True
    for path, c in counts.items():
        if c["<unreadable>"]:
            # Also when every reader failed alike: an unreadable event is no agreement.
            print(f"FAIL: {path} could not read {c['<unreadable>']} message(s)")
            failed = True
        missing = [t for t in TYPES if not c[t]]
        if missing:
            print(f"FAIL: {path} has no event of type {', '.join(missing)}")
            failed = True

    for path in paths[1:]:
        diffs = list(differences(readers[ref_path], readers[path]))
        if not diffs:
            print(f"OK: {path} reads all {len(readers[path])} events as {ref_path} does")
            continue
        failed = True
        print(f"FAIL: {path} differs from {ref_path} in {len(diffs)} places; the first {min(SHOWN, len(diffs))}:")
        for seq, field, a, b in diffs[:SHOWN]:
            print(f"  seq {seq} {field}:\n    {ref_path}: {a}\n    {path}: {b}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
