-- Event ids become time-ordered UUIDs (version 7, RFC 9562: 48 bits of Unix milliseconds, then
-- random bits) instead of random ones (version 4). The contract asks for a UUID and nothing
-- more; what changes is where an id lands in the projector's inbox, whose primary key is the
-- event id: a random id is an insert on a random page of an index as large as the events of
-- the stream's retention, a time-ordered one an insert at its right edge. Measured with 740 000
-- ids in the inbox: 100 000 random inserts ~1.0–1.2 s, time-ordered ~0.4–0.6 s, and the gap
-- grows with the inbox (bench/results/2026-11-30-whole-pipeline.md). Ids already in the outbox,
-- the stream or the inbox keep their value; nothing relies on their version.
--
-- PostgreSQL 15 has no uuidv7(): the function overlays the time on a random (v4) UUID and turns
-- its version nibble 0100 into 0111 (bits 52 and 53 of the bytes, counted from the low bit of
-- the first byte); the variant bits stay those of v4. clock_timestamp(), not now(): the rows of
-- one long transaction still get increasing ids.
CREATE OR REPLACE FUNCTION followup_uuid_v7() RETURNS UUID
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
  SELECT encode(
           set_bit(set_bit(
             overlay(uuid_send(gen_random_uuid())
                     placing substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                     FROM 1 FOR 6),
             52, 1), 53, 1),
           'hex')::uuid
$$;

ALTER TABLE followup_outbox ALTER COLUMN event_id SET DEFAULT followup_uuid_v7();
