// How a WebSocket connection's end is told, on either engine: close codes, protocol errors, counters and log lines.

import type { ConnectionContext } from './connection.js';

/** The close code sent at a graceful close: the server is going away. */
export const GOING_AWAY = 1001;
/** How long a close frame the server sent, once out, waits for the client's before the connection is dropped. */
export const CLOSE_WAIT_MS = 1000;

/**
 * The close code for each protocol error (RFC 6455 7.4.1), by the `ws` library's error codes:
 * 1009 for a message over --max-message, 1007 for text that is not UTF-8, 1002 for every other breach.
 */
export function closeCodeFor(errorCode: string | undefined): number {
  if (errorCode === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' || errorCode === 'WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH')
    return 1009;
  if (errorCode === 'WS_ERR_INVALID_UTF8') return 1007;
  return 1002;
}

/**
 * The native engine's protocol errors (native/websocket.h, ws_error_t), as the `ws` library
 * names and words the same breaches: the logs read alike on both engines.
 */
export const NATIVE_PROTOCOL_ERRORS: Readonly<Record<number, { code: string; message: string }>> = {
  1: { code: 'WS_ERR_UNEXPECTED_RSV_1', message: 'Invalid WebSocket frame: RSV1 must be clear' },
  2: { code: 'WS_ERR_EXPECTED_MASK', message: 'Invalid WebSocket frame: MASK must be set' },
  3: { code: 'WS_ERR_INVALID_OPCODE', message: 'Invalid WebSocket frame: invalid opcode' },
  4: { code: 'WS_ERR_EXPECTED_FIN', message: 'Invalid WebSocket frame: FIN must be set' },
  5: {
    code: 'WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH',
    message: 'Invalid WebSocket frame: invalid payload length (a control frame over 125 bytes)',
  },
  6: {
    code: 'WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH',
    message: 'Unsupported WebSocket frame: payload length > 2^63 - 1',
  },
  7: { code: 'WS_ERR_INVALID_OPCODE', message: 'Invalid WebSocket frame: a new message before the last one ended' },
  8: { code: 'WS_ERR_INVALID_OPCODE', message: 'Invalid WebSocket frame: a continuation with no message to continue' },
  9: { code: 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH', message: 'Max payload size exceeded' },
  10: { code: 'WS_ERR_INVALID_UTF8', message: 'Invalid WebSocket frame: invalid UTF-8 sequence' },
  11: { code: 'WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH', message: 'Invalid WebSocket frame: invalid payload length 1' },
  12: { code: 'WS_ERR_INVALID_CLOSE_CODE', message: 'Invalid WebSocket frame: invalid status code' },
};

/** Counts and logs a client's breach of the protocol, answered with `closeCode`; returns the close reason. */
export function reportProtocolError(
  context: ConnectionContext,
  id: number,
  peer: string,
  code: string | undefined,
  message: string,
  closeCode: number,
): string {
  context.stats.errors.websocket++;
  context.log.warn(
    { event: 'error', kind: 'websocket', conn: id, peer, code, closeCode, err: message },
    `WebSocket error from ${peer} (#${id}), closing it with ${closeCode}: ${message}`,
  );
  return `closed with code ${closeCode}: ${message}`;
}

/**
 * Counts the close code that ended a connection (the one this side sent first, else the
 * client's; 1006 for none) and returns the close reason for its log line.
 */
export function countClose(
  context: ConnectionContext,
  sentCode: number | undefined,
  code: number,
  reason: string,
): string {
  const counted = sentCode ?? code;
  const closes = context.stats.wsCloses;
  closes[counted] = (closes[counted] ?? 0) + 1;
  if (sentCode !== undefined) return `closed with code ${sentCode}`;
  if (code === 1006) return 'closed without a close frame (1006)';
  return `closed by the client with code ${code}${reason.length > 0 ? ` (${reason})` : ''}`;
}
