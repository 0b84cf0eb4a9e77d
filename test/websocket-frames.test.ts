// WebSocket framing by generated conversations: fragments, pings between them, text that is or is not UTF-8.
//
// A raw client writes frames by hand (fast-check picks the messages, how each is cut into
// fragments, where pings go, and how the bytes are split across TCP writes); whatever the
// engine, the server must answer each message whole with its kind, each ping with its pong, and
// the first text that is not UTF-8 (by TextDecoder's fatal rules) with 1007 and nothing after.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { it } from 'node:test';
import fc from 'fast-check';
import { forEachEngine } from './helpers/engines.js';
import { startServer } from './helpers/sockets.js';
import { withTimeout } from './helpers/timeout.js';

interface Message {
  text: boolean;
  payload: Buffer;
  /** Where the payload is cut into fragments, and which fragment boundaries carry a ping. */
  cuts: number[];
  pingAfter: boolean[];
}

interface Frame {
  fin: boolean;
  opcode: number;
  payload: Buffer;
}

function clientFrame(opcode: number, payload: Buffer, fin: boolean): Buffer {
  const mask = randomBytes(4);
  const length = payload.length;
  const header =
    length < 126
      ? Buffer.from([(fin ? 0x80 : 0) | opcode, 0x80 | length])
      : Buffer.from([(fin ? 0x80 : 0) | opcode, 0x80 | 126, length >> 8, length & 0xff]);
  const masked = Buffer.from(payload.map((byte, i) => byte ^ mask[i % 4]!));
  return Buffer.concat([header, mask, masked]);
}

/** Reads server frames as they arrive. */
class FrameReader {
  #buffer = Buffer.alloc(0);
  readonly frames: Frame[] = [];
  push(chunk: Buffer): void {
    this.#buffer = Buffer.concat([this.#buffer, chunk]);
    for (;;) {
      const b = this.#buffer;
      if (b.length < 2) return;
      let length = b[1]! & 0x7f;
      let at = 2;
      if (length === 126) {
        if (b.length < 4) return;
        length = b.readUInt16BE(2);
        at = 4;
      } else if (length === 127) {
        if (b.length < 10) return;
        length = Number(b.readBigUInt64BE(2));
        at = 10;
      }
      if (b.length < at + length) return;
      this.frames.push({ fin: (b[0]! & 0x80) !== 0, opcode: b[0]! & 0x0f, payload: b.subarray(at, at + length) });
      this.#buffer = b.subarray(at + length);
    }
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
function validUtf8(bytes: Buffer): boolean {
  try {
    utf8.decode(bytes);
    return true;
  } catch {
    return false;
  }
}

const message: fc.Arbitrary<Message> = fc
  .record({
    text: fc.boolean(),
    payload: fc.oneof(
      fc.string({ unit: 'grapheme', maxLength: 40 }).map((s) => Buffer.from(s)),
      fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
      // Mostly UTF-8 with one byte changed: the errors a validator can miss.
      fc
        .tuple(
          fc.string({ unit: 'grapheme', minLength: 1, maxLength: 20 }),
          fc.nat(),
          fc.integer({ min: 0x80, max: 0xff }),
        )
        .map(([s, at, byte]) => {
          const bytes = Buffer.from(s);
          bytes[at % bytes.length] = byte;
          return bytes;
        }),
    ),
    cuts: fc.array(fc.nat(), { maxLength: 4 }),
    pingAfter: fc.array(fc.boolean(), { minLength: 5, maxLength: 5 }),
  })
  .map((m) => ({ ...m, cuts: [...new Set(m.cuts.map((c) => c % (m.payload.length + 1)))].sort((a, b) => a - b) }));

/** The frames of one message: its fragments, with pings between them where asked. */
function framesOf(m: Message, pingId: { next: number }, pings: Buffer[]): Buffer[] {
  const bounds = [0, ...m.cuts, m.payload.length];
  const out: Buffer[] = [];
  for (let i = 0; i + 1 < bounds.length; i++) {
    const last = i + 2 === bounds.length;
    out.push(clientFrame(i === 0 ? (m.text ? 1 : 2) : 0, m.payload.subarray(bounds[i], bounds[i + 1]), last));
    if (!last && m.pingAfter[i]) {
      const ping = Buffer.from(`ping ${pingId.next++}`);
      pings.push(ping);
      out.push(clientFrame(9, ping, true));
    }
  }
  return out;
}

async function converse(port: number, messages: Message[], splits: number[]): Promise<FrameReader> {
  const socket = net.connect({ port, host: '127.0.0.1' });
  const reader = new FrameReader();
  let head = Buffer.alloc(0);
  let upgraded = false;
  socket.on('error', () => {});
  const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const switched = new Promise<void>((resolve) => {
    socket.on('data', (chunk: Buffer) => {
      if (upgraded) return reader.push(chunk);
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      upgraded = true;
      assert.match(head.subarray(0, end).toString(), /^HTTP\/1\.1 101 /);
      reader.push(head.subarray(end + 4));
      resolve();
    });
  });
  socket.write(
    'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  await withTimeout(switched, 5000, 'the 101');
  const pings: Buffer[] = [];
  const pingId = { next: 0 };
  const bytes = Buffer.concat([
    ...messages.flatMap((m) => framesOf(m, pingId, pings)),
    clientFrame(8, Buffer.from([0x03, 0xe8]), true),
  ]);
  // The same bytes, cut into TCP writes at the generated places.
  const cuts = [...new Set(splits.map((s) => s % bytes.length))].sort((a, b) => a - b);
  let from = 0;
  for (const cut of [...cuts, bytes.length]) {
    if (cut > from) socket.write(bytes.subarray(from, cut));
    from = cut;
  }
  await withTimeout(ended, 5000, 'the server to close');
  return reader;
}

forEachEngine('WebSocket framing, generated', () => {
  it('answers every message whole and every ping, and the first text that is not UTF-8 with 1007', async () => {
    const running = await startServer({ websocket: true });
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.array(message, { maxLength: 6 }),
          fc.array(fc.nat(), { maxLength: 6 }),
          async (messages, splits) => {
            const reader = await converse(running.port, messages, splits);
            const firstBad = messages.findIndex((m) => m.text && !validUtf8(m.payload));
            const answered = firstBad < 0 ? messages : messages.slice(0, firstBad);
            const data = reader.frames.filter((f) => f.opcode === 1 || f.opcode === 2);
            assert.deepEqual(
              data.map((f) => ({ text: f.opcode === 1, payload: f.payload.toString('hex'), fin: f.fin })),
              answered.map((m) => ({ text: m.text, payload: m.payload.toString('hex'), fin: true })),
            );
            const close = reader.frames.find((f) => f.opcode === 8);
            assert.ok(close, 'a close frame');
            assert.equal(close.payload.readUInt16BE(0), firstBad < 0 ? 1000 : 1007);
            // Pongs answer pings in order, up to where reading stopped.
            const pongs = reader.frames.filter((f) => f.opcode === 10).map((f) => f.payload.toString());
            assert.ok(
              pongs.every((pong, i) => pong === `ping ${i}`),
              `pongs in order: ${pongs.join(', ')}`,
            );
          },
        ),
        { numRuns: Number(process.env['ECHOPLEX_RUNS'] ?? 60) },
      );
    } finally {
      await running.close();
    }
  });
});
