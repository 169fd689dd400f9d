"""Bytes read after the peer reset the connection, for capture.test.ts: a connection's close
event must come after the last bytes its process reads from it. A server that closes a
keep-alive connection drains what the client had sent meanwhile (Apache's lingering close),
and a client may read an answer that came just before the server's reset; TCP is in its
CLOSE state by then (the reset), yet the process still reads.
Usage: afterreset.py 4|6.

After 'go' on stdin, over one loopback connection: the client sends R0 and the server end
reads it; the client sends R1 and closes with SO_LINGER 0 (a reset); the process sleeps
100 ms; the server end reads R1, reads the end (b""), and closes.
Prints one JSON line {"pid", "got"}."""
import json
import os
import socket
import struct
import sys
import time

from loopback import recv_exact, tcp_pair

_, _, listener, client, server = tcp_pair(sys.argv[1])

print("ready", flush=True)
sys.stdin.readline()
client.sendall(b"R0:before-the-reset")
recv_exact(server, 19)
client.sendall(b"R1:read-after-the-reset")
client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
client.close()
time.sleep(0.1)
got = server.recv(100)
try:
    server.recv(100)
except ConnectionResetError:
    pass
server.close()
listener.close()
print(json.dumps({"pid": os.getpid(), "got": got.decode()}), flush=True)
