"""HTTP over a Unix stream socket, for capture.test.ts. Usage: unixsock.py PATH.

After 'go': a listener on the socket file PATH; a client connects and writes a request in two
calls (write, then sendmsg of two buffers); the server reads it in two (8 bytes, then the rest),
answers in one call and closes; the client reads the answer and then the end (a read of 0
bytes). Then a datagram socket pair and an abstract stream socket move a few bytes each. Prints
one JSON line {"pid", "request", "response"}."""
import json
import os
import socket
import sys

path = sys.argv[1]
REQUEST = b"GET /unix/1 HTTP/1.1\r\nHost: localhost\r\nX-Part: two\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
print("ready", flush=True)
sys.stdin.readline()

listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(path)
listener.listen(1)
client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
client.connect(path)
server, _ = listener.accept()

os.write(client.fileno(), REQUEST[:10])
client.sendmsg([REQUEST[10:30], REQUEST[30:]])
got = server.recv(8)
while len(got) < len(REQUEST):
    got += server.recv(4096)
assert got == REQUEST, got
server.sendall(RESPONSE)
server.close()
answer = b""
while True:
    chunk = client.recv(4096)
    if not chunk:
        break
    answer += chunk
assert answer == RESPONSE, answer
client.close()
listener.close()
os.unlink(path)

# not streams, or not HTTP: a datagram pair is not captured at all
d1, d2 = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
d1.send(b"DGRAM hello")
d2.recv(100)
# an abstract name
al = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
al.bind("\0seqtrace-abstract-%d" % os.getpid())
al.listen(1)
ac = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
ac.connect("\0seqtrace-abstract-%d" % os.getpid())
asrv, _ = al.accept()
ac.sendall(b"ABSTRACT ping")
asrv.recv(100)
print(json.dumps({"pid": os.getpid(), "request": len(REQUEST), "response": len(RESPONSE)}), flush=True)
