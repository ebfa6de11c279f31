import { describe, expect, it } from 'vitest';

import { type SseFrame, SseParser, readFrames } from '../src/sse';

function parse(chunks: string[]): SseFrame[] {
  const frames: SseFrame[] = [];
  const parser = new SseParser((f) => frames.push(f));
  for (const c of chunks) parser.push(c);
  return frames;
}

describe('SseParser', () => {
  it('reads frames without an event name as message events, with their ids', () => {
    expect(parse(['id: 7\ndata: {"a":1}\n\n', 'id: 8\ndata: {"a":2}\n\n'])).toEqual([
      { id: '7', event: 'message', data: '{"a":1}' },
      { id: '8', event: 'message', data: '{"a":2}' },
    ]);
  });

  it('joins a frame split across chunks at any byte, CRLF included', () => {
    const text = 'id: 3\r\ndata: one\r\ndata: two\r\n\r\n';
    for (let cut = 1; cut < text.length; cut++) {
      expect(parse([text.slice(0, cut), text.slice(cut)])).toEqual([{ id: '3', event: 'message', data: 'one\ntwo' }]);
    }
  });

  it('ignores heartbeats (comments) and unknown fields, keeps the last id', () => {
    expect(parse([': heartbeat\n\n', 'foo: bar\nid: 9\n\n', 'data: x\n\n'])).toEqual([
      { id: '9', event: 'message', data: 'x' },
    ]);
  });

  it('takes retry and named events', () => {
    const frames: SseFrame[] = [];
    const parser = new SseParser((f) => frames.push(f));
    parser.push('retry: 2500\nevent: other\ndata:x\n\n');
    expect(parser.retryMs).toBe(2500);
    expect(frames).toEqual([{ id: '', event: 'other', data: 'x' }]);
  });

  it('reads a fetched body to its end, multi-byte characters split across chunks', async () => {
    const bytes = new TextEncoder().encode('data: Grüße\n\n');
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(bytes.slice(0, 10)); // inside 'ü'
        c.enqueue(bytes.slice(10));
        c.close();
      },
    });
    const frames: SseFrame[] = [];
    await readFrames(body, (f) => frames.push(f));
    expect(frames.map((f) => f.data)).toEqual(['Grüße']);
  });
});
