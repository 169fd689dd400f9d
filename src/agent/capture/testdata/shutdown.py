"""A socket's FIN, for capture.test.ts: its shutdown event comes when its process sends it, not
at the socket's end, and its process may still read after it. Usage: shutdown.py 4|6.

After 'go': the server end sends S0 and shuts its sending side (FIN_WAIT1); the client end
reads S0 and the end of the stream, sends C1 and closes (LAST_ACK); the server end reads C1 and
closes. Prints one JSON line {"pid", "server": port of the server end, "client": port of the
client end}."""
import json
import os
import socket
import sys

from loopback import recv_exact, tcp_pair

_, _, listener, client, server = tcp_pair(sys.argv[1])
ports = {"server": server.getsockname()[1], "client": client.getsockname()[1]}
print("ready", flush=True)
sys.stdin.readline()
server.sendall(b"S0:answer-until-close")
server.shutdown(socket.SHUT_WR)
recv_exact(client, 21)
assert client.recv(10) == b"", "the end of the stream"
client.sendall(b"C1:after-the-fin")
client.close()
recv_exact(server, 16)
server.close()
listener.close()
print(json.dumps({"pid": os.getpid(), **ports}), flush=True)
