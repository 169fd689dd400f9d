// Page faults or memory writes at a fixed rate, for bench/latency-disturb.sh: what a process's
// page-table work or memory traffic on one CPU does to a server's latency on the other
// (docs/agent.md, "What the rise is not").
//   faults SECONDS PAGES_PER_SECOND [stream]
// Every 10 ms: MADV_DONTNEED on a private anonymous area of PAGES_PER_SECOND / 100 pages, then a
// write to each page (one minor fault each). With "stream": no MADV_DONTNEED, every byte of the
// area written instead (memory traffic, no fault after the first pass).
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

int main(int argc, char **argv)
{
	if (argc < 3 || argc > 4 || atof(argv[1]) <= 0 || atol(argv[2]) < 100) {
		fprintf(stderr, "usage: faults SECONDS PAGES_PER_SECOND (at least 100) [stream]\n");
		return 2;
	}
	double secs = atof(argv[1]);
	size_t size = (size_t)(atol(argv[2]) / 100) * 4096;
	char *area = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	int stream = argc == 4 && !strcmp(argv[3], "stream");
	struct timespec tick = { 0, 10 * 1000 * 1000 };
	for (long i = 0; i < secs * 100; i++) {
		if (stream) {
			memset(area, (int)i, size);
		} else {
			madvise(area, size, MADV_DONTNEED);
			for (size_t off = 0; off < size; off += 4096)
				area[off] = 1;
		}
		nanosleep(&tick, NULL);
	}
	return 0;
}
