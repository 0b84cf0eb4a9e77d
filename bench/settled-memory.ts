// Resident memory once it has settled: VmRSS sampled until it stops falling, with V8 asked for full collections through its inspector.

import { readdirSync, readFileSync } from 'node:fs';
import { WebSocket } from 'ws';

/** The processes whose parent is `pid` (a server's workers), from /proc. */
export function childrenOf(pid: number): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((entry) => {
      try {
        // The parent is the second field after the command, which may hold spaces: read from its ')'.
        return readFileSync(`/proc/${entry}/stat`, 'utf8').split(') ')[1]?.split(' ')[1] === String(pid);
      } catch {
        return false;
      }
    })
    .map(Number)
    .sort((a, b) => a - b);
}

export function rssKb(pid: number): number {
  return Number(/^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
}

/**
 * VmRSS once it has stopped falling: sampled each second for at least `leastSeconds`, then until
 * five pass without a drop of 0.5%, for at most 45 s. With `collect`, a full collection is asked
 * for before every sample: V8 gives back the pages of a heap that grew while the connections
 * arrived over several collections, not at the first (seen here: heapTotal 47 MiB after the
 * first, 11 MiB after a few more, with heapUsed unchanged).
 */
export async function settledRssKb(
  pid: number,
  leastSeconds: number,
  collect: (() => Promise<void>) | undefined,
): Promise<number> {
  await collect?.();
  const samples = [rssKb(pid)];
  for (let second = 1; second <= 45; second++) {
    await new Promise((resolve) => setTimeout(resolve, 1000));
    await collect?.();
    samples.push(rssKb(pid));
    const recent = samples.slice(-6);
    if (second >= leastSeconds && recent.length === 6 && recent[5]! >= recent[0]! * 0.995) break;
  }
  return samples[samples.length - 1]!;
}

/** The inspector's WebSocket URL a Node.js peer printed, once it has. */
export async function inspectorUrl(stderr: () => string): Promise<string> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const match = /Debugger listening on (ws:\/\/\S+)/.exec(stderr());
    if (match) return match[1]!;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`no inspector URL in the peer's stderr: ${stderr()}`);
}

/** What the bench scripts ask of a Node.js peer through its inspector. */
export interface Inspector {
  /** A full, shrinking collection. */
  collect(): Promise<void>;
  /**
   * The resident KB of V8's young generation: V8 sizes it by how much survives its scavenges,
   * anywhere up to its limit (16 MiB of pages in these runs), whatever the number of connections.
   */
  youngGenerationKb(): Promise<number>;
}

/** A session with the inspector at `url` (the peer runs with --expose-gc). */
export async function inspector(url: string): Promise<Inspector> {
  const ws = new WebSocket(url);
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  ws.on('error', () => {});
  let id = 0;
  const evaluate = (expression: string): Promise<unknown> => {
    id++;
    const asked = id;
    const done = new Promise<unknown>((resolve, reject) => {
      const onMessage = (data: Buffer) => {
        const reply = JSON.parse(data.toString()) as {
          id?: number;
          error?: unknown;
          result?: { exceptionDetails?: unknown; result?: { value?: unknown } };
        };
        if (reply.id !== asked) return;
        ws.off('message', onMessage);
        if (reply.error !== undefined || reply.result?.exceptionDetails !== undefined)
          reject(new Error(`${expression} failed: ${data.toString()}`));
        else resolve(reply.result?.result?.value);
      };
      ws.on('message', onMessage);
    });
    // The console's command-line API gives `require` in an ES module's process too.
    const params = { expression, includeCommandLineAPI: true, returnByValue: true };
    ws.send(JSON.stringify({ id, method: 'Runtime.evaluate', params }));
    return done;
  };
  return {
    collect: async () => {
      await evaluate("gc({ type: 'major', execution: 'sync', flavor: 'last-resort' })");
    },
    youngGenerationKb: async () =>
      Number(
        await evaluate(
          "require('v8').getHeapSpaceStatistics().filter((space) => space.space_name === 'new_space' || space.space_name === 'new_large_object_space').reduce((sum, space) => sum + space.physical_space_size, 0) / 1024",
        ),
      ),
  };
}

/** Resident KB by kind of mapping: the main thread's malloc heap (`[heap]`), other anonymous memory (V8's heap, thread arenas, large blocks), and files. */
export function residentParts(pid: number): { malloc: number; anonymous: number; files: number } {
  const parts = { malloc: 0, anonymous: 0, files: 0 };
  let part: keyof typeof parts | undefined;
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const mapping = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (mapping) {
      const name = mapping[1]!;
      part = name === '[heap]' ? 'malloc' : name === '' ? 'anonymous' : name.startsWith('/') ? 'files' : undefined;
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss && part !== undefined) parts[part] += Number(rss[1]);
  }
  return parts;
}
