#!/usr/bin/env python3
"""Example consumer of the FOLLOWUP stream in Python (nats-py + the CloudEvents SDK).

Reads through its own durable `example-python` (nats/consumers/example-python.json) and keeps a
tiny projection in SQLite: per lead the latest `lead.changed.v1` (by `sequence`, never by stream
order or `time`), and how many follow-ups were sent and finally failed per kind, and how many runs
were processed. Every batch is applied in one SQLite transaction together with the idempotency
keys it applied, and acked only after that commit: a crash before the commit gets the batch again,
a crash after it gets duplicates, which the key table skips. It also reads its replay durable (the
same name on FOLLOWUP_DLQ), where `followup-projector dlq replay example-python ...` puts a dead
letter again after a fix.

    NATS_URL=nats://127.0.0.1:4222 EXAMPLE_STATE=example.sqlite python3 consumer.py
    EXAMPLE_STATE=example.sqlite python3 consumer.py --dump     # the projection as JSON
"""

import asyncio
import json
import logging
import os
import signal
import sqlite3
import sys

import nats
from cloudevents.core.bindings.http import HTTPMessage, from_http_event
from nats.js.errors import NotFoundError

DURABLE = "example-python"
SCHEMA = """
CREATE TABLE IF NOT EXISTS applied (key TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS leads (lead_id INTEGER PRIMARY KEY, sequence INTEGER NOT NULL,
    status TEXT, owner TEXT, contactable INTEGER, deleted INTEGER);
CREATE TABLE IF NOT EXISTS counts (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
log = logging.getLogger(DURABLE)


def open_state(path):
    db = sqlite3.connect(path)
    db.executescript(SCHEMA)
    db.execute("PRAGMA synchronous = FULL")  # a commit is on disk before we ack
    return db


def count(db, name):
    db.execute("INSERT INTO counts VALUES (?, 1) "
               "ON CONFLICT (name) DO UPDATE SET value = value + 1", (name,))


def apply_event(db, event):
    """Applies one CloudEvent inside the caller's transaction; a known key is skipped."""
    key = event.get_extension("idempotencykey")
    if db.execute("INSERT OR IGNORE INTO applied VALUES (?)", (key,)).rowcount == 0:
        return  # a redelivery or replay of something already applied
    data, kind = event.get_data(), event.get_type()
    if kind == "lead.changed.v1":
        # A snapshot of the lead: keep it only if it is newer than what we have.
        db.execute(
            "INSERT INTO leads VALUES (:leadId, :sequence, :status, :ownerUserId, "
            ":contactable, :deleted) ON CONFLICT (lead_id) DO UPDATE SET "
            "sequence = excluded.sequence, status = excluded.status, owner = excluded.owner, "
            "contactable = excluded.contactable, deleted = excluded.deleted "
            "WHERE excluded.sequence > leads.sequence",
            {"contactable": True, **data})
    elif kind == "lead.followup.sent.v1":
        count(db, f"sent:{data['kind']}")
    elif kind == "lead.followup.failed.v1":
        count(db, f"failed:{data['kind']}")
    elif kind == "lead.followup.processed.v1":
        count(db, "runs")
    # Any other type (a future v2 beside v1) is not ours: acked and ignored.


async def handle_batch(nc, db, msgs):
    """Applies a batch in one transaction, then acks; a message we cannot read is nak'ed with
    its reason reported, so after max_deliver it lands in FOLLOWUP_DLQ with that reason."""
    good, bad = [], []
    with db:  # one transaction: commit on success, rollback on any exception
        db.execute("BEGIN")
        for msg in msgs:
            # A savepoint per event: one that fails half-way leaves neither its key nor its effect.
            db.execute("SAVEPOINT event")
            try:
                event = from_http_event(HTTPMessage(headers=dict(msg.headers or {}), body=msg.data))
                apply_event(db, event)
                good.append(msg)
            except Exception as e:  # the SDK's errors share no base class
                db.execute("ROLLBACK TO event")
                bad.append((msg, repr(e)))
            db.execute("RELEASE event")
    for msg in good:
        await msg.ack_sync()
    for msg, reason in bad:
        seq = msg.metadata.sequence.stream
        log.warning("cannot read stream sequence %s: %s", seq, reason)
        await nc.publish(f"followup.dlq.error.{DURABLE}.{seq}", reason.encode())
        await msg.nak(delay=5)


async def bind(js, stream):
    try:
        await js.consumer_info(stream, DURABLE)
    except NotFoundError:
        log.warning("no durable %s on %s: run followup-projector consumers apply", DURABLE, stream)
        return None
    return await js.pull_subscribe_bind(durable=DURABLE, stream=stream)


async def run(path):
    db = open_state(path)
    nc = await nats.connect(os.environ.get("NATS_URL", "nats://127.0.0.1:4222").split(","))
    js = nc.jetstream()
    subs = [s for s in [await bind(js, "FOLLOWUP"), await bind(js, "FOLLOWUP_DLQ")] if s]
    if not subs:
        return 1
    batch = int(os.environ.get("EXAMPLE_BATCH_SIZE", "100"))
    pause = int(os.environ.get("EXAMPLE_PAUSE_MS", "0")) / 1000  # CI slows it to kill it midway
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)

    async def consume(sub):
        # One loop per durable, so an idle replay durable never holds up the stream's.
        while not stop.is_set():
            try:
                msgs = await sub.fetch(batch, timeout=0.5)
            except (nats.errors.TimeoutError, asyncio.TimeoutError):
                continue
            await handle_batch(nc, db, msgs)  # no await inside its transaction: atomic
            await asyncio.sleep(pause)

    log.info("consuming FOLLOWUP through durable %s into %s", DURABLE, path)
    await asyncio.gather(*(consume(sub) for sub in subs))
    await nc.close()  # every ack was confirmed (ack_sync): nothing to drain
    return 0


def dump(path):
    """The projection as JSON (what scripts/check-examples.sh compares with the stream)."""
    db = open_state(path)
    leads = {str(r[0]): {"sequence": r[1], "status": r[2], "owner": r[3],
                         "contactable": bool(r[4]), "deleted": bool(r[5])}
             for r in db.execute("SELECT * FROM leads")}
    counts = dict(db.execute("SELECT name, value FROM counts"))
    applied = db.execute("SELECT count(*) FROM applied").fetchone()[0]
    print(json.dumps({"leads": leads, "counts": counts, "applied": applied}, sort_keys=True))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    state = os.environ.get("EXAMPLE_STATE", "example-python.sqlite")
    sys.exit(dump(state) if sys.argv[1:] == ["--dump"] else asyncio.run(run(state)))
