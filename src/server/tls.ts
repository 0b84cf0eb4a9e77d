// TLS settings for the server: certificate files, an ephemeral self-signed certificate, mTLS.

import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
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
  /** ALPN protocols to select from, in order of preference. */
  alpn?: readonly string[];
}

/** The hosts a self-signed certificate names, so clients that verify the name can pin it. */
const SELF_SIGNED_HOSTS = ['localhost', '127.0.0.1', '::1'];

/** Reads or makes the certificate and returns options for `tls.createServer`. */
export async function loadTlsOptions(files: TlsFiles, host: string): Promise<TlsOptions> {
  let identity: { cert: string | Buffer; key: string | Buffer };
  if (files.selfSigned) {
    if (files.certFile !== undefined || files.keyFile !== undefined)
      throw new UsageError('--tls-self-signed and --tls-cert/--tls-key are alternatives: give one or the other');
    identity = files.selfSignedIdentity ?? (await selfSignedCertificateFor(host));
  } else {
    if (files.certFile === undefined || files.keyFile === undefined)
      throw new UsageError('TLS needs both --tls-cert and --tls-key (or --tls-self-signed)');
    const cert = await readPem(files.certFile, '--tls-cert');
    const key = await readPem(files.keyFile, '--tls-key');
    checkIdentity(cert, key, files.certFile, files.keyFile);
    identity = { cert, key };
  }
  const alpn = files.alpn === undefined ? {} : alpnOptions(files.alpn);
  if (files.caFile === undefined) return { ...identity, ...alpn };
  const ca = await readPem(files.caFile, '--tls-ca');
  certificateIn(ca, '--tls-ca', files.caFile);
  return { ...identity, ...alpn, ca, requestCert: true, rejectUnauthorized: true };
}

/**
 * Node's server options for ALPN. A client that offers protocols but none of these is refused
 * with the no_application_protocol alert (RFC 7301 3.2), on either engine.
 */
function alpnOptions(protocols: readonly string[]): TlsOptions {
  if (protocols.length === 0) throw new UsageError('--tls-alpn needs at least one protocol name');
  for (const name of protocols) {
    if (Buffer.byteLength(name) > 255) throw new UsageError(`--tls-alpn: "${name}" is longer than 255 bytes`);
  }
  return { ALPNProtocols: [...protocols] };
}

/**
 * A certificate and key that cannot serve are usage errors naming the flag and the file, in
 * words, not OpenSSL's (`PEM routines::no start line`) at the first handshake or at start.
 */
function checkIdentity(cert: Buffer, key: Buffer, certFile: string, keyFile: string): void {
  const certificate = certificateIn(cert, '--tls-cert', certFile);
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(key);
  } catch {
    const swapped = /-----BEGIN CERTIFICATE-----/.test(key.toString('latin1'));
    throw new UsageError(
      `--tls-key: ${keyFile} holds no private key in PEM${swapped ? ' (it is a certificate: are --tls-cert and --tls-key swapped?)' : ''}`,
    );
  }
  if (!certificate.checkPrivateKey(privateKey)) {
    throw new UsageError(`--tls-key: ${keyFile} is not the private key of the certificate in ${certFile} (--tls-cert)`);
  }
}

function certificateIn(pem: Buffer, flag: string, file: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch {
    const key = /-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(pem.toString('latin1'));
    const hint = !key
      ? ''
      : flag === '--tls-cert'
        ? ' (it is a private key: are --tls-cert and --tls-key swapped?)'
        : ' (it is a private key)';
    throw new UsageError(`${flag}: ${file} holds no certificate in PEM${hint}`);
  }
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
  const altNames = hosts
    .filter((name) => name !== '' && name !== '0.0.0.0' && name !== '::')
    .map((name) => (isIP(name) ? { type: 7 as const, ip: name } : { type: 2 as const, value: name }));
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

/**
 * A certificate subject as the logs and the hello line show it, `O=Example,CN=client`: fields in
 * the certificate's order, a repeated one joined with `+` where it first appears (as Node's
 * getPeerCertificate groups them).
 */
export function formatSubject(entries: Iterable<readonly [string, string | readonly string[]]>): string {
  const fields = new Map<string, string[]>();
  for (const [key, value] of entries) {
    const values = fields.get(key) ?? [];
    values.push(...(typeof value === 'string' ? [value] : value));
    fields.set(key, values);
  }
  return [...fields].map(([key, values]) => `${key}=${values.join('+')}`).join(',');
}
