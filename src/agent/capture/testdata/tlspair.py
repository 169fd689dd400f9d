"""HTTPS between two threads of one process, through Python's ssl module (OpenSSL with a socket
BIO), for capture.test.ts. Usage: tlspair.py CERT KEY [4|6] [readahead].

After 'go': a TLS listener on 127.0.0.1 (or ::1); a client thread connects and, on one keep-alive
connection, sends three requests: a small GET, a POST whose 40,000-byte body spans several TLS
records, and a GET the server reads 7 bytes at a time (so most of its reads are answered from a
record read before). The server answers each with Content-Length. With `readahead` the client
reads ahead (OpenSSL's read_ahead, as nginx does) and waits 50 ms before reading each answer,
which the server writes in two records (head, then body, TCP_NODELAY): one receive takes both. Prints one JSON line {"pid",
"port", "requests": [...], "responses": [...]} (the messages' bytes as latin-1 strings)."""
import json
import os
import socket
import ssl
import sys
import threading
import time

cert, key = sys.argv[1], sys.argv[2]
host = "::1" if sys.argv[3:4] == ["6"] else "127.0.0.1"
readahead = sys.argv[4:5] == ["readahead"]
BODY = b"x" * 40000
REQUESTS = [
    b"GET /tls/1 HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"POST /tls/2 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 40000\r\n\r\n" + BODY,
    b"GET /tls/3 HTTP/1.1\r\nHost: localhost\r\nX-Small-Reads: yes\r\n\r\n",
]
RESPONSES = [b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(b), b) for b in (b"one", b"two!", b"three")]

server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
server_ctx.load_cert_chain(cert, key)
client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
client_ctx.load_verify_locations(cert)
if readahead:
    # Python has no API for it: SSL_CTX_set_read_ahead on the context's SSL_CTX (CPython keeps
    # its pointer right after the object header)
    import ctypes
    libssl = ctypes.CDLL("libssl.so.3")
    libssl.SSL_CTX_ctrl.restype = ctypes.c_long
    libssl.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
    ssl_ctx = ctypes.c_void_p.from_address(id(client_ctx) + 16).value
    libssl.SSL_CTX_ctrl(ssl_ctx, 41, 1, None)  # SSL_CTRL_SET_READ_AHEAD
    assert libssl.SSL_CTX_ctrl(ssl_ctx, 40, 0, None) == 1  # SSL_CTRL_GET_READ_AHEAD
listener = socket.create_server((host, 0), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
port = listener.getsockname()[1]
print("ready", flush=True)
sys.stdin.readline()


def read_exactly(s, n, step):
    got = b""
    while len(got) < n:
        chunk = s.recv(min(step, n - len(got)))
        assert chunk
        got += chunk
    return got


def serve():
    conn, _ = listener.accept()
    with server_ctx.wrap_socket(conn, server_side=True) as s:
        for i, req in enumerate(REQUESTS):
            got = read_exactly(s, len(req), 7 if i == 2 else 65536)
            assert got == req, got[:100]
            if readahead:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                cut = RESPONSES[i].index(b"\r\n\r\n") + 4
                s.sendall(RESPONSES[i][:cut])
                s.sendall(RESPONSES[i][cut:])
            else:
                s.sendall(RESPONSES[i])
        s.recv(1)  # the client's close


server = threading.Thread(target=serve)
server.start()
with client_ctx.wrap_socket(socket.create_connection((host, port)), server_hostname="localhost") as c:
    for i, req in enumerate(REQUESTS):
        c.sendall(req)
        if readahead:
            time.sleep(0.05)
        assert read_exactly(c, len(RESPONSES[i]), 65536) == RESPONSES[i]
server.join()
listener.close()
print(json.dumps({"pid": os.getpid(), "port": port,
                  "requests": [r.decode("latin-1") for r in REQUESTS],
                  "responses": [r.decode("latin-1") for r in RESPONSES]}), flush=True)
