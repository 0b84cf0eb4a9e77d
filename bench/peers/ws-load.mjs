// A bare `ws` client loop, the reference load for `echoplex bench` over WebSocket in bench/peers
// (no WebSocket load generator is packaged for this machine): CONNECTIONS clients each send a
// SIZE-byte binary message, wait for its echo, check it, and send the next.
// Usage: node ws-load.mjs URL CONNECTIONS SIZE DURATION WARMUP  -> one JSON line (with its own
// CPU per reply over the measured window, as echoplex bench reports its own)
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { WebSocket } from 'ws';

const [url, connections, size, duration, warmup] = [process.argv[2], ...process.argv.slice(3, 7).map(Number)];
const payload = randomBytes(size);
const latencies = [];
let measuring = false;
let replies = 0;
let errors = 0;

function client() {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    let sentAt = 0;
    const send = () => {
      sentAt = performance.now();
      ws.send(payload, { binary: true });
    };
    ws.on('open', () => {
      resolve(ws);
      send();
    });
    ws.on('message', (data) => {
      if (!payload.equals(data)) errors++;
      if (measuring) {
        replies++;
        if (latencies.length < 1_000_000) latencies.push(performance.now() - sentAt);
      }
      send();
    });
    ws.on('error', () => errors++);
  });
}

const sockets = await Promise.all(Array.from({ length: connections }, client));
await new Promise((resolve) => setTimeout(resolve, warmup * 1000));
measuring = true;
const start = performance.now();
const cpuBefore = process.cpuUsage();
await new Promise((resolve) => setTimeout(resolve, duration * 1000));
measuring = false;
const cpu = process.cpuUsage(cpuBefore);
const seconds = (performance.now() - start) / 1000;
for (const ws of sockets) ws.terminate();
latencies.sort((a, b) => a - b);
const at = (q) => Math.round((latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0) * 1000);
const loadCpuUsPerMessage = (cpu.user + cpu.system) / Math.max(1, replies);
console.log(
  JSON.stringify({
    messagesPerSecond: replies / seconds,
    messagesTotal: replies,
    p50Us: at(0.5),
    p99Us: at(0.99),
    errors,
    loadCpuUsPerMessage,
  }),
);
