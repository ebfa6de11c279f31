// Reads every message of the JetStream stream FOLLOWUP and parses each with the CloudEvents
// JavaScript SDK (npm `cloudevents`, HTTP binding, structured mode), printing one JSON line per
// message in the format of read_python.py:
//
//   {"seq": 1, "subject": "freshplan.lead.changed", "event": {"id": "...", ..., "data": {...}}}
//
// Used by scripts/check-cloudevents.sh (compared by compare.py). NATS_URL selects the server; the
// stream is only read (ordered consumer: ephemeral, no acks). A message the SDK rejects gives
// {"seq", "subject", "error"}, a failure for compare.py.
import { connect, DeliverPolicy } from "nats";
import { HTTP } from "cloudevents";

const STREAM = "FOLLOWUP";
const nc = await connect({ servers: (process.env.NATS_URL || "nats://127.0.0.1:4222").split(",") });
try {
  const { first_seq: first, last_seq: last } = (await (await nc.jetstreamManager()).streams.info(STREAM)).state;
  if (last > 0) {
    // An ordered pull consumer from the first message (nats.js recreates it on a gap). Not
    // DeliverPolicy.All: nats.js sends it with opt_start_seq, which nats-server 2.9 rejects
    // ("deliver all, but optional start sequence is also set") and consume() then waits for ever.
    const consumer = await nc.jetstream().consumers.get(STREAM, {
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: first,
    });
    // Such errors are not thrown to us: fail instead of hanging if the messages stop coming.
    const watchdog = setTimeout(() => { console.error("no message for 30 s"); process.exit(1); }, 30000);
    const messages = await consumer.consume();
    for await (const m of messages) {
      watchdog.refresh();
      // The message's own headers (Content-Type: application/cloudevents+json) pick the mode.
      const headers = {};
      for (const k of m.headers?.keys() ?? []) headers[k] = m.headers.get(k);
      const line = { seq: m.seq, subject: m.subject };
      try {
        const event = HTTP.toEvent({ headers, body: m.string() });
        // toEvent builds the event with validation switched off (strict = false); a consumer
        // that wants the SDK's schema check calls validate(), and so do we.
        event.validate();
        // The event object's own properties, not JSON.stringify(event): we want what a consumer
        // reads from the event, not the SDK's re-serialisation (toJSON()). Its `time` is already
        // the SDK's rewrite (new Date(Date.parse(time)).toISOString(): UTC, milliseconds).
        line.event = {};
        for (const [k, v] of Object.entries(event)) {
          if (v === undefined) continue; // unset optional attributes are present as undefined
          line.event[k] = k === "data" ? v : String(v);
        }
      } catch (e) {
        line.error = `JavaScript SDK: ${e} ${JSON.stringify(e.errors ?? "")}`;
      }
      console.log(JSON.stringify(line));
      if (m.seq >= last) break;
    }
    clearTimeout(watchdog);
    messages.stop();
  }
} finally {
  await nc.close();
}
