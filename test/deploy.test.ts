// deploy/: the Kubernetes manifest and the Dockerfile agree with the server they run.
// (Docker itself cannot run on these machines; the image is checked as text.)

import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { runCli, startServe } from './helpers/cli.js';
import { waitUntil, withTimeout } from './helpers/timeout.js';

const root = (path: string) => fileURLToPath(new URL(`../${path}`, import.meta.url));

interface Port {
  name: string;
  containerPort: number;
  protocol: string;
}
interface Probe {
  httpGet: { path: string; port: string | number };
}
interface Container {
  env: Array<{ name: string; value: string }>;
  ports: Port[];
  livenessProbe: Probe;
  readinessProbe: Probe;
  lifecycle?: { preStop?: { exec?: { command: string[] } } };
}
interface Manifest {
  kind: string;
  spec: Record<string, unknown>;
}

function load(): { deployment: Manifest; service: Manifest; container: Container; env: Map<string, string> } {
  const documents = parseAllDocuments(readFileSync(root('deploy/kubernetes.yaml'), 'utf8'));
  for (const document of documents) assert.deepEqual(document.errors, [], 'valid YAML');
  const manifests = documents.map((document) => document.toJS() as Manifest);
  const deployment = manifests.find((m) => m.kind === 'Deployment')!;
  const service = manifests.find((m) => m.kind === 'Service')!;
  assert.ok(deployment && service, 'a Deployment and a Service');
  const template = deployment.spec['template'] as { spec: { containers: Container[] } };
  const container = template.spec.containers[0]!;
  return { deployment, service, container, env: new Map(container.env.map(({ name, value }) => [name, value])) };
}

function portNumber(container: Container, port: string | number): number {
  if (typeof port === 'number') return port;
  const named = container.ports.find((p) => p.name === port);
  assert.ok(named, `container port named ${port}`);
  return named.containerPort;
}

describe('deploy/kubernetes.yaml', () => {
  it('probes the metrics port at the paths the server serves, with the ports it listens on', () => {
    const { container, env } = load();
    assert.equal(container.livenessProbe.httpGet.path, '/healthz');
    assert.equal(container.readinessProbe.httpGet.path, '/readyz');
    const metricsPort = Number(env.get('ECHOPLEX_METRICS_PORT'));
    assert.equal(portNumber(container, container.livenessProbe.httpGet.port), metricsPort);
    assert.equal(portNumber(container, container.readinessProbe.httpGet.port), metricsPort);
    assert.equal(env.get('ECHOPLEX_METRICS_HOST'), '0.0.0.0', 'probes come from outside the container');
    const echo = Number(env.get('ECHOPLEX_PORT'));
    assert.deepEqual(
      container.ports
        .filter((p) => p.containerPort === echo)
        .map((p) => p.protocol)
        .sort(),
      env.has('ECHOPLEX_UDP') ? ['TCP', 'UDP'] : ['TCP'],
    );
  });

  it('gives the pod time to drain: preStop plus --shutdown-timeout fit in the grace period', () => {
    const { deployment, container, env } = load();
    const grace = (deployment.spec['template'] as { spec: { terminationGracePeriodSeconds: number } }).spec
      .terminationGracePeriodSeconds;
    const preStop = Number(container.lifecycle?.preStop?.exec?.command.at(-1) ?? 0);
    assert.ok(preStop + Number(env.get('ECHOPLEX_SHUTDOWN_TIMEOUT')) < grace, `${preStop} + drain < ${grace}`);
  });

  it('routes every Service port to a named container port', () => {
    const { service, container } = load();
    for (const port of service.spec['ports'] as Array<{ targetPort: string; protocol: string }>) {
      const target = container.ports.find((p) => p.name === port.targetPort);
      assert.ok(target, `target ${port.targetPort}`);
      assert.equal(target.protocol, port.protocol);
    }
  });

  it('sets only variables the server knows, and with them it answers both probes', async () => {
    const { env } = load();
    const help = (await runCli(['serve', '--help'])).stdout.replace(/\s+/g, ' ');
    for (const name of env.keys()) assert.ok(help.includes(`env: ${name})`), `${name} is a documented variable`);
    // The manifest's configuration, on loopback and free ports so that the test can run anywhere,
    // with the text log (and its metrics line) that the test reads.
    const variables = Object.fromEntries([...env].filter(([name]) => name !== 'ECHOPLEX_QUIET'));
    Object.assign(variables, {
      ECHOPLEX_HOST: '127.0.0.1',
      ECHOPLEX_METRICS_HOST: '127.0.0.1',
      ECHOPLEX_METRICS_PORT: '0',
      ECHOPLEX_LOG_FORMAT: 'text',
    });
    const serve = await startServe([], { env: variables });
    try {
      await waitUntil(() => /metrics on (http:\/\/\S+)\/metrics/.test(serve.stderr()), 10_000, 'the metrics line');
      const url = /metrics on (http:\/\/\S+)\/metrics/.exec(serve.stderr())![1]!;
      for (const path of ['/healthz', '/readyz'])
        assert.equal((await withTimeout(fetch(`${url}${path}`), 5000, path)).status, 200, path);
    } finally {
      await serve.stop();
    }
  });
});

describe('deploy/Dockerfile', () => {
  const dockerfile = readFileSync(root('deploy/Dockerfile'), 'utf8');

  it('exposes the ports the manifest uses and copies files that exist', () => {
    const { container } = load();
    const exposed = /^EXPOSE (.+)$/m.exec(dockerfile)![1]!.split(/\s+/);
    for (const port of container.ports)
      assert.ok(
        exposed.includes(`${port.containerPort}/${port.protocol.toLowerCase()}`),
        `EXPOSE ${port.containerPort}/${port.protocol}`,
      );
    for (const [, sources] of dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)) {
      for (const source of sources!.split(/\s+/)) assert.ok(existsSync(root(source)), `${source} exists`);
    }
  });

  it('configures only variables the server knows, to the values the manifest uses', async () => {
    const { env } = load();
    const help = (await runCli(['serve', '--help'])).stdout.replace(/\s+/g, ' ');
    for (const [, name, value] of dockerfile.matchAll(/(ECHOPLEX_[A-Z_]+)=(\S+)/g)) {
      assert.ok(help.includes(`env: ${name})`), `${name} is a documented variable`);
      if (env.has(name!)) assert.equal(env.get(name!), value, name);
    }
  });
});
