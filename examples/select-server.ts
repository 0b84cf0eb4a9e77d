// The seed's select() server (port 9999), ported statement by statement to echoplex/selectors.
// It queues what each client sends and answers it uppercased. Fixes are marked "seed flaw:".
// Run: npm run select-server -- [port]

import { select, socket, BlockingIOError, OSError, type Address, type Socket } from 'echoplex/selectors';
import { portArgument, print, upper } from './lib/python.js';

// seed flaw: nothing bounded a client that sends but never reads. Past this many queued bytes
// we stop reading it (drop it from inputs) until its queue drains.
const MAX_QUEUED_BYTES = 1024 * 1024;

const server = socket();
server.setblocking(false);
server.bind(['localhost', portArgument(9999)]);
await server.listen(5);
const inputs: Socket[] = [server];
const outputs: Socket[] = [];
const message_queues = new Map<Socket, Buffer[]>();
// seed flaw: r.getpeername() on a socket that was just reset raises and kills the server.
// The address is remembered at accept time instead.
const peers = new Map<Socket, Address>();
// seed flaw: on EOF the seed dropped the queue, losing replies a half-closed client still waits for.
const closing = new Set<Socket>();

function queuedBytes(queue: Buffer[]): number {
  return queue.reduce((sum, chunk) => sum + chunk.length, 0);
}

function forget(conn: Socket): void {
  remove(inputs, conn);
  remove(outputs, conn);
  message_queues.delete(conn);
  peers.delete(conn);
  closing.delete(conn);
  conn.close();
}

function remove(list: Socket[], item: Socket): void {
  const index = list.indexOf(item);
  if (index >= 0) list.splice(index, 1);
}

for (;;) {
  const [rlist, wlist, elist] = await select(inputs, outputs, inputs);
  for (const r of rlist) {
    if (r === server) {
      // seed flaw: one accept() per select() pass leaves a burst of new clients waiting behind
      // every established one (seconds, with a thousand clients); take all that are waiting.
      for (;;) {
        let accepted: [Socket, Address];
        try {
          accepted = r.accept();
        } catch (err) {
          if (err instanceof BlockingIOError) break;
          throw err;
        }
        const [conn, client_addr] = accepted;
        print('new connection from', `('${client_addr[0]}', ${client_addr[1]})`);
        conn.setblocking(false);
        inputs.push(conn);
        message_queues.set(conn, []);
        peers.set(conn, client_addr);
      }
    } else {
      // seed flaw: a socket dropped earlier in this same pass raised KeyError; skip it.
      const queue = message_queues.get(r);
      if (queue === undefined) continue;
      try {
        const data = r.recv(1024);
        if (data.length > 0) {
          // The seed: print("收到来自[%s]的数据:" % r.getpeername()[0], data)
          print(`received from [${peers.get(r)![0]}]:`, data);
          queue.push(data);
          if (!outputs.includes(r)) outputs.push(r);
          if (queuedBytes(queue) > MAX_QUEUED_BYTES) remove(inputs, r);
        } else {
          // The seed: print('客户端断开了')
          print('client disconnected');
          remove(inputs, r);
          if (queue.length === 0) forget(r);
          else closing.add(r);
        }
      } catch (err) {
        if (!(err instanceof OSError)) throw err; // ConnectionResetError and its kin
        // The seed: print("客户端异常断开了", r)
        print('client disconnected abnormally', r);
        forget(r);
      }
    }
  }
  for (const w of wlist) {
    const queue = message_queues.get(w);
    if (queue === undefined) continue;
    const next_msg = queue.shift();
    if (next_msg === undefined) {
      remove(outputs, w);
      continue;
    }
    try {
      // seed flaw: w.send() may take only part of the message; the rest goes back to the front.
      const reply = upper(next_msg);
      const sent = w.send(reply);
      if (sent < reply.length) queue.unshift(next_msg.subarray(sent));
    } catch (err) {
      // The seed: print('客户端异常断开了', w)
      print('client disconnected abnormally', w);
      forget(w);
      continue;
    }
    if (queue.length === 0 && closing.has(w)) forget(w);
    else if (!closing.has(w) && !inputs.includes(w) && queuedBytes(queue) <= MAX_QUEUED_BYTES / 2) inputs.push(w);
  }
  for (const e of elist) {
    // seed flaw: getpeername() after close() raised; report first, from the remembered address.
    if (!message_queues.has(e)) continue;
    print('Error occured in ', peers.get(e));
    forget(e);
  }
}
