// Starts the ported examples and the seed's Python servers on a free port, and stops them.

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { seedProgram } from './seed.js';
import { withTimeout } from './timeout.js';
import { freePort, waitForPort } from '../../bench/peers.js';

export { freePort };

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface Program {
  child: ChildProcess;
  port: number;
  output(): string;
  stop(): Promise<void>;
}

async function start(command: string, args: string[], port: number, env: NodeJS.ProcessEnv = {}): Promise<Program> {
  // Python holds piped output in blocks until exit; tests read the seed's lines as they come.
  const child = spawn(command, args, {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PYTHONUNBUFFERED: '1', ...env },
  });
  let output = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => (output += s));
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (output += s));
  try {
    await waitForPort(port, child, 20_000);
  } catch (err) {
    child.kill('SIGKILL');
    throw new Error(`${args.join(' ')}: ${(err as Error).message}\n${output}`);
  }
  return {
    child,
    port,
    output: () => output,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await withTimeout(once(child, 'exit'), 5000, 'program exit');
      }
    },
  };
}

/** `examples/NAME.ts PORT`, run with tsx as `npm run NAME` does. */
export function startExample(name: string): Promise<Program> {
  return startTypeScript(`examples/${name}.ts`);
}

/** A TypeScript program (path from the repository root) that takes its port as its first argument, run with tsx. */
export async function startTypeScript(path: string, ...args: string[]): Promise<Program> {
  return startTypeScriptWith({}, path, ...args);
}

/** startTypeScript with more in its environment (ECHOPLEX_ENGINE, say). */
export async function startTypeScriptWith(env: NodeJS.ProcessEnv, path: string, ...args: string[]): Promise<Program> {
  const port = await freePort();
  return start(process.execPath, ['--import', 'tsx', path, String(port), ...args], port, env);
}

export async function startSeed(name: string): Promise<Program> {
  const port = await freePort();
  return start('python3', [seedProgram(`${name}.py`), String(port)], port);
}

/** Runs an example client with `input` on stdin; resolves with its stdout and exit code. */
export async function runExampleClient(
  name: string,
  port: number,
  input: string,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', `examples/${name}.ts`, String(port)], {
    cwd: ROOT,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  child.stdin.end(input);
  try {
    const [code] = (await withTimeout(once(child, 'exit'), 20_000, `${name} to finish`)) as [number | null];
    return { code, stdout, stderr };
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
}
