"""Starts threads for capture.test.ts: after 'go' on stdin the main thread starts thread A,
A starts thread B, and B writes one marked message over a loopback TCP connection (so the
test can check that the kernel reported B's creation before B's first send). Prints one
JSON line: {"pid", "main", "a", "b"} (native thread ids)."""
import json
import os
import socket
import sys
import threading

ids = {"pid": os.getpid(), "main": threading.get_native_id()}
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1)
print("ready", flush=True)
sys.stdin.readline()


def b():
    ids["b"] = threading.get_native_id()
    c = socket.create_connection(srv.getsockname())
    s, _ = srv.accept()
    c.sendall(b"TB:sent-by-thread-b")
    s.recv(100)
    c.close()
    s.close()


def a():
    ids["a"] = threading.get_native_id()
    t = threading.Thread(target=b)
    t.start()
    t.join()


t = threading.Thread(target=a)
t.start()
t.join()
print(json.dumps(ids), flush=True)
