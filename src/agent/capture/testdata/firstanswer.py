"""The first answer on an accepted connection, sent before the peer acknowledged anything of
it, for capture.test.ts. Usage: firstanswer.py 4|6 N.

An accepted socket none of whose segments was acknowledged has its RACK state all zero; a
send's stamp once took that as "acknowledged at time 0" for half of all initial sequence
numbers, and the event the cutoff of the last write-out: tens of ms before the request it
answered was read. Over loopback the peer acknowledges within the send call (quick-ACK mode
at a connection's start); across hosts, or here with TCP_QUICKACK off on the client, the ACK
comes later.

After 'go', N times on a fresh connection: the client (quick ACKs off) sends Q<i>, the server
reads it and answers A<i>, asks TCP_INFO how much of it is unacknowledged, the client reads the
answer, both close. Prints one JSON line {"pid", "unacked": [segments unacknowledged right after
each answer's send returned, ...]}."""
import json
import os
import socket
import struct
import sys

from loopback import recv_exact, tcp_pair

n = int(sys.argv[2])
print("ready", flush=True)
sys.stdin.readline()
unacked = []
for i in range(n):
    _, _, listener, client, server = tcp_pair(sys.argv[1])
    q = b"Q%03d:first-request" % i
    a = b"A%03d:first-answer" % i
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 0)
    client.sendall(q)
    recv_exact(server, len(q))
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 0)
    server.sendall(a)
    # struct tcp_info: 8 bytes of u8 fields, then u32 rto, ato, snd_mss, rcv_mss, unacked
    unacked.append(struct.unpack_from("I", server.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104), 24)[0])
    recv_exact(client, len(a))
    for s in (client, server, listener):
        s.close()
print(json.dumps({"pid": os.getpid(), "unacked": unacked}), flush=True)
