// For bench/dispatch-cost.sh: N non-blocking receives on an idle loopback TCP connection, each
// returning EAGAIN at once (the read an event-loop server makes after each request), timed
// with CLOCK_MONOTONIC. Every one fires the sock_recv_length tracepoint, so the difference
// with and without the loader attached is what the kernel's dispatch to the program and the
// program's untraced return cost a process that is not traced. Prints ns per call.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
static long long now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000000000LL + t.tv_nsec;
}
int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 2000000;
  int l = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
  socklen_t al = sizeof a;
  if (bind(l, (void *)&a, sizeof a) || listen(l, 1) || getsockname(l, (void *)&a, &al)) { perror("eagain: listen"); return 1; }
  int c = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(c, (void *)&a, sizeof a)) { perror("eagain: connect"); return 1; }
  int s = accept(l, 0, 0);
  if (s < 0 || fcntl(s, F_SETFL, O_NONBLOCK)) { perror("eagain: accept"); return 1; }
  char b[64];
  for (long i = 0; i < n / 10; i++) recv(s, b, sizeof b, 0); /* warm up */
  long long t0 = now_ns();
  for (long i = 0; i < n; i++) recv(s, b, sizeof b, 0);
  printf("%.1f\n", (double)(now_ns() - t0) / n);
  return 0;
}
