"""A send whose call is held up after its bytes left, for capture.test.ts: its event must carry
the time the bytes left, not a time after the peer read them. Usage: heldsend.py 4|6 N [reply].

The test holds the main thread, the sender, for a few milliseconds in each network softirq it
runs (bpftrace on napi:napi_poll, filtered by its tid), as a busy host or a preempted vCPU
would. Over loopback a send's bytes reach the peer in that softirq, inside the send call, so
the reader thread, on the other CPU, reads them while the call is held, and the reader's ACK
waits in the sender's socket backlog until the call releases the socket.

After 'go', N times: the main thread sends Dn, the reader thread reads it; with `reply` the
reader then answers Rn at once, which reaches the sender's socket while its call is still held,
and the sender's socket, still in quick-ACK mode (the messages are 60 ms apart, past the
delayed-ACK timeout, so it never turns to delayed ACKs), acknowledges that at once: a segment the
sender's socket transmits after its bytes left. Prints one JSON line {"pid", "sends": [[before,
after], ...], "reads": [after, ...]}, times in CLOCK_MONOTONIC ns (the clock of the events'
ts_ns)."""
import json
import os
import sys
import threading
import time

from loopback import recv_exact, tcp_pair

n = int(sys.argv[2])
reply = sys.argv[3:] == ["reply"]
_, _, listener, client, server = tcp_pair(sys.argv[1])
cpus = sorted(os.sched_getaffinity(0))
msgs = [b"D%d:sent-while-the-call-is-held" % i for i in range(n)]
reads = []
read_done = threading.Semaphore(0)


def reader():
    if len(cpus) > 1:
        os.sched_setaffinity(0, {cpus[1]})
    for m in msgs:
        recv_exact(server, len(m))
        reads.append(time.monotonic_ns())
        if reply:
            server.sendall(b"R" + m[1:])
        read_done.release()


if len(cpus) > 1:
    os.sched_setaffinity(0, {cpus[0]})
print("ready", flush=True)
sys.stdin.readline()
t = threading.Thread(target=reader)
t.start()
time.sleep(0.05)
sends = []
for m in msgs:
    before = time.monotonic_ns()
    client.sendall(m)
    sends.append([before, time.monotonic_ns()])
    read_done.acquire()
    if reply:
        recv_exact(client, len(m))
    time.sleep(0.06 if reply else 0.02)
t.join()
client.close()
server.close()
print(json.dumps({"pid": os.getpid(), "sends": sends, "reads": reads}), flush=True)
