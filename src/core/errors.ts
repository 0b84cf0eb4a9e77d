// Typed errors with stable codes, shared by the server, client, bench and CLI.

import { getSystemErrorName } from 'node:util';

/** Base class: every echoplex error carries a stable, documented `code`. */
export class EchoplexError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** Bad flags or option values: the CLI exits 2 on these. */
export class UsageError extends EchoplexError {
  constructor(message: string) {
    super('ERR_ECHOPLEX_USAGE', message);
  }
}

/** The server could not bind one of its addresses (in use, not permitted, bad host). */
export class ListenError extends EchoplexError {
  readonly address: string;
  constructor(address: string, reason: string, cause: unknown) {
    super('ERR_ECHOPLEX_LISTEN', `cannot listen on ${address}: ${reason}`, { cause });
    this.address = address;
  }
}

/** The ListenError for a system error met while binding `address`, its code said in words. */
export function listenFailure(address: string, err: unknown): ListenError {
  const message = err instanceof Error ? err.message : String(err);
  return new ListenError(address, describeListenError(systemErrorCode(err), message), err);
}

/**
 * Under --workers, a worker stopped before it was listening (it said why on stderr): the
 * primary stops too, with the worker's exit status (2 for a usage error, 1 otherwise).
 */
export class WorkerStartError extends EchoplexError {
  readonly exitStatus: number;
  constructor(how: string, exitStatus: number) {
    super('ERR_ECHOPLEX_WORKER_START', `a worker ${how} before it was listening`);
    this.exitStatus = exitStatus;
  }
}

/** A client could not reach its server or lost it too early. */
export class ConnectError extends EchoplexError {
  constructor(message: string, cause?: unknown) {
    super('ERR_ECHOPLEX_CONNECT', message, { cause });
  }
}

/** `1 connection`, `3 connections`: a count with its noun, for messages. */
export function counted(count: number, noun: string): string {
  return `${count} ${count === 1 ? noun : `${noun}s`}`;
}

/** Node's system errors carry an errno-style string code such as ECONNRESET. */
export function systemErrorCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err) {
    const code = (err as { code: unknown }).code;
    return typeof code === 'string' ? code : undefined;
  }
  return undefined;
}

/** `ECONNRESET` for -104, and so on: the name of a negative errno (or libuv error) status. */
export function errorName(status: number): string {
  try {
    return getSystemErrorName(status);
  } catch {
    return `E${-status}`;
  }
}

/** What a failed listen means, in words, from its code (`path`: the Unix socket asked for). */
export function describeListenError(code: string | undefined, fallback: string, path?: string): string {
  switch (code) {
    case 'EADDRINUSE':
      return path === undefined
        ? 'address already in use (is another server running on this port?)'
        : 'address already in use';
    case 'EACCES':
      return path === undefined
        ? 'permission denied (ports below 1024 need privileges)'
        : 'permission denied (cannot create the socket file there)';
    case 'ENOENT':
      return path === undefined ? fallback : `no such directory: ${path.slice(0, Math.max(path.lastIndexOf('/'), 1))}`;
    case 'EADDRNOTAVAIL':
      return 'address not available on this host';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'unknown host';
    default:
      return fallback;
  }
}

/** Socket errors in a few words, by code: ping prints these beside the code, and describeSocketError builds on them. */
const SOCKET_ERROR_WORDS: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  EPIPE: 'connection closed',
  ETIMEDOUT: 'timed out',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  // A Unix socket path with nothing there.
  ENOENT: 'no such socket file',
  EACCES: 'permission denied',
  ENOTFOUND: 'unknown host',
  EAI_AGAIN: 'unknown host',
  // A plain server's answer to the TLS hello: an echo of it, or an HTTP error.
  ERR_SSL_UNEXPECTED_MESSAGE: 'not TLS',
  ERR_SSL_WRONG_VERSION_NUMBER: 'not TLS',
  // A plain server's answer to a WebSocket upgrade request: an echo of it.
  HPE_INVALID_CONSTANT: 'not HTTP (a plain TCP port, not WebSocket?)',
  // An mTLS server's answers to a client certificate it wants and did not get, or does not trust.
  ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED: 'the server requires a client certificate (--tls-cert/--tls-key)',
  ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE:
    'the server refused the handshake (does it require a client certificate? --tls-cert/--tls-key)',
  ERR_SSL_TLSV1_ALERT_UNKNOWN_CA: 'the server does not trust the client certificate (--tls-cert)',
  ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE: 'the server refused the client certificate (--tls-cert)',
};

/** The alerts an mTLS server sends about the client's certificate: said as such, and the same on every try. */
const CLIENT_CERTIFICATE_REFUSED = new Set([
  'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED',
  'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE',
  'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA',
  'ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE',
]);

/** A socket error's code in a few words (`connection reset`), or undefined for a code without them. */
export function socketErrorWords(code: string | undefined): string | undefined {
  return SOCKET_ERROR_WORDS[code ?? ''];
}

/** What a failed connect or a broken connection means, in words, from its code. */
export function describeSocketError(err: Error): string {
  const code = systemErrorCode(err);
  switch (code) {
    case 'ECONNREFUSED':
    case 'ENOENT':
      return `${socketErrorWords(code)} (is the server running?)`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EACCES':
    case 'ETIMEDOUT':
    case 'ECONNRESET':
      return socketErrorWords(code)!;
    case 'ERR_TLS_CERT_ALTNAME_INVALID':
      return `the server's certificate is not for this host (${err.message})`;
    default: {
      // ws's "Unexpected server response" carries no code: its message is read below.
      const codeText = code ?? '';
      if (UNTRUSTED_CERTIFICATE.has(codeText)) {
        return `the server's certificate is not trusted (${err.message}); for a self-signed test server use --tls-insecure, or --tls-ca FILE`;
      }
      // A ws:// or wss:// URL: the answer to the upgrade request was not HTTP, or not an upgrade.
      if (codeText.startsWith('HPE_'))
        return `the server did not answer in HTTP (${code}): is it plain TCP, not WebSocket?`;
      const status = /^Unexpected server response: (\d+)$/.exec(err.message)?.[1];
      if (status !== undefined)
        return `the server answered the WebSocket upgrade with HTTP ${status}: no WebSocket at that URL`;
      if (NOT_TLS.has(codeText)) return `the server did not answer in TLS (${openSslReason(err)}): is it plain TCP?`;
      if (CLIENT_CERTIFICATE_REFUSED.has(codeText)) return socketErrorWords(codeText)!;
      if (codeText.startsWith('ERR_SSL_')) return `the TLS handshake failed (${openSslReason(err)})`;
      return err.message;
    }
  }
}

/**
 * An error from OpenSSL in words (`wrong version number`): its message is a line of internals
 * (`8042...:error:0A00010B:SSL routines:ssl3_get_record:wrong version number:../deps/...`), and
 * its `reason` the part a person can use. Other errors: their message.
 */
export function openSslReason(err: Error): string {
  const reason = (err as Error & { reason?: unknown }).reason;
  return typeof reason === 'string' && reason !== '' ? reason : err.message;
}

/** What OpenSSL says when the answer to its hello is not TLS at all (an echo of it, an HTTP reply). */
const NOT_TLS = new Set([
  'ERR_SSL_WRONG_VERSION_NUMBER',
  'ERR_SSL_UNEXPECTED_MESSAGE',
  'ERR_SSL_PACKET_LENGTH_TOO_LONG',
  'ERR_SSL_RECORD_LAYER_FAILURE',
]);

const UNTRUSTED_CERTIFICATE = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
]);

/** A TLS verification failure, either side's: the certificate will not be trusted on the next try either. */
export function isCertificateError(err: unknown): boolean {
  const code = systemErrorCode(err) ?? '';
  return (
    code === 'ERR_TLS_CERT_ALTNAME_INVALID' || UNTRUSTED_CERTIFICATE.has(code) || CLIENT_CERTIFICATE_REFUSED.has(code)
  );
}

/** OpenSSL's X509_V_ERR_* results that Node's TLS names, by number (its names drop the prefix). */
const CERTIFICATE_CHECKS: Record<number, string> = {
  2: 'UNABLE_TO_GET_ISSUER_CERT',
  9: 'CERT_NOT_YET_VALID',
  10: 'CERT_HAS_EXPIRED',
  18: 'DEPTH_ZERO_SELF_SIGNED_CERT',
  19: 'SELF_SIGNED_CERT_IN_CHAIN',
  20: 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  21: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  23: 'CERT_REVOKED',
  26: 'INVALID_PURPOSE',
  // A name or an address the certificate does not carry: Node's own check says so in its words.
  62: 'ERR_TLS_CERT_ALTNAME_INVALID',
  64: 'ERR_TLS_CERT_ALTNAME_INVALID',
};

/**
 * A TLS handshake failure from OpenSSL itself (the native engines), as Node's TLS would raise
 * it, so that it is described and classified alike: a refused certificate by its X509 result,
 * anything else from OpenSSL's error line (`error:0A00010B:SSL routines::wrong version number`)
 * as ERR_SSL_WRONG_VERSION_NUMBER with that reason.
 */
export function openSslError(verifyResult: number, text: string): NodeJS.ErrnoException {
  if (verifyResult !== 0) {
    const code = CERTIFICATE_CHECKS[verifyResult] ?? 'ERR_SSL_CERTIFICATE_VERIFY_FAILED';
    return Object.assign(new Error(text), { code });
  }
  const reason = text.slice(text.lastIndexOf(':') + 1).trim();
  const code = `ERR_SSL_${reason.toUpperCase().replace(/[^A-Z0-9]+/g, '_')}`;
  return Object.assign(new Error(text), { code, reason });
}
