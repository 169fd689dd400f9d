// A loopback TCP ping-pong in one process, for bench/kernel-event-cost.sh: the client writes an
// HTTP request, the server end reads it and writes a response, the client reads it; N times
// (4 socket calls, 4 data events when traced). With WAIT set it starts when a byte arrives on
// stdin (so the loader can be told to trace it first). With IOV set the messages go through
// writev (three entries each: the kernel side's iovec walk) and readv. With RESP set the
// messages are Redis's (RESP: PING, +PONG), not HTTP. With COOKIES=FILE it writes the two
// sockets' cookies (SO_COOKIE) there before waiting. With UNIX set the two ends are a Unix
// stream socket pair instead. Prints nothing.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 100000;
  int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
  socklen_t al = sizeof a;
  bind(l, (void *)&a, sizeof a); listen(l, 1); getsockname(l, (void *)&a, &al);
  int c, s;
  if (getenv("UNIX")) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) return 1;
    c = sv[0];
    s = sv[1];
  } else {
    c = socket(AF_INET, SOCK_STREAM, 0);
    connect(c, (void *)&a, sizeof a);
    s = accept(l, 0, 0);
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  char req[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n";
  char resp[] = "HTTP/1.1 200 OK\r\nDate: Wed, 25 Nov 2026 10:00:00 GMT\r\nContent-Length: 6\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\n";
  if (getenv("RESP") && getenv("IOV")) return 2; /* the iovec split is the HTTP messages' */
  if (getenv("RESP")) {
    strcpy(req, "*1\r\n$4\r\nPING\r\n");
    strcpy(resp, "+PONG\r\n");
  }
  char buf[4096];
  if (getenv("COOKIES")) {
    unsigned long long cc = 0, sc = 0;
    socklen_t cl = sizeof cc;
    getsockopt(c, SOL_SOCKET, 57 /* SO_COOKIE */, &cc, &cl);
    getsockopt(s, SOL_SOCKET, 57, &sc, &cl);
    FILE *f = fopen(getenv("COOKIES"), "w");
    if (!f) return 1;
    fprintf(f, "%llu %llu\n", cc, sc);
    fclose(f);
  }
  if (getenv("WAIT")) { char x; read(0, &x, 1); }
  if (getenv("IOV")) {
    struct iovec rq[3] = {{req, 16}, {req + 16, 22}, {req + 38, sizeof req - 39}};
    struct iovec rs[3] = {{resp, 17}, {resp + 17, 37}, {resp + 54, sizeof resp - 55}};
    struct iovec in = {buf, sizeof buf};
    for (long i = 0; i < n; i++) {
      writev(c, rq, 3);
      readv(s, &in, 1);
      writev(s, rs, 3);
      readv(c, &in, 1);
    }
    return 0;
  }
  size_t ql = strlen(req), rl = strlen(resp);
  for (long i = 0; i < n; i++) {
    write(c, req, ql);
    read(s, buf, sizeof buf);
    write(s, resp, rl);
    read(c, buf, sizeof buf);
  }
  return 0;
}
