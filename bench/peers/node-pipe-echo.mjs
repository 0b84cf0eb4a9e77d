// The plainest Node echo server, as a peer: socket.pipe(socket). Usage: node node-pipe-echo.mjs PORT
import net from 'node:net';

const server = net.createServer((socket) => {
  socket.on('error', () => {});
  socket.pipe(socket);
});
server.listen(Number(process.argv[2] ?? 1234), '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});
