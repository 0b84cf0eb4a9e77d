// A bare `ws` echo server, the reference for `echoplex serve --ws` in bench/peers: what the
// library costs with nothing around it. Usage: node ws-echo.mjs PORT
import { WebSocketServer } from 'ws';

const server = new WebSocketServer({ host: '127.0.0.1', port: Number(process.argv[2]), perMessageDeflate: false });
server.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
});
