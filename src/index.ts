// The public API of `echoplex`: re-exports only.

export {
  createEchoServer,
  EchoServer,
  DEFAULT_HOST,
  DEFAULT_PORT,
  DEFAULT_MAX_BUFFERED,
  DEFAULT_SHUTDOWN_TIMEOUT_MS,
} from './server/server.js';
export type { EchoServerOptions, BoundAddress, CloseOptions, ServerState } from './server/server.js';
export type { Connection } from './server/connection.js';
export type { ServerStats, RejectReason, ErrorKind, Transport, StreamTransport } from './server/stats.js';
export type { DrainResult } from './server/shutdown.js';
export { DEFAULT_MAX_MESSAGE } from './server/websocket-settings.js';
export type { WebSocketSettings } from './server/websocket-settings.js';
export {
  echoTransform,
  upperTransform,
  TRANSFORM_NAMES,
  loadTransformModule,
  toTransform,
  TransformResultError,
} from './protocol/transforms.js';
export type { Transform, UserTransform, TransformName, TransformModuleFunction } from './protocol/transforms.js';
export { LineSplitter, FRAMINGS, DEFAULT_MAX_LINE } from './protocol/framing.js';
export type { Framing } from './protocol/framing.js';
export { parseProxyHeader, encodeProxyV1, encodeProxyV2, PROXY_V2_SIGNATURE } from './protocol/proxy-protocol.js';
export type {
  ProxyHeader,
  ProxyParseResult,
  ProxyEndpoint,
  ProxyTlv,
  ProxyHeaderSpec,
} from './protocol/proxy-protocol.js';
export { selfSignedCertificate, loadTlsOptions } from './server/tls.js';
export type { TlsFiles } from './server/tls.js';
export { runClient, connect } from './client/client.js';
export type { ClientOptions, ConnectOptions } from './client/client.js';
export { runPing } from './client/ping.js';
export type { PingOptions, PingSummary } from './client/ping.js';
export { TextLogger, silentLogger, reprBytes, reprBytesMaxLength, writeReprBytes } from './core/log.js';
export type { Logger, LogLevel, LogFields } from './core/log.js';
export { ENGINE_CHOICES, ENGINE_VARIABLE } from './native/engine.js';
export type { EngineChoice, EngineName } from './native/engine.js';
export { EchoplexError, UsageError, ListenError, ConnectError } from './core/errors.js';
