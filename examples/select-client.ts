// The seed's client for the select() server (port 9999), ported statement by statement.
// Fixes are marked "seed flaw:". Run: npm run select-client -- [port]   (reads stdin)

import { socket } from 'echoplex/selectors';
import { exit, input, portArgument, print } from './lib/python.js';
import { recvExactly } from './lib/reply.js';

const sock = socket();
await sock.connect(['localhost', portArgument(9999)]);
for (;;) {
  const line = await input('>:');
  // Python raises EOFError at the end of input; we leave the loop and close cleanly.
  if (line === null) break;
  const c = line.trim();
  // seed flaw: send(b'') for an empty line sends nothing, and recv() then waits forever. Each
  // line goes out with its newline, so every line, even an empty one, gets an answer.
  const request = Buffer.from(`${c}\n`);
  // seed flaw: send() may take only part of the data; sendall() sends it all.
  await sock.sendall(request);
  // seed flaw: one recv(1024) can return part of a reply (or two replies at once).
  const data = await recvExactly(sock, request.length);
  if (data.length === 0) {
    print('server closed the connection');
    // seed flaw: after the server left, recv() returned b'' for ever and the loop never ended.
    sock.close();
    exit(1);
  }
  print(data.toString('utf8').replace(/\n$/, ''));
}
sock.close();
