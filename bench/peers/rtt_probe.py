# The reference the bench's timing is held to: one blocking connection, one message at a time,
# timed with perf_counter around sendall and the reply's last byte. It measures what this
# machine adds to a server's delay (loopback, a sleeping process woken by the reply), which no
# client can measure away. Usage: python3 rtt_probe.py PORT [COUNT] [SIZE]; prints JSON in us.
import json
import socket
import sys
import time

port = int(sys.argv[1])
count = int(sys.argv[2]) if len(sys.argv) > 2 else 100
size = int(sys.argv[3]) if len(sys.argv) > 3 else 64

with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    times = []
    for n in range(count):
        message = (b"%016X" % n).ljust(size, b".")[:size]
        start = time.perf_counter()
        sock.sendall(message)
        got = b""
        while len(got) < size:
            chunk = sock.recv(size - len(got))
            if not chunk:
                sys.exit("the server closed the connection")
            got += chunk
        times.append((time.perf_counter() - start) * 1e6)
    times.sort()
    print(json.dumps({"p50": round(times[len(times) // 2]), "min": round(times[0]), "count": len(times)}))
