// A logger that keeps every event, for tests that check what the server reported.

import type { Logger, LogFields } from '../../src/index.js';

export interface LoggedEvent {
  level: 'debug' | 'info' | 'warn' | 'error';
  fields: LogFields;
  message: string;
}

const LEVELS: ReadonlyArray<LoggedEvent['level']> = ['debug', 'info', 'warn', 'error'];

/** Records every event at `least` and above (default: all of them). */
export function recordingLogger(
  least: LoggedEvent['level'] = 'debug',
): Logger & { events: LoggedEvent[]; messages(): string[] } {
  const events: LoggedEvent[] = [];
  const record = (level: LoggedEvent['level']) => (fields: LogFields, message: string) =>
    void events.push({ level, fields, message });
  return {
    events,
    messages: () => events.map((event) => event.message),
    debug: record('debug'),
    info: record('info'),
    warn: record('warn'),
    error: record('error'),
    isLevelEnabled: (level) => LEVELS.indexOf(level as LoggedEvent['level']) >= LEVELS.indexOf(least),
  };
}
