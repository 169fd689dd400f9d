"""A muted socket, for capture.test.ts: the kernel stops sending its data events once user space
mutes it (both modes), its close still comes, other sockets are not touched. Usage: mute.py.

After 'go': two connections A and B each make three round trips (client end sends A0:ping, the
server end answers A0:pong, ...); after a second line on stdin three more each (A3..A5, B3..B5),
then every socket closes. Prints one JSON line {"pid", "a", "b": the ports
of A's and B's client ends}."""
import json
import os
import sys

from loopback import recv_exact, tcp_pair

_, _, la, ca, sa = tcp_pair("4")
_, _, lb, cb, sb = tcp_pair("4")
PORTS = {"a": ca.getsockname()[1], "b": cb.getsockname()[1]}
print("ready", flush=True)
sys.stdin.readline()


def rounds(tag, client, server, first):
    for i in range(first, first + 3):
        ping = f"{tag}{i}:ping".encode()
        client.sendall(ping)
        recv_exact(server, len(ping))
        server.sendall(f"{tag}{i}:pong".encode())
        recv_exact(client, len(ping))


rounds("A", ca, sa, 0)
rounds("B", cb, sb, 0)
sys.stdin.readline()
rounds("A", ca, sa, 3)
rounds("B", cb, sb, 3)
for s in (ca, sa, cb, sb, la, lb):
    s.close()
print(json.dumps({"pid": os.getpid(), **PORTS}), flush=True)
