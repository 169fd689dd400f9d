// For bench/dispatch-cost.sh: N non-blocking receives on an idle loopback TCP connection, each
// returning EAGAIN at once (the read an event-loop server makes after each request), timed
// with CLOCK_MONOTONIC. Every one fires the sock_recv_length tracepoint, so the difference
// with and without the loader attached is what the kernel's dispatch to the program and the
// program's untraced return cost a process that is not traced. Prints ns per call.
//   eagain N [EVICT_KIB]
// EVICT_KIB > 0: between two calls the process reads a buffer of that many KiB (a line in
// every 64 bytes), as a server's own work between its socket calls pushes the dispatch's
// memory (the link, the program, its counter, its code, the `traced` word) out of the CPU's
// caches; each call is then timed alone and the median is printed. 0 (default): a hot loop.
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
static int by_value(const void *a, const void *b) {
  long long x = *(const long long *)a, y = *(const long long *)b;
  return (x > y) - (x < y);
}
int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 2000000;
  long evict = argc > 2 ? atol(argv[2]) * 1024 : 0;
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
  if (!evict) {
    long long t0 = now_ns();
    for (long i = 0; i < n; i++) recv(s, b, sizeof b, 0);
    printf("%.1f\n", (double)(now_ns() - t0) / n);
    return 0;
  }
  volatile unsigned char *mem = malloc(evict);
  long long *took = malloc(n * sizeof(*took));
  if (!mem || !took) { perror("eagain: malloc"); return 1; }
  for (long k = 0; k < evict; k += 64) mem[k] = (unsigned char)k;
  for (long i = 0; i < n; i++) {
    for (long k = 0; k < evict; k += 64) (void)mem[k]; /* volatile: every read happens */
    long long t0 = now_ns();
    recv(s, b, sizeof b, 0);
    took[i] = now_ns() - t0;
  }
  qsort(took, n, sizeof(*took), by_value);
  printf("%lld\n", took[n / 2]);
  return 0;
}
