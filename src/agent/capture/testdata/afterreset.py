"""Bytes read after the peer reset the connection, for capture.test.ts: a connection's close
event must come after the last bytes its process reads from it. A server that closes a
keep-alive connection drains what the client had sent meanwhile (Apache's lingering close), a
server reads the request of a client that gave up and reset, and a client may read an answer
that came just before the server's reset; TCP is in its CLOSE state by then (the reset), yet
the process still reads.
Usage: afterreset.py 4|6.

After 'go' on stdin, over two loopback connections:
 - A: the client sends R0 and the server end reads it; the client sends R1 and closes with
   SO_LINGER 0 (a reset); the process sleeps 100 ms; the server end reads R1, then the reset,
   and closes;
 - B: the same without R0: the server end's first read comes after the reset (which cleared
   the socket's port number).
Prints one JSON line {"pid", "a", "b"}, each {"got", "port" (the server end's), "peer" (the
client end's)}."""
import json
import os
import socket
import struct
import sys
import time

from loopback import recv_exact, tcp_pair


def after_reset(first):
    _, _, listener, client, server = tcp_pair(sys.argv[1])
    port, peer = server.getsockname()[1], client.getsockname()[1]
    if first:
        client.sendall(first)
        recv_exact(server, len(first))
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
    return {"got": got.decode(), "port": port, "peer": peer}


print("ready", flush=True)
sys.stdin.readline()
a = after_reset(b"R0:before-the-reset")
b = after_reset(None)
print(json.dumps({"pid": os.getpid(), "a": a, "b": b}), flush=True)
