// The seed's client for the selectors server (port 1234), ported statement by statement.
// Fixes are marked "seed flaw:". Run: npm run selectors-client -- [port]   (reads stdin)

import { socket } from 'echoplex/selectors';
import { exit, input, portArgument, print } from './lib/python.js';
import { recvExactly } from './lib/reply.js';

const tin = socket();
await tin.connect(['localhost', portArgument(1234)]);
for (;;) {
  const inp = await input('');
  if (inp === null) break;
  // seed flaw: an empty line sent nothing and then waited forever for a reply; send the newline too.
  const request = Buffer.from(`${inp}\n`, 'utf8');
  await tin.sendall(request);
  // seed flaw: recv(1024) returned whatever had arrived so far, not the whole reply.
  const data = await recvExactly(tin, request.length);
  if (data.length === 0) {
    print('server closed the connection');
    // seed flaw: after the server left, recv() returned b'' for ever and the loop never ended.
    tin.close();
    exit(1);
  }
  print(data.toString('utf8').replace(/\n$/, ''));
}
tin.close();
