"""A read long after the bytes arrived, for capture.test.ts: the time of a receive event is
the time of the read, not of the bytes' arrival. Usage: readlater.py 4|6 N PAUSE_MS.

After 'go' on stdin, N times: the client end sends "L<i>:" + text, the process sleeps
PAUSE_MS, then the server end reads it. Prints one JSON line {"pid"}."""
import json
import os
import socket
import sys
import time

family = socket.AF_INET6 if sys.argv[1] == "6" else socket.AF_INET
host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
n, pause = int(sys.argv[2]), int(sys.argv[3]) / 1000
listener = socket.socket(family, socket.SOCK_STREAM)
listener.bind((host, 0))
listener.listen(1)
client = socket.socket(family, socket.SOCK_STREAM)
client.connect(listener.getsockname()[:2])
server, _ = listener.accept()
print("ready", flush=True)
sys.stdin.readline()
for i in range(n):
    msg = b"L%d:read-long-after-it-arrived" % i
    client.sendall(msg)
    time.sleep(pause)
    got = b""
    while len(got) < len(msg):
        got += server.recv(len(msg) - len(got))
client.close()
server.close()
print(json.dumps({"pid": os.getpid()}), flush=True)
