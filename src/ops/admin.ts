// Runtime control on the metrics port (--admin): take the instance out of service and back, replace the faults live.

import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import type { Logger } from '../core/log.js';
import { formatFaults, parseFaults } from '../server/faults.js';
import type { EchoServer } from '../server/server.js';

export interface AdminOptions {
  server: EchoServer;
  /**
   * When set, required of every admin request, loopback included, as `Authorization: Bearer
   * TOKEN` (in a pod every sidecar and `kubectl port-forward` arrive over loopback). Without
   * one, only loopback clients are served.
   */
  token?: string | undefined;
  logger: Logger;
}

const BODY_LIMIT = 4096;

/**
 * Answers `/admin/...` requests: `POST /admin/ready?state=false|true`, `GET /admin/faults` and
 * `POST /admin/faults` (a body in `--fault`'s syntax). With a token configured every request
 * needs it; without one, only loopback clients are served. Others are refused (403).
 */
export function handleAdmin(req: IncomingMessage, res: ServerResponse, path: string, admin: AdminOptions): void {
  if (!authorized(req, admin.token)) {
    reply(
      res,
      403,
      admin.token === undefined
        ? 'forbidden: without --admin-token, admin requests are served to loopback clients only\n'
        : 'forbidden: admin requests need Authorization: Bearer TOKEN (the --admin-token)\n',
    );
    return;
  }
  const url = new URL(req.url ?? '/', 'http://admin');
  if (path === '/admin/ready') {
    if (req.method !== 'POST') return reply(res, 405, 'POST /admin/ready?state=false|true\n', { allow: 'POST' });
    const state = url.searchParams.get('state');
    if (state !== 'true' && state !== 'false') return reply(res, 400, 'state must be true or false\n');
    admin.server.setInService(state === 'true');
    admin.logger.warn(
      { event: 'admin', ready: state === 'true' },
      state === 'true'
        ? 'admin: back in service (/readyz answers 200 again)'
        : 'admin: taken out of service (/readyz answers 503; connections are still served)',
    );
    return reply(res, 200, state === 'true' ? 'ready\n' : 'not ready\n');
  }
  if (path === '/admin/faults') {
    const faults = admin.server.faults;
    if (faults === undefined) return reply(res, 404, 'no faults\n');
    // `none` rather than an empty body, which reads as a failed request.
    if (req.method === 'GET' || req.method === 'HEAD')
      return reply(res, 200, `${formatFaults(faults.spec) || 'none'}\n`);
    if (req.method !== 'POST') return reply(res, 405, 'GET or POST /admin/faults\n', { allow: 'GET, POST' });
    readBody(req, (body) => {
      if (body === undefined) return reply(res, 413, `at most ${BODY_LIMIT} bytes\n`);
      try {
        faults.replace(parseFaults([body]));
      } catch (err) {
        return reply(res, 400, `${(err as Error).message}\n`);
      }
      const text = formatFaults(faults.spec);
      admin.logger.warn({ event: 'admin', faults: text }, `admin: faults are now: ${text || 'none'}`);
      reply(res, 200, `${text || 'none'}\n`);
    });
    return;
  }
  reply(res, 404, 'admin: POST /admin/ready?state=false|true, GET or POST /admin/faults\n');
}

/** With a token, whoever carries it (loopback too); without one, loopback clients only. */
export function authorized(
  req: Pick<IncomingMessage, 'headers'> & { socket: { remoteAddress?: string | undefined } },
  token: string | undefined,
): boolean {
  if (token === undefined) {
    const address = req.socket.remoteAddress ?? '';
    return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.') || isIP(address) === 0;
  }
  const given = Buffer.from(/^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '');
  const expected = Buffer.from(token);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

function readBody(req: IncomingMessage, done: (body: string | undefined) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  req.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (size <= BODY_LIMIT) chunks.push(chunk);
  });
  req.on('end', () => done(size > BODY_LIMIT ? undefined : Buffer.concat(chunks).toString('utf8')));
}

function reply(res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'text/plain', ...headers }).end(body);
}
