#!/usr/bin/env node
// The `echoplex` command: subcommands, and one place that turns errors into exit statuses.

import cluster from 'node:cluster';
import { Command, CommanderError, Help, type Option } from 'commander';
import { EchoplexError, UsageError, WorkerStartError } from '../core/errors.js';
import { VERSION } from '../core/version.js';
import { benchCommand } from './bench.js';
import { readBooleanVariables, unknownVariableWarnings } from './environment.js';
import { clientCommand } from './client.js';
import { pingCommand } from './ping.js';
import { serveCommand } from './serve.js';

const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;

/**
 * Help text without "(default: false)" on every flag that is off unless given, nor
 * "(default: [])" on a repeatable one given none.
 */
function optionDescription(this: Help, option: Option): string {
  const nothing =
    (option.isBoolean() && option.defaultValue === false) ||
    (Array.isArray(option.defaultValue) && option.defaultValue.length === 0);
  const shown = nothing
    ? Object.assign(Object.create(Object.getPrototypeOf(option) as object) as Option, option, {
        defaultValue: undefined,
      })
    : option;
  return Help.prototype.optionDescription.call(this, shown);
}

/** commander's own messages (an unknown option, a bad value) say who is speaking, as ours do. */
const OUTPUT = { outputError: (text: string, write: (text: string) => void) => write(`echoplex: ${text}`) };

function program(): Command {
  const root = new Command('echoplex')
    .description('event-driven TCP echo server, client, ping and verifying load generator')
    .version(VERSION, '-V, --version', 'print the version and exit')
    .showHelpAfterError('(run with --help for usage)')
    .enablePositionalOptions()
    .addCommand(serveCommand())
    .addCommand(clientCommand())
    .addCommand(benchCommand())
    .addCommand(pingCommand());
  // Usage errors exit 2, like other Unix tools; commander would exit 1.
  root.exitOverride().configureOutput(OUTPUT);
  const overrideAll = (command: Command): void => {
    readBooleanVariables(command.exitOverride()).configureHelp({ optionDescription }).configureOutput(OUTPUT);
    command.commands.forEach(overrideAll);
  };
  root.commands.forEach(overrideAll);
  return root;
}

// `echoplex ping | head -1`: once the reader has gone, there is no one to write for. Stop quietly,
// as Unix tools do, instead of dying on an unhandled EPIPE.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
}

async function main(argv: string[]): Promise<void> {
  try {
    const root = program();
    // Workers inherit the primary's environment: the primary has said it once.
    if (!cluster.isWorker) for (const warning of unknownVariableWarnings(root)) process.stderr.write(`${warning}\n`);
    await root.parseAsync(argv);
  } catch (err) {
    process.exitCode = exitStatus(err);
    // A worker that failed to start must end, for its primary to stop with its status: the
    // channel to the primary would keep it alive. (The worker's own disconnect: cluster takes
    // process.disconnect() for a lost primary and exits 0.)
    if (cluster.isWorker) cluster.worker?.disconnect();
  }
}

function exitStatus(err: unknown): number {
  if (err instanceof CommanderError) {
    // commander has already printed its message (or the help text, for exit code 0).
    return err.exitCode === 0 ? 0 : EXIT_USAGE;
  }
  if (err instanceof UsageError) {
    process.stderr.write(`echoplex: error: ${err.message}\n`);
    return EXIT_USAGE;
  }
  if (err instanceof WorkerStartError) {
    process.stderr.write(`echoplex: ${err.message}\n`);
    return err.exitStatus;
  }
  if (err instanceof EchoplexError) {
    process.stderr.write(`echoplex: ${err.message}\n`);
    return EXIT_FAILURE;
  }
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`echoplex: unexpected error: ${message}\n`);
  if (process.env['ECHOPLEX_DEBUG'] && err instanceof Error) process.stderr.write(`${err.stack}\n`);
  return EXIT_FAILURE;
}

await main(process.argv);
