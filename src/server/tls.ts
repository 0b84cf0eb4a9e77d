// TLS settings for the server: certificate files, an ephemeral self-signed certificate, mTLS.

import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import type { TlsOptions } from 'node:tls';
import { UsageError } from '../core/errors.js';

export interface TlsFiles {
  /** PEM certificate (chain) and private key files. */
  certFile?: string;
  keyFile?: string;
  /** Generate a certificate at start instead, valid for localhost and the listening host. */
  selfSigned?: boolean;
  /** With `selfSigned`: use this one (made once by a cluster primary, shared by its workers). */
  selfSignedIdentity?: { cert: string; key: string };
  /** PEM CA file: clients must present a certificate it signed (mTLS). */
  caFile?: string;
}

/** The hosts a self-signed certificate names, so clients that verify the name can pin it. */
const SELF_SIGNED_HOSTS = ['localhost', '127.0.0.1', '::1'];

/** Reads or makes the certificate and returns options for `tls.createServer`. */
export async function loadTlsOptions(files: TlsFiles, host: string): Promise<TlsOptions> {
  let identity: { cert: string | Buffer; key: string | Buffer };
  if (files.selfSigned) {
    if (files.certFile !== undefined || files.keyFile !== undefined) throw new UsageError('--tls-self-signed and --tls-cert/--tls-key are alternatives: give one or the other');
    identity = files.selfSignedIdentity ?? (await selfSignedCertificateFor(host));
  } else {
    if (files.certFile === undefined || files.keyFile === undefined) throw new UsageError('TLS needs both --tls-cert and --tls-key (or --tls-self-signed)');
    identity = { cert: await readPem(files.certFile, '--tls-cert'), key: await readPem(files.keyFile, '--tls-key') };
  }
  if (files.caFile === undefined) return identity;
  return { ...identity, ca: await readPem(files.caFile, '--tls-ca'), requestCert: true, rejectUnauthorized: true };
}

async function readPem(path: string, flag: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    throw new UsageError(`${flag}: cannot read ${path}: ${(err as Error).message}`);
  }
}

/** A self-signed certificate for localhost and `host`, as --tls-self-signed makes. */
export function selfSignedCertificateFor(host: string): Promise<{ cert: string; key: string }> {
  return selfSignedCertificate([...new Set([...SELF_SIGNED_HOSTS, host])]);
}

/** A fresh P-256 certificate for `hosts`, valid for 30 days; loaded only when asked for. */
export async function selfSignedCertificate(hosts: readonly string[]): Promise<{ cert: string; key: string }> {
  const { generate } = await import('selfsigned');
  const altNames = hosts.filter((name) => name !== '' && name !== '0.0.0.0' && name !== '::').map((name) => (isIP(name) ? { type: 7 as const, ip: name } : { type: 2 as const, value: name }));
  const now = Date.now();
  const pems = await generate([{ name: 'commonName', value: 'echoplex self-signed' }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate: new Date(now - 60_000),
    notAfterDate: new Date(now + 30 * 24 * 3600_000),
    extensions: [{ name: 'subjectAltName', altNames }],
  });
  return { cert: pems.cert, key: pems.private };
}
