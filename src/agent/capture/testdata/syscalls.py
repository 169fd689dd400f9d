#!/usr/bin/env python3
"""Moves marked messages over one loopback TCP connection with every system call the
capture must cover, so that capture tests can check what the kernel side saw.

usage: syscalls.py 4|6
Prints "ready PID" and waits for a line on stdin (the test traces PID meanwhile), then runs
the operations in lockstep (the client sends one, the server thread receives all of it,
then the next), forks a child that writes once, and prints one JSON line describing what
was done: {"pid", "clientTid", "serverTid", "childPid", "ops": [...], "udpReceived",
"unixReceived"} (the last two: bytes moved on sockets that are not TCP, which make no events).
"""
import ctypes
import json
import os
import socket
import sys
import tempfile
import threading

from loopback import tcp_pair

family, host, listener, client, server = tcp_pair(sys.argv[1] if sys.argv[1:] else "4")
# small writes must leave as written: no coalescing on the client
client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

libc = ctypes.CDLL(None, use_errno=True)


class iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class msghdr(ctypes.Structure):
    _fields_ = [("msg_name", ctypes.c_void_p), ("msg_namelen", ctypes.c_uint32),
                ("msg_iov", ctypes.POINTER(iovec)), ("msg_iovlen", ctypes.c_size_t),
                ("msg_control", ctypes.c_void_p), ("msg_controllen", ctypes.c_size_t),
                ("msg_flags", ctypes.c_int)]


class mmsghdr(ctypes.Structure):
    _fields_ = [("msg_hdr", msghdr), ("msg_len", ctypes.c_uint)]


def mmsg_vec(bufs):
    """An mmsghdr array, one message of one iovec per buffer (buffers kept alive by caller)."""
    vec = (mmsghdr * len(bufs))()
    iovs = []
    for i, b in enumerate(bufs):
        iov = iovec(ctypes.cast(b, ctypes.c_void_p), len(b))
        iovs.append(iov)
        vec[i].msg_hdr.msg_iov = ctypes.pointer(iov)
        vec[i].msg_hdr.msg_iovlen = 1
    return vec, iovs


def call(name, *args):
    r = getattr(libc, name)(*args)
    if r < 0:
        raise OSError(ctypes.get_errno(), name)
    return r


MM = [b"MM1:first-of-sendmmsg", b"MM2:second-of-sendmmsg", b"MM3:third"]
BIG = b"BIG-HEAD:" + bytes(range(97, 123)) * 4000 + b":BIG-TAIL-END-MARKER-0123456789"
# Varnish writes a head as two iovec entries per header line: 97 entries, and 307 whose bytes
# are more than the head captures (its tail is the end of the last entry)
def many(tag, lines):
    return [b"GET", b" ", tag, b" ", b"HTTP/1.1", b"\r\n"] + [p for i in range(lines) for p in (b"X-H%03d: v" % i, b"\r\n")] + [b"\r\n"]
MANY = many(b"/many", 45)
MORE = many(b"/more", 150)
tmp = tempfile.NamedTemporaryFile(prefix="seqtrace-sendfile-")
tmp.write(b"SF1:sent-with-sendfile")
tmp.flush()

# (name, client send, bytes sent, server receive)
ops = [
    ("write/read", lambda: os.write(client.fileno(), b"W1:write-then-read"), 18,
     lambda n: os.read(server.fileno(), n)),
    ("writev/readv", lambda: os.writev(client.fileno(), [b"V1:", b"writev-", b"readv"]), 15,
     lambda n: (lambda a, b: (os.readv(server.fileno(), [a, b]), bytes(a) + bytes(b))[1])(bytearray(4), bytearray(n - 4))),
    ("writev, 97 entries", lambda: os.writev(client.fileno(), MANY), len(b"".join(MANY)), None),
    ("sendmsg, 307 entries", lambda: client.sendmsg(MORE), len(b"".join(MORE)), None),
    # each received after a peek at its first bytes (PHP's streams peek to see whether a
    # connection is alive): a peek moves nothing and is no event
    ("sendto/recvfrom", lambda: client.send(b"S1:sendto-recvfrom"), 18,
     lambda n: (server.recv(5, socket.MSG_PEEK), server.recv(n))[1]),
    ("sendmsg/recvmsg", lambda: client.sendmsg([b"M1:", b"sendmsg-", b"recvmsg"]), 18,
     lambda n: (server.recvmsg(5, 0, socket.MSG_PEEK), server.recvmsg(n)[0])[1]),
    ("sendmmsg/recvmmsg", None, sum(len(m) for m in MM), None),
    ("sendfile", lambda: os.sendfile(client.fileno(), tmp.fileno(), 0, 22), 22,
     lambda n: os.read(server.fileno(), n)),
    ("splice", None, 19, lambda n: os.read(server.fileno(), n)),
    ("big", lambda: client.sendall(BIG) or len(BIG), len(BIG), None),
]


def send_mmsg():
    bufs = [ctypes.create_string_buffer(m, len(m)) for m in MM]
    vec, keep = mmsg_vec(bufs)
    return call("sendmmsg", client.fileno(), vec, len(MM), 0)


def recv_mmsg(_n):
    bufs = [ctypes.create_string_buffer(len(m)) for m in MM]
    vec, keep = mmsg_vec(bufs)
    got = 0
    while got < len(MM):  # a message may arrive after the first was read
        sub = (mmsghdr * (len(MM) - got)).from_address(ctypes.addressof(vec) + got * ctypes.sizeof(mmsghdr))
        got += call("recvmmsg", server.fileno(), sub, len(MM) - got, 0, None)
    return b"".join(b.raw for b in bufs)


def send_splice():
    r, w = os.pipe()
    os.write(w, b"SP1:sent-with-splice")
    n = os.splice(r, client.fileno(), 19)
    os.close(r)
    os.close(w)
    return n


def recv_all(n):
    out = b""
    while len(out) < n:
        chunk = server.recv(min(65536, n - len(out)))
        if not chunk:
            break
        out += chunk
    return out


info = {"pid": os.getpid(), "clientTid": threading.get_native_id(), "ops": []}
step = threading.Semaphore(0)
done = threading.Semaphore(0)


def server_side():
    info["serverTid"] = threading.get_native_id()
    for name, _s, n, recv in ops:
        step.acquire()
        if name == "sendmmsg/recvmmsg":
            recv = recv_mmsg
        elif recv is None:
            recv = recv_all
        got = b""
        while len(got) < n:
            part = recv(n - len(got))
            if not part:
                break
            got += part
        info["ops"][-1]["received"] = len(got)
        done.release()
    step.acquire()  # the forked child's write
    info["childReceived"] = server.recv(100).decode()
    done.release()


print("ready", os.getpid(), flush=True)
sys.stdin.readline()
t = threading.Thread(target=server_side)
t.start()
for name, send, n, _r in ops:
    info["ops"].append({"name": name, "bytes": n})
    step.release()
    if name == "sendmmsg/recvmmsg":
        send_mmsg()
    elif name == "splice":
        send_splice()
    else:
        send()
    done.acquire()

# Neither TCP nor a Unix stream: a UDP datagram and an AF_UNIX datagram of the same traced
# process make no events (the socket tracepoints fire for every socket).
udp_in = socket.socket(family, socket.SOCK_DGRAM)
udp_in.bind((host, 0))
udp_out = socket.socket(family, socket.SOCK_DGRAM)
udp_out.sendto(b"UDP1:not-tcp", udp_in.getsockname()[:2])
info["udpReceived"] = udp_in.recv(100).decode()
unix_a, unix_b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
unix_a.send(b"UNIX1:not-tcp")
info["unixReceived"] = unix_b.recv(100).decode()
for s in (udp_in, udp_out, unix_a, unix_b):
    s.close()

child = os.fork()
if child == 0:
    os.write(client.fileno(), b"F1:from-forked-child")
    os._exit(0)
os.waitpid(child, 0)
info["childPid"] = child
step.release()
done.acquire()
t.join()
client.close()
server.close()
print(json.dumps(info), flush=True)
