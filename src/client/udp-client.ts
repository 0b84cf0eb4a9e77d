// The client over UDP: each line goes out as one datagram, each reply datagram is printed.

import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';
import readline from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { ConnectError, describeSocketError } from '../core/errors.js';
import { formatHostPort } from '../core/address.js';
import { MAX_UDP_PAYLOAD } from '../protocol/transports.js';

/** The most an IPv6 UDP datagram carries (65,535 less the 8-byte UDP header). */
const MAX_UDP6_PAYLOAD = 65_527;

export interface UdpClientOptions {
  host: string;
  port: number;
  input: Readable;
  output: Writable;
  interactive: boolean;
  prompt: string;
  /** How long to wait for each reply before saying none came. Default 5 s. */
  replyTimeoutMs?: number;
}

/**
 * Sends each input line (without its newline) as a datagram and waits for its reply, one at a
 * time, so replies print in order. UDP promises nothing: a lost reply is reported and skipped.
 * A datagram carries nothing that says which line it answers: once a wait has ended without a
 * reply, the next reply may be that line's, come late, and is printed with a note saying so.
 */
export async function runUdpClient(options: UdpClientOptions): Promise<void> {
  const { host, port, input, output, interactive, prompt } = options;
  const timeoutMs = options.replyTimeoutMs ?? 5000;
  const socket = dgram.createSocket(isIPv6(host) ? 'udp6' : 'udp4');
  const where = formatHostPort(host, port);
  let lines: readline.Interface | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('error', (err) =>
        reject(new ConnectError(`cannot reach ${where} by UDP: ${describeSocketError(err)}`, err)),
      );
      socket.connect(port, host, resolve);
    });
    const replies: Buffer[] = [];
    let waiting: ((reply: Buffer | undefined) => void) | undefined;
    let lastError: Error | undefined;
    socket.on('message', (message) => {
      if (waiting) waiting(message);
      else replies.push(message);
    });
    // A connected UDP socket learns of a closed port (ICMP port unreachable) as ECONNREFUSED.
    socket.on('error', (err) => {
      lastError = err;
      waiting?.(undefined);
    });
    const nextReply = () =>
      new Promise<Buffer | undefined>((resolve) => {
        const queued = replies.shift();
        if (queued) return resolve(queued);
        const timer = setTimeout(() => finish(undefined), timeoutMs);
        const finish = (reply: Buffer | undefined) => {
          clearTimeout(timer);
          waiting = undefined;
          resolve(reply);
        };
        waiting = finish;
      });

    lines = readline.createInterface({
      input,
      ...(interactive && { output, prompt, terminal: Boolean((input as { isTTY?: boolean }).isTTY) }),
    });
    if (interactive) lines.prompt();
    // Lines whose wait ended without a reply: a reply may still come for each.
    let unanswered = 0;
    let sent = 0;
    let missing = 0;
    for await (const line of lines) {
      const datagram = Buffer.from(line);
      const most = isIPv6(host) ? MAX_UDP6_PAYLOAD : MAX_UDP_PAYLOAD;
      if (datagram.length > most) {
        throw new ConnectError(
          `line ${sent + 1} is ${datagram.length.toLocaleString('en-US')} bytes, more than one UDP datagram holds (${most.toLocaleString('en-US')}): it was not sent`,
        );
      }
      sent++;
      socket.send(datagram, (err) => {
        if (err) {
          lastError = err;
          waiting?.(undefined);
        }
      });
      const reply = await nextReply();
      if (reply !== undefined) {
        if (unanswered > 0) {
          unanswered--;
          process.stderr.write('(this may be the late reply to an earlier line)\n');
        }
        output.write(Buffer.concat([reply, Buffer.from('\n')]));
      } else if (lastError !== undefined) {
        throw new ConnectError(`cannot reach ${where} by UDP: ${describeSocketError(lastError)}`, lastError);
      } else {
        unanswered++;
        missing++;
        process.stderr.write(`(no reply from ${where} within ${timeoutMs / 1000}s)\n`);
      }
      if (interactive) lines.prompt();
    }
    // A late reply answers a line that was counted missing.
    missing -= Math.min(missing, replies.length);
    if (missing > 0) throw new ConnectError(`no reply came to ${missing} of ${sent} ${sent === 1 ? 'line' : 'lines'}`);
  } finally {
    // Leaving the loop early does not release a terminal's stdin: without this, a client that
    // has failed would wait for one more line (or Ctrl-D) before it exits.
    lines?.close();
    socket.close();
  }
}
