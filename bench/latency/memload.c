// Memory work at a fixed rate on one CPU, for bench/latency-disturb.sh: what it does to a
// server's latency on the other CPU (docs/agent.md, "In the steady state").
//   memload MODE SECONDS RATE [MIB=256]
// Every 10 ms, RATE / 100 units of MODE:
//   faults       pages of a private area dropped (MADV_DONTNEED) then written: one minor fault each
//   stream       pages of an area it keeps, written whole (memory traffic, no faults)
//   random       bytes at random in a MIB area it keeps (a cache and TLB miss each, 4 KiB pages)
//   random-huge  the same on transparent huge pages (MADV_HUGEPAGE: few TLB misses)
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define PAGE 4096
#define HUGE (2UL << 20)

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	int faults = !strcmp(mode, "faults"), stream = !strcmp(mode, "stream");
	int random = !strcmp(mode, "random"), huge = !strcmp(mode, "random-huge");
	if (argc < 4 || argc > 5 || !(faults || stream || random || huge) || atof(argv[2]) <= 0 || atol(argv[3]) < 100) {
		fprintf(stderr, "usage: memload faults|stream|random|random-huge SECONDS RATE (at least 100) [MIB=256]\n");
		return 2;
	}
	double secs = atof(argv[2]);
	long per_tick = atol(argv[3]) / 100;
	size_t size = faults || stream ? (size_t)per_tick * PAGE : (size_t)(argc == 5 ? atol(argv[4]) : 256) << 20;
	char *area = mmap(NULL, size + HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	area = (char *)(((unsigned long)area + HUGE - 1) & ~(HUGE - 1)); /* huge pages need 2 MiB alignment */
	if (huge && madvise(area, size, MADV_HUGEPAGE))
		perror("madvise(MADV_HUGEPAGE)");
	memset(area, 1, size);
	unsigned long x = 88172645463325252UL; /* xorshift64 */
	struct timespec tick = { 0, 10 * 1000 * 1000 };
	for (long i = 0; i < secs * 100; i++) {
		if (faults) {
			madvise(area, size, MADV_DONTNEED);
			for (size_t off = 0; off < size; off += PAGE)
				area[off] = 1;
		} else if (stream) {
			memset(area, (int)i, size);
		} else {
			for (long k = 0; k < per_tick; k++) {
				x ^= x << 13;
				x ^= x >> 7;
				x ^= x << 17;
				area[x % size]++;
			}
		}
		nanosleep(&tick, NULL);
	}
	return 0;
}
