"""Unix sockets made where muted ones were, for capture.test.ts. Usage: unixreuse.py.

After 'go': a Unix stream socket pair A moves A0..A2 each way; after a second line on stdin (the
test mutes A's ends meanwhile) A is closed and 20 pairs B0..B19 are made one after the other,
each moving its name once each way and closed: the kernel gives new sockets the memory of
closed ones, so some of them sit where A's ends sat. Prints one JSON line {"pid"}."""
import json
import os
import socket
import sys

print("ready", flush=True)
sys.stdin.readline()
a1, a2 = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
for i in range(3):
    a1.sendall(b"A%d:ping" % i)
    a2.recv(100)
    a2.sendall(b"A%d:pong" % i)
    a1.recv(100)
sys.stdin.readline()
a1.close()
a2.close()
for i in range(20):
    b1, b2 = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    b1.sendall(b"B%d:ping" % i)
    b2.recv(100)
    b2.sendall(b"B%d:pong" % i)
    b1.recv(100)
    b1.close()
    b2.close()
print(json.dumps({"pid": os.getpid()}), flush=True)
