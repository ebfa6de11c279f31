#!/usr/bin/env python3
"""Reads every message of the JetStream stream FOLLOWUP and parses each with the CloudEvents
Python SDK (PyPI `cloudevents` 2.x, structured-mode HTTP binding + JSON format), printing one
JSON line per message:

    {"seq": 1, "subject": "freshplan.lead.changed", "event": {"id": "...", ..., "data": {...}}}

Used by scripts/check-cloudevents.sh to show that a consumer written in Python reads our events
as the Rust and JavaScript readers do (scripts/cloudevents/compare.py). NATS_URL selects the
server; the stream is only read (ordered consumer: ephemeral, no acks, nothing left behind).
A message the SDK rejects gives {"seq", "subject", "error"} (as `show-events` does), which
compare.py counts as a failure: a consumer that cannot parse an event is what this check catches.
"""

import asyncio
import json
import os
import sys
from datetime import datetime

import nats
from cloudevents.core.bindings.http import HTTPMessage, from_http_event
from nats.js.api import DeliverPolicy

STREAM = "FOLLOWUP"


def attribute_text(value):
    # The SDK turns `time` into a datetime (microsecond precision, offset kept); the common
    # output format has every attribute as a string, so it goes back out as RFC 3339.
    return value.isoformat() if isinstance(value, datetime) else str(value)


async def main() -> int:
    nc = await nats.connect(os.environ.get("NATS_URL", "nats://127.0.0.1:4222"))
    try:
        js = nc.jetstream()
        last = (await js.stream_info(STREAM)).state.last_seq
        if last == 0:
            return 0
        # An ordered consumer from the first message: one subscription instead of a request per
        # sequence, and the client re-creates it from the next sequence if a message is lost.
        sub = await js.subscribe(
            "freshplan.>", stream=STREAM, ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL, idle_heartbeat=5.0)
        while True:
            msg = await sub.next_msg(timeout=30)
            seq = msg.metadata.sequence.stream
            # The real message headers (Content-Type: application/cloudevents+json) decide the
            # content mode, as they would for any consumer.
            line = {"seq": seq, "subject": msg.subject}
            try:
                event = from_http_event(HTTPMessage(headers=dict(msg.headers or {}), body=msg.data))
                line["event"] = {k: attribute_text(v) for k, v in event.get_attributes().items()}
                line["event"]["data"] = event.get_data()
            except Exception as e:  # the SDK's errors have no common base class
                line = {**line, "error": f"Python SDK: {e!r}"}
            print(json.dumps(line, sort_keys=True))
            if seq >= last:
                return 0
    finally:
        await nc.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
