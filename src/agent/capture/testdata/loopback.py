"""The connected loopback TCP pair the capture testdata scripts move their bytes over, and the
exact read they wait for a whole message with."""
import socket


def tcp_pair(version):
    """version "6": over ::1, else 127.0.0.1. Returns (family, host, listener, client, server):
    the client end connected, the server end accepted."""
    family = socket.AF_INET6 if version == "6" else socket.AF_INET
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.bind((host, 0))
    listener.listen(1)
    client = socket.socket(family, socket.SOCK_STREAM)
    client.connect(listener.getsockname()[:2])
    server, _ = listener.accept()
    return family, host, listener, client, server


def recv_exact(s, size):
    """Reads exactly size bytes from socket s (a peer that closes first is an error)."""
    got = b""
    while len(got) < size:
        chunk = s.recv(size - len(got))
        if not chunk:
            raise EOFError("peer closed")
        got += chunk
    return got
