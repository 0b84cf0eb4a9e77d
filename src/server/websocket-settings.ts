// What `--ws` can be asked for, kept apart from the engine so that a server without it never loads `ws`.

export const DEFAULT_MAX_MESSAGE = 1024 * 1024;

export interface WebSocketSettings {
  /** Largest message accepted; a larger one closes its connection with 1009. Default 1 MiB. */
  maxMessage?: number;
  /** Offer permessage-deflate (RFC 7692). Default off: compression costs CPU per message. */
  deflate?: boolean;
  /** How long a new connection may take to send a whole HTTP request (an upgrade, or a GET for the page). Default 10 s. */
  requestTimeoutMs?: number;
}

export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;
