// The clients' fix for the seed's single recv(1024): read until the whole reply has arrived.

import type { Socket } from 'echoplex/selectors';

/**
 * Echo and upper replies are as long as the request, so the reply is complete after `length`
 * bytes. Resolves with what arrived if the server ends the stream first (empty: it closed).
 */
export async function recvExactly(sock: Socket, length: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let received = 0;
  while (received < length) {
    const data = await sock.recvAsync(length - received);
    if (data.length === 0) break;
    parts.push(data);
    received += data.length;
  }
  return Buffer.concat(parts);
}
