// Example consumer of the FOLLOWUP stream in TypeScript on Node.js (nats.js + the CloudEvents SDK).
//
// Reads through its own durable `example-typescript` (nats/consumers/example-typescript.json) and
// keeps a tiny projection in a JSON file: per lead the latest `lead.changed.v1` (by `sequence`;
// never by `time`, which the SDK truncates to milliseconds), and how many follow-ups were sent and
// finally failed per kind, and how many runs were processed. Each batch is applied in memory, the
// file is replaced atomically (write, fsync, rename) together with the idempotency keys applied,
// and only then is the batch acked: a crash before the rename gets the batch again, a crash after
// it gets duplicates, which the key set skips. It also reads its replay durable (the same name on
// FOLLOWUP_DLQ), where `followup-projector dlq replay example-typescript ...` puts a dead letter.
//
//   NATS_URL=nats://127.0.0.1:4222 EXAMPLE_STATE=example.json node dist/consumer.js
//   EXAMPLE_STATE=example.json node dist/consumer.js --dump     # the projection as JSON
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from "node:fs";
import { connect, type Consumer, type JsMsg, type NatsConnection } from "nats";
import { CloudEvent, HTTP } from "cloudevents";

const DURABLE = "example-typescript";

interface Lead { sequence: number; status: string; owner: string | null; contactable: boolean; deleted: boolean }
interface State { applied: Record<string, true>; leads: Record<string, Lead>; counts: Record<string, number> }

function loadState(path: string): State {
  if (!existsSync(path)) return { applied: {}, leads: {}, counts: {} };
  return JSON.parse(readFileSync(path, "utf8")) as State;
}

/** Replaces the file atomically and durably: a reader (or a restart) sees the old or the new state. */
function saveState(path: string, state: State): void {
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, "w");
  writeSync(fd, JSON.stringify(state));
  fsyncSync(fd);
  closeSync(fd);
  renameSync(tmp, path);
}

/** Applies one event to the state; an idempotency key seen before is skipped. The key is
 * recorded after the effect, so an event that throws half-way is not marked applied. */
function applyEvent(state: State, event: CloudEvent<Record<string, any>>): void {
  const key = String(event.idempotencykey);
  if (state.applied[key]) return; // a redelivery or replay of something already applied
  project(state, event.type, event.data ?? {});
  state.applied[key] = true;
}

function project(state: State, type: string, data: Record<string, any>): void {
  const bump = (name: string) => { state.counts[name] = (state.counts[name] ?? 0) + 1; };
  switch (type) {
    case "lead.changed.v1": {
      // A snapshot of the lead: keep it only if it is newer than what we have.
      const known = state.leads[String(data.leadId)];
      if (known && known.sequence >= data.sequence) return;
      state.leads[String(data.leadId)] = {
        sequence: data.sequence, status: data.status, owner: data.ownerUserId ?? null,
        contactable: data.contactable ?? true, deleted: data.deleted,
      };
      return;
    }
    case "lead.followup.sent.v1": return bump(`sent:${data.kind}`);
    case "lead.followup.failed.v1": return bump(`failed:${data.kind}`);
    case "lead.followup.processed.v1": return bump("runs");
    default: return; // not ours (a future v2 beside v1): acked and ignored
  }
}

/** Applies a batch, saves, then acks; an unreadable message is nak'ed with its reason reported,
 * so after max_deliver it lands in FOLLOWUP_DLQ with that reason. */
async function handleBatch(nc: NatsConnection, path: string, state: State, msgs: JsMsg[]): Promise<void> {
  const good: JsMsg[] = [];
  for (const m of msgs) {
    const headers: Record<string, string> = {};
    for (const k of m.headers?.keys() ?? []) headers[k] = m.headers!.get(k);
    try {
      const event = HTTP.toEvent({ headers, body: m.string() }) as CloudEvent<Record<string, any>>;
      event.validate();
      applyEvent(state, event);
      good.push(m);
    } catch (e) {
      console.warn(`${DURABLE}: cannot read stream sequence ${m.seq}: ${e}`);
      nc.publish(`followup.dlq.error.${DURABLE}.${m.seq}`, String(e));
      m.nak(5000);
    }
  }
  if (good.length > 0) saveState(path, state);
  for (const m of good) await m.ackAck();
}

async function bind(nc: NatsConnection, stream: string): Promise<Consumer | null> {
  try {
    await (await nc.jetstreamManager()).consumers.info(stream, DURABLE);
  } catch {
    console.warn(`${DURABLE}: no durable on ${stream}: run followup-projector consumers apply`);
    return null;
  }
  return nc.jetstream().consumers.get(stream, DURABLE);
}

async function run(path: string): Promise<number> {
  const state = loadState(path);
  const nc = await connect({ servers: (process.env.NATS_URL ?? "nats://127.0.0.1:4222").split(",") });
  const consumers = [await bind(nc, "FOLLOWUP"), await bind(nc, "FOLLOWUP_DLQ")].filter((c) => c !== null);
  if (consumers.length === 0) return 1;
  const batch = Number(process.env.EXAMPLE_BATCH_SIZE ?? "100");
  const pause = Number(process.env.EXAMPLE_PAUSE_MS ?? "0"); // CI slows it to kill it midway
  let stopping = false;
  for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => { stopping = true; });
  console.log(`${DURABLE}: consuming FOLLOWUP into ${path}`);
  // One loop per durable, so an idle replay durable never holds up the stream's.
  const consume = async (consumer: Consumer) => {
    while (!stopping) {
      const msgs: JsMsg[] = [];
      for await (const m of await consumer.fetch({ max_messages: batch, expires: 1000 })) msgs.push(m);
      // Applying and saving is synchronous: the two loops never interleave inside it.
      if (msgs.length > 0) await handleBatch(nc, path, state, msgs);
      await new Promise((resolve) => setTimeout(resolve, pause));
    }
  };
  await Promise.all(consumers.map(consume));
  await nc.drain();
  return 0;
}

/** The projection as JSON (what scripts/check-examples.sh compares with the stream). */
function dump(path: string): number {
  const { applied, leads, counts } = loadState(path);
  console.log(JSON.stringify({ leads, counts, applied: Object.keys(applied).length }));
  return 0;
}

const path = process.env.EXAMPLE_STATE ?? "example-typescript.json";
process.exitCode = process.argv[2] === "--dump" ? dump(path) : await run(path);
