"""Python asyncio (or uvloop with --uvloop) echo server, as a benchmark peer.

Usage: python3 asyncio_echo.py PORT [--uvloop]
Uses the Protocol API, the fastest asyncio path (as in uvloop's own echo benchmark)."""
import asyncio
import sys


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info('socket')
        if sock is not None:
            import socket
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data):
        self.transport.write(data)


async def main(port):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, '127.0.0.1', port)
    print('listening', port, flush=True)
    async with server:
        await server.serve_forever()


if __name__ == '__main__':
    port = int(sys.argv[1])
    if '--uvloop' in sys.argv:
        import uvloop
        uvloop.install()
    asyncio.run(main(port))
