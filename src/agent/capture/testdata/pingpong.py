"""Round trips across CPUs for capture.test.ts (the kernel batches events per CPU; the loader
must put them back in time order). Usage: pingpong.py N IDLE_MS.

After 'go' on stdin: a client thread pinned to the first CPU sends "Q<i>:" + padding, a
server thread pinned to the last CPU reads it and answers "A<i>:" + padding, N times over one
loopback TCP connection; then both ends close. Prints one JSON line {"pid", "client",
"server", "cpus"}. Then, with IDLE_MS > 0, one last marked message "IDLE:" is sent and read
by the client thread pinned to the last CPU, and the process sleeps IDLE_MS before it
exits: nothing else of this process runs on that CPU while the test waits for the event."""
import json
import os
import socket
import sys
import threading
import time

from loopback import recv_exact

n = int(sys.argv[1])
idle_ms = int(sys.argv[2])
cpus = sorted(os.sched_getaffinity(0))
first, last = cpus[0], cpus[-1]
pad = b"." * 150
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1)
ids = {"pid": os.getpid(), "cpus": len(cpus)}
print("ready", flush=True)
sys.stdin.readline()


def msg(tag, i):
    return (tag + str(i).zfill(6) + ":").encode() + pad


def server():
    os.sched_setaffinity(0, {last})  # pid 0: this thread
    ids["server"] = threading.get_native_id()
    s, _ = srv.accept()
    for i in range(n):
        recv_exact(s, len(msg("Q", i)))
        s.sendall(msg("A", i))
    s.close()


def client():
    os.sched_setaffinity(0, {first})
    ids["client"] = threading.get_native_id()
    c = socket.create_connection(srv.getsockname())
    for i in range(n):
        c.sendall(msg("Q", i))
        recv_exact(c, len(msg("A", i)))
    c.close()


t1 = threading.Thread(target=server)
t1.start()
t2 = threading.Thread(target=client)
t2.start()
t2.join()
t1.join()
print(json.dumps(ids), flush=True)

if idle_ms > 0:
    os.sched_setaffinity(0, {last})
    c = socket.create_connection(srv.getsockname())
    s, _ = srv.accept()
    c.sendall(b"IDLE:one-message-then-nothing")
    recv_exact(s, 29)
    time.sleep(idle_ms / 1000)
    c.close()
    s.close()
