// The HTTP side of WebSocket (RFC 6455 section 4) for engines that frame in C: a request head and the answer to it, both sides.
//
// The native engine hands the bytes before the upgrade to JavaScript, which reads the request
// here and says what to send: 101 and the accept key, the echo page, or an error status. The
// checks are the ones the `ws` library makes, so both engines accept and refuse the same requests.
// The bench's native engine sends a request written here and hands back the answer to be judged.

import { createHash, randomBytes } from 'node:crypto';

/** Largest request head read, as Node's HTTP parser allows by default. */
export const MAX_REQUEST_HEAD = 16 * 1024;

const ACCEPT_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const KEY_PATTERN = /^[+/0-9A-Za-z]{22}==$/;

export interface RequestHead {
  method: string;
  target: string;
  version: string;
  /** Lower-cased names; repeated fields joined with ", ". */
  headers: Map<string, string>;
}

export type RequestHeadResult =
  | { status: 'incomplete' }
  | { status: 'invalid'; reason: string }
  | { status: 'complete'; head: RequestHead; length: number };

/** Reads one HTTP/1.x request head from the start of `bytes`. */
export function parseRequestHead(bytes: Buffer): RequestHeadResult {
  const end = bytes.indexOf('\r\n\r\n');
  if (end < 0) {
    return bytes.length > MAX_REQUEST_HEAD
      ? { status: 'invalid', reason: `request head over ${MAX_REQUEST_HEAD} bytes` }
      : { status: 'incomplete' };
  }
  if (end > MAX_REQUEST_HEAD) return { status: 'invalid', reason: `request head over ${MAX_REQUEST_HEAD} bytes` };
  const lines = bytes.toString('latin1', 0, end).split('\r\n');
  const request = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+) (\S+) HTTP\/(1\.[01])$/.exec(lines[0] ?? '');
  if (request === null) return { status: 'invalid', reason: 'not an HTTP/1.x request line' };
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0 || /\s/.test(line.slice(0, colon))) return { status: 'invalid', reason: 'a malformed header line' };
    const name = line.slice(0, colon).toLowerCase();
    const value = line.slice(colon + 1).trim();
    const before = headers.get(name);
    headers.set(name, before === undefined ? value : `${before}, ${value}`);
  }
  return {
    status: 'complete',
    head: { method: request[1]!, target: request[2]!, version: request[3]!, headers },
    length: end + 4,
  };
}

/** True when the request asks to become a WebSocket (whether or not it asks well). */
export function wantsUpgrade(head: RequestHead): boolean {
  return head.headers.get('upgrade')?.toLowerCase() === 'websocket';
}

export type UpgradeAnswer = { ok: true; response: Buffer } | { ok: false; response: Buffer; reason: string };

/** The answer to an upgrade request: 101 with the accept key, or 400 saying what is wrong. */
export function answerUpgrade(head: RequestHead): UpgradeAnswer {
  const key = head.headers.get('sec-websocket-key');
  const version = head.headers.get('sec-websocket-version');
  const problem =
    head.method !== 'GET'
      ? 'an upgrade must be a GET'
      : head.version !== '1.1'
        ? 'an upgrade needs HTTP/1.1'
        : key === undefined || !KEY_PATTERN.test(key)
          ? 'missing or invalid Sec-WebSocket-Key header'
          : version !== '13' && version !== '8'
            ? 'missing or invalid Sec-WebSocket-Version header'
            : undefined;
  if (problem !== undefined || key === undefined) {
    const reason = problem ?? 'missing Sec-WebSocket-Key header';
    return { ok: false, response: simpleResponse(400, 'Bad Request', reason), reason };
  }
  const accept = acceptKey(key);
  // As ws does without a handleProtocols option: the client's first subprotocol, if it offers any.
  const protocol = head.headers
    .get('sec-websocket-protocol')
    ?.split(',')
    .map((name) => name.trim())
    .find((name) => name !== '');
  const lines = [
    'HTTP/1.1 101 Switching Protocols',
    'Upgrade: websocket',
    'Connection: Upgrade',
    `Sec-WebSocket-Accept: ${accept}`,
    ...(protocol !== undefined ? [`Sec-WebSocket-Protocol: ${protocol}`] : []),
  ];
  return { ok: true, response: Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1') };
}

/** A short plain-text response that closes the connection. */
export function simpleResponse(
  status: number,
  text: string,
  body: string,
  headers: Record<string, string> = {},
): Buffer {
  return httpResponse(status, text, { ...headers, 'content-type': 'text/plain' }, `${body}\n`);
}

/** A whole response with `Connection: close`: the native engine serves one request before the upgrade, or none. */
export function httpResponse(
  status: number,
  text: string,
  headers: Record<string, string>,
  body: string,
  headOnly = false,
): Buffer {
  const content = Buffer.from(body);
  const fields = Object.entries({ ...headers, 'content-length': String(content.length), connection: 'close' })
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('');
  const head = Buffer.from(`HTTP/1.1 ${status} ${text}\r\n${fields}\r\n`, 'latin1');
  return headOnly ? head : Buffer.concat([head, content]);
}

/** A fresh Sec-WebSocket-Key: 16 random bytes in base64. */
export function newWebSocketKey(): string {
  return randomBytes(16).toString('base64');
}

/** What the server must answer `key` with in Sec-WebSocket-Accept. */
export function acceptKey(key: string): string {
  return createHash('sha1')
    .update(key + ACCEPT_GUID)
    .digest('base64');
}

/** A client's upgrade request for `path` on `host` (the Host header's value), without extensions. */
export function upgradeRequest(host: string, path: string, key: string): Buffer {
  const lines = [
    `GET ${path} HTTP/1.1`,
    `Host: ${host}`,
    'Upgrade: websocket',
    'Connection: Upgrade',
    `Sec-WebSocket-Key: ${key}`,
    'Sec-WebSocket-Version: 13',
  ];
  return Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
}

/**
 * Checks the head of the answer to an upgrade request made with `key`, as the `ws` client does;
 * returns what is wrong with it, or undefined if the connection is now a WebSocket.
 */
export function checkUpgradeAnswer(head: Buffer, key: string): { code: string; message: string } | undefined {
  const end = head.indexOf('\r\n\r\n');
  if (end < 0) return { code: 'HPE_HEADER_OVERFLOW', message: `no complete answer head in ${head.length} bytes` };
  const lines = head.toString('latin1', 0, end).split('\r\n');
  const status = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(lines[0] ?? '');
  if (status === null) return { code: 'HPE_INVALID_CONSTANT', message: 'the answer is not HTTP' };
  if (status[1] !== '101') return { code: 'ERR_WS_UPGRADE', message: `Unexpected server response: ${status[1]}` };
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  const problem =
    headers.get('upgrade')?.toLowerCase() !== 'websocket'
      ? 'Invalid Upgrade header'
      : headers.get('sec-websocket-accept') !== acceptKey(key)
        ? 'Invalid Sec-WebSocket-Accept header'
        : headers.has('sec-websocket-extensions')
          ? 'Server sent a Sec-WebSocket-Extensions header but no extension was requested'
          : headers.has('sec-websocket-protocol')
            ? 'Server sent a subprotocol but none was requested'
            : undefined;
  return problem === undefined ? undefined : { code: 'ERR_WS_UPGRADE', message: problem };
}
