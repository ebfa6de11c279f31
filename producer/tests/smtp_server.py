#!/usr/bin/env python3
"""A real SMTP server for the producer's integration tests (aiosmtpd).

    python3 smtp_server.py --port 2525 --log /tmp/smtp.jsonl

Listens on 127.0.0.1:<port> and appends one JSON line per event to --log:

    {"event": "accepted", "rcpt_tos": [...], "mail_from": ..., "subject": ..., "body": ..., ...}
    {"event": "tempfail", "rcpt": ..., "code": 451, "message_id": ...}
    {"event": "rejected", "rcpt": ..., "code": 550}

Behaviour is chosen per recipient, so concurrent deliveries stay deterministic:
  - a local part containing `tempfail<N>` (e.g. tempfail2-a@example.test) is answered
    `451` to its first N DATA commands (counted per recipient, across restarts), then `250`;
  - a local part containing `reject` is answered `550` at RCPT TO;
  - anything else is accepted.
Subject and body are decoded (RFC 2047 headers, quoted-printable/base64 bodies), so the tests
compare plain text. The test stops the server with SIGKILL and restarts it on the same port to
simulate an outage. Exits with status 3 and a message when aiosmtpd is not installed.
"""

import argparse
import json
import re
import signal
import sys
import threading
from email import message_from_bytes, policy

try:
    from aiosmtpd.controller import Controller
except ImportError:
    print(
        "aiosmtpd is not installed: run `python3 -m pip install aiosmtpd`",
        file=sys.stderr,
    )
    sys.exit(3)


class Handler:
    def __init__(self, log_path):
        # 451s already given, per recipient, survive a restart: counted from the log.
        self.tempfails = {}
        try:
            with open(log_path, encoding="utf-8") as old:
                for line in old:
                    record = json.loads(line)
                    if record.get("event") == "tempfail":
                        rcpt = record["rcpt"]
                        self.tempfails[rcpt] = self.tempfails.get(rcpt, 0) + 1
        except FileNotFoundError:
            pass
        self.log = open(log_path, "a", encoding="utf-8")
        self.lock = threading.Lock()

    def write(self, record):
        with self.lock:
            self.log.write(json.dumps(record, ensure_ascii=False) + "\n")
            self.log.flush()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if "reject" in address.split("@")[0].lower():
            self.write({"event": "rejected", "rcpt": address, "code": 550})
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        msg = message_from_bytes(envelope.content, policy=policy.default)
        message_id = str(msg.get("Message-ID", ""))
        for rcpt in envelope.rcpt_tos:
            m = re.search(r"tempfail(\d+)", rcpt.split("@")[0].lower())
            if m:
                seen = self.tempfails.get(rcpt, 0)
                if seen < int(m.group(1)):
                    self.tempfails[rcpt] = seen + 1
                    self.write(
                        {"event": "tempfail", "rcpt": rcpt, "code": 451, "message_id": message_id}
                    )
                    return "451 4.3.0 Temporary local problem, try again later"
        body = msg.get_body(preferencelist=("plain",))
        self.write(
            {
                "event": "accepted",
                "mail_from": envelope.mail_from,
                "rcpt_tos": list(envelope.rcpt_tos),
                "from": str(msg.get("From", "")),
                "to": str(msg.get("To", "")),
                "subject": str(msg.get("Subject", "")),
                "message_id": message_id,
                "date": str(msg.get("Date", "")),
                "list_unsubscribe": str(msg.get("List-Unsubscribe", "")),
                "list_unsubscribe_post": str(msg.get("List-Unsubscribe-Post", "")),
                "content_type": msg.get_content_type(),
                "charset": body.get_content_charset() if body is not None else None,
                "body": body.get_content() if body is not None else None,
            }
        )
        return "250 2.0.0 Message accepted for delivery"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()

    controller = Controller(Handler(args.log), hostname="127.0.0.1", port=args.port)
    controller.start()
    print("READY", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
