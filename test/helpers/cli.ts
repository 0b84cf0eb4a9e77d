// Runs the built CLI as a user would: a real child process, its stdout, stderr and exit status.

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { withTimeout } from './timeout.js';

export const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

interface CliOptions {
  ms?: number;
  env?: NodeJS.ProcessEnv;
  /** Runs the CLI under this command, e.g. `['prlimit', '--nofile=256']`. */
  wrapper?: string[];
  /** Another copy of the CLI's main.js to run. */
  cli?: string;
}

/** Runs `echoplex ...args` to completion, feeding `input` on stdin and then closing it. */
export async function runCli(
  args: string[],
  options: CliOptions & { input?: string | Buffer } = {},
): Promise<CliResult> {
  const { child, result } = spawnCli(args, options);
  child.stdin!.end(options.input);
  return result;
}

/** Starts `echoplex ...args` with stdin left open for the caller; `result` settles on exit. */
export function spawnCli(
  args: string[],
  options: CliOptions = {},
): { child: ChildProcess; result: Promise<CliResult> } {
  const command = [...(options.wrapper ?? []), process.execPath, options.cli ?? CLI, ...args];
  const child = spawn(command[0]!, command.slice(1), {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, ...options.env },
  });
  child.stdin!.on('error', () => {});
  return { child, result: collect(child, options.ms ?? 15_000, `echoplex ${args.join(' ')}`) };
}

async function collect(child: ChildProcess, ms: number, what: string): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr?.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  try {
    const [code, signal] = (await withTimeout(once(child, 'exit'), ms, `${what} to exit`)) as [
      number | null,
      NodeJS.Signals | null,
    ];
    return { code, signal, stdout, stderr };
  } catch (err) {
    child.kill('SIGKILL');
    throw new Error(`${(err as Error).message}\nstdout: ${stdout}\nstderr: ${stderr}`);
  }
}

export interface ServeProcess {
  child: ChildProcess;
  port: number;
  /** Everything the server wrote to stderr so far. */
  stderr(): string;
  /** Everything the server wrote to stdout so far (the listening line). */
  stdout(): string;
  /** Waits for the server to exit on its own. */
  exited(ms?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Sends a signal (unless it already exited) and waits for the exit status. */
  stop(signal?: NodeJS.Signals, ms?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `echoplex serve --port 0 ...args` and waits for its listening line. */
export async function startServe(
  args: string[] = [],
  options: { command?: string[]; env?: NodeJS.ProcessEnv } = {},
): Promise<ServeProcess> {
  const command = options.command ?? [process.execPath, CLI];
  const child = spawn(command[0]!, [...command.slice(1), 'serve', '--port', '0', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...options.env },
  });
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  let stdout = '';
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const port = await withTimeout(
    new Promise<number>((resolve, reject) => {
      child.stdout!.setEncoding('utf8').on('data', (s: string) => {
        stdout += s;
        const match = /listening on (?:tcp|tls|ws|wss):\/\/[^ ]*:(\d+)/.exec(stdout);
        if (match) resolve(Number(match[1]));
      });
      child.once('exit', (code) => reject(new Error(`server exited (${code}) before listening: ${stderr}`)));
    }),
    10_000,
    'the server to listen',
  ).catch((err: Error) => {
    // One that never listens would otherwise outlive the test and keep its file's run from ending.
    child.kill('SIGKILL');
    throw err;
  });
  return {
    child,
    port,
    stderr: () => stderr,
    stdout: () => stdout,
    exited: async (ms = 15_000) => {
      const [code, sig] = await withTimeout(exited, ms, 'the server to exit');
      return { code, signal: sig };
    },
    stop: async (signal = 'SIGTERM', ms = 15_000) => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const [code, sig] = await withTimeout(exited, ms, 'the server to exit').catch((err: Error) => {
        child.kill('SIGKILL');
        throw err;
      });
      return { code, signal: sig };
    },
  };
}
