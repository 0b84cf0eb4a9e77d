// The live status page on the metrics port: one sample of the counters per second, kept for
// five minutes and streamed to open pages as server-sent events.

import type { ServerResponse } from 'node:http';
import type { ServerStats } from '../server/stats.js';

/** One second's reading. Counters are running totals; the page turns them into rates. */
export interface StatusSample {
  /** Milliseconds since the epoch. */
  t: number;
  connections: number;
  bytesReceived: number;
  bytesSent: number;
  messages: number;
  errors: number;
  /** Connections the peer reset: counted in /metrics (errors_total{kind="reset"}), shown apart from errors. */
  resets: number;
  rejected: number;
}

const SAMPLE_MS = 1000;
const HISTORY_SAMPLES = 300;
const sum = (counts: Record<string, number>) => Object.values(counts).reduce((a, b) => a + b, 0);

export function sampleOf(stats: ServerStats, t: number): StatusSample {
  return {
    t,
    connections: stats.connectionsActive,
    bytesReceived: stats.bytesReceived,
    bytesSent: stats.bytesSent,
    messages: sum(stats.messages),
    // Resets are a peer's ordinary way of leaving, not something an operator must look at.
    errors: sum(stats.errors) - stats.errors.reset,
    resets: stats.errors.reset,
    rejected: sum(stats.rejected),
  };
}

/** Samples the counters while started, and fans each sample out to the pages listening. */
export class StatusFeed {
  readonly #read: () => Promise<ServerStats>;
  readonly #history: StatusSample[] = [];
  readonly #subscribers = new Set<ServerResponse>();
  #timer: NodeJS.Timeout | undefined;
  #sampling = false;

  constructor(source: { stats(): Promise<ServerStats> }) {
    this.#read = () => source.stats();
  }

  start(): void {
    void this.#sample();
    this.#timer = setInterval(() => void this.#sample(), SAMPLE_MS);
    // The page is a window on the server, never a reason to keep the process alive.
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    for (const response of this.#subscribers) response.end();
    this.#subscribers.clear();
  }

  /** Starts an event stream: the history so far as one `history` event, then a message per sample. */
  subscribe(response: ServerResponse): void {
    response.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-store',
      connection: 'keep-alive',
    });
    response.write(`retry: 2000\nevent: history\ndata: ${JSON.stringify(this.#history)}\n\n`);
    this.#subscribers.add(response);
    response.on('close', () => this.#subscribers.delete(response));
  }

  async #sample(): Promise<void> {
    // A slow reading (workers that take long to answer) is skipped, not queued.
    if (this.#sampling) return;
    this.#sampling = true;
    try {
      const sample = sampleOf(await this.#read(), Date.now());
      this.#history.push(sample);
      if (this.#history.length > HISTORY_SAMPLES) this.#history.shift();
      const event = `data: ${JSON.stringify(sample)}\n\n`;
      for (const response of this.#subscribers) response.write(event);
    } catch {
      // A worker that died mid-reading: the next second's sample will tell.
    } finally {
      this.#sampling = false;
    }
  }
}

/** The page: no external assets; the charts are SVG drawn by the inline script. */
export const STATUS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>echoplex status</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1d2230; background: #f7f8fa; }
  h1 { font-size: 1.3rem; margin: 0 0 .2rem; }
  .sub { color: #5b6476; margin-bottom: 1rem; }
  .tiles { display: flex; gap: 1rem; flex-wrap: wrap; margin-bottom: 1rem; }
  .tile { background: #fff; border: 1px solid #dde1e8; border-radius: 6px; padding: .6rem 1rem; min-width: 8rem; flex: 1; }
  .tile .label { color: #5b6476; font-size: .8rem; text-transform: uppercase; letter-spacing: .04em; }
  .tile .value { font-size: 1.6rem; font-variant-numeric: tabular-nums; }
  .chart { background: #fff; border: 1px solid #dde1e8; border-radius: 6px; padding: .6rem 1rem; margin-bottom: 1rem; }
  .chart h2 { font-size: .9rem; margin: 0 0 .3rem; font-weight: 600; }
  svg { width: 100%; height: 120px; display: block; }
  .line { fill: none; stroke-width: 2; }
  .axis { stroke: #dde1e8; }
  .max { color: #5b6476; font-weight: normal; font-size: .8rem; }
  #state.down { color: #b3261e; }
</style>
</head>
<body>
<h1>echoplex</h1>
<div class="sub">live, one sample per second; each chart shows the last minute, growing to the last five &middot; <span id="state">connecting&hellip;</span></div>
<div class="tiles">
  <div class="tile"><div class="label">connections</div><div class="value" id="connections">&ndash;</div></div>
  <div class="tile"><div class="label">received /s</div><div class="value" id="throughput">&ndash;</div></div>
  <div class="tile"><div class="label">sent /s</div><div class="value" id="sent">&ndash;</div></div>
  <div class="tile"><div class="label" id="messages-label">messages /s</div><div class="value" id="messages" title="Lines in line mode, UDP datagrams and WebSocket messages; a raw TCP stream has no messages, only bytes (received /s)">&ndash;</div></div>
  <div class="tile"><div class="label">errors (total)</div><div class="value" id="errors" title="Every errors_total kind but reset: a peer that resets is leaving, not failing">&ndash;</div></div>
  <div class="tile"><div class="label">resets by peers (total)</div><div class="value" id="resets" title="errors_total{kind=&quot;reset&quot;} in /metrics">&ndash;</div></div>
  <div class="tile"><div class="label">rejected (total)</div><div class="value" id="rejected">&ndash;</div></div>
</div>
<div class="chart"><h2>connections open <span class="max" id="max-connections"></span></h2><svg id="chart-connections" viewBox="0 0 600 120" preserveAspectRatio="none"></svg></div>
<div class="chart"><h2>bytes received per second <span class="max" id="max-throughput"></span></h2><svg id="chart-throughput" viewBox="0 0 600 120" preserveAspectRatio="none"></svg></div>
<div class="chart"><h2>errors per second <span class="max" id="max-errors"></span></h2><svg id="chart-errors" viewBox="0 0 600 120" preserveAspectRatio="none"></svg></div>
<script>
"use strict";
const WINDOW = 300;
const samples = [];
const $ = (id) => document.getElementById(id);
function bytes(n) {
  const units = ["B", "KB", "MB", "GB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return (i === 0 ? String(Math.round(n)) : n.toFixed(1)) + " " + units[i];
}
function rates(key) {
  const out = [];
  for (let i = 1; i < samples.length; i++) {
    const dt = (samples[i].t - samples[i - 1].t) / 1000 || 1;
    out.push(Math.max(0, (samples[i][key] - samples[i - 1][key]) / dt));
  }
  return out;
}
// The time axis spans at least a minute and grows to five, newest sample at the right edge.
function draw(name, values, color, format) {
  // The scale is at least 1 so that a flat zero lies on the axis; the label says the real top.
  const top = Math.max(0, ...values);
  const max = Math.max(1, top);
  const span = Math.min(WINDOW, Math.max(60, values.length));
  const step = 600 / (span - 1);
  const offset = 600 - (values.length - 1) * step;
  const points = values.map((v, i) => (offset + i * step).toFixed(1) + "," + (115 - (v / max) * 105).toFixed(1)).join(" ");
  $("chart-" + name).innerHTML = '<line class="axis" x1="0" y1="115" x2="600" y2="115"/>' +
    (values.length > 1 ? '<polyline class="line" stroke="' + color + '" points="' + points + '"/>' : "");
  $("max-" + name).textContent = "(top: " + format(top) + ", last " + span + " s)";
}
function render() {
  const last = samples[samples.length - 1];
  if (!last) return;
  const received = rates("bytesReceived");
  const sent = rates("bytesSent");
  const messages = rates("messages");
  $("connections").textContent = last.connections.toLocaleString("en-US");
  $("throughput").textContent = bytes(received[received.length - 1] || 0);
  $("sent").textContent = bytes(sent[sent.length - 1] || 0);
  $("messages").textContent = Math.round(messages[messages.length - 1] || 0).toLocaleString("en-US");
  $("errors").textContent = last.errors.toLocaleString("en-US");
  $("resets").textContent = (last.resets ?? 0).toLocaleString("en-US");
  $("rejected").textContent = last.rejected.toLocaleString("en-US");
  draw("connections", samples.map((s) => s.connections), "#3367d6", (v) => String(Math.round(v)));
  draw("throughput", received, "#188038", (v) => bytes(v) + "/s");
  draw("errors", rates("errors"), "#b3261e", (v) => v.toFixed(v < 10 ? 1 : 0) + "/s");
}
function add(sample) {
  samples.push(sample);
  if (samples.length > WINDOW) samples.shift();
}
const events = new EventSource("events");
events.addEventListener("history", (e) => { samples.length = 0; JSON.parse(e.data).forEach(add); render(); });
events.onmessage = (e) => { add(JSON.parse(e.data)); render(); };
events.onopen = () => { $("state").textContent = "live"; $("state").className = ""; };
events.onerror = () => { $("state").textContent = "disconnected, retrying"; $("state").className = "down"; };
</script>
</body>
</html>
`;
