"""Calls long after the socket's last activity, for capture.test.ts: an event is stamped when
its call moved the bytes, not when they arrived or when the socket last transmitted.
Usage: readlater.py 4|6 PAUSE_MS.

After 'go' on stdin, over one loopback connection (client end -> server end):
 - L0..L2: the client sends, the process sleeps PAUSE_MS, the server end reads;
 - S0, S1: the process sleeps PAUSE_MS, the client sends, the server end reads;
 - C0: the client sets TCP_CORK, the process sleeps PAUSE_MS, the client sends (held by the
   cork: nothing leaves), then uncorks, and the server end reads;
 - A0, A1: the client sends 3000 bytes (A0), the process sleeps PAUSE_MS / 8, the client sends
   A1, and the server end reads both. Behind a slow qdisc on lo (capture.test.ts runs this in a
   network namespace with tbf and an MTU of 1500) A0's second segment waits in the qdisc, so
   the kernel autocorks A1: nothing of it leaves in its call.
Prints one JSON line {"pid"}."""
import json
import os
import socket
import sys
import time

from loopback import recv_exact, tcp_pair

pause = int(sys.argv[2]) / 1000
_, _, listener, client, server = tcp_pair(sys.argv[1])

print("ready", flush=True)
sys.stdin.readline()
for i in range(3):
    msg = b"L%d:read-long-after-it-arrived" % i
    client.sendall(msg)
    time.sleep(pause)
    recv_exact(server, len(msg))
for i in range(2):
    msg = b"S%d:sent-long-after-the-last-transmit" % i
    time.sleep(pause)
    client.sendall(msg)
    recv_exact(server, len(msg))
msg = b"C0:sent-corked-nothing-leaves"
client.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
time.sleep(pause)
client.sendall(msg)
client.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
recv_exact(server, len(msg))
a0 = b"A0:" + b"x" * 2997
a1 = b"A1:autocorked-behind-A0"
client.sendall(a0)
time.sleep(pause / 8)
client.sendall(a1)
recv_exact(server, len(a0))
recv_exact(server, len(a1))
client.close()
server.close()
print(json.dumps({"pid": os.getpid()}), flush=True)
