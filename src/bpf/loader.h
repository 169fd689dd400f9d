/* SPDX-License-Identifier: Apache-2.0 */
/* What loader.c (setup, commands, the main loop) and output.c (stdout: frames, time order) share. */
#ifndef SEQTRACE_LOADER_H
#define SEQTRACE_LOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <time.h>
#include <linux/types.h>

#define EXIT_USAGE 1
#define EXIT_UNAVAILABLE 2
#define EXIT_LOAD 3

#define DRAIN_MS 15          /* the ring buffer is drained at least this often */
#define FLUSH_NS 50000000ULL /* the CPUs' batches are flushed and events written this often */
/* A write-out takes the events stamped more than this before it: a socket call held up this
 * long after its bytes moved (a preempted vCPU, softirqs) is still stamped when they moved,
 * not at the write-out it missed (output.c, "Order"; seqtrace.bpf.c, event_ts). */
#define WRITE_LAG_NS 10000000ULL

struct ring_buffer;

/* The array *arr of *cap elements of `size` bytes made to hold at least `need` (its capacity
 * doubled from 16 as often as that takes; the go and tls commands' lists). false: no memory,
 * the array as it was. */
static inline bool grow_array(void **arr, int *cap, int need, size_t size)
{
	if (need <= *cap)
		return true;
	int c = *cap ? *cap : 16;
	while (c < need)
		c *= 2;
	void *a = realloc(*arr, (size_t)c * size);
	if (!a)
		return false;
	*arr = a;
	*cap = c;
	return true;
}

extern bool out_broken;   /* a write to stdout failed: the loader stops */

/* --exec-env NAME: variables whose `NAME=value` an exec's frame carries after its st_proc_event,
 * read from /proc/PID/environ as the loader takes the event (output.c, take_exec). */
#define EXEC_ENV_NAMES 16
#define EXEC_ENV_NAME_MAX 64
#define EXEC_ENV_BYTES 1024 /* the most bytes of them one exec frame carries */
extern const char *exec_env[EXEC_ENV_NAMES];
extern size_t exec_env_len[EXEC_ENV_NAMES]; /* strlen of each, measured once */
extern int n_exec_env;
extern __u64 late_events; /* events that arrived after their time was written (should stay 0) */
extern __u64 tuple_drops; /* records dropped for want of their tuple */

/* One frame on stdout: a u32 little-endian length, then the bytes (an st_kind first). */
void frame(const void *data, __u32 len);
__u64 now_ns(clockid_t c);

/* Before the first event. flush_fd: flush_cpu, or -1 without batching; tuple_gen: the
 * kernel's, in its mmap'd .bss. Returns false without memory. */
bool output_init(int ncpus, int flush_fd, __u32 *tuple_gen);
/* Once a second: gives back what a grown buffer left free. */
void output_trim(void);
void output_free(void);
/* The ring buffer's callback: one kernel record (an event, or a batch of them). */
int on_event(void *ctx, void *data, size_t len);
/* Read the ring buffer; every FLUSH_NS (now: at once; all: at exit, everything) flush every
 * CPU's batch and write out, in time order, what is complete. */
void drain(struct ring_buffer *rb, bool all, bool now);

#endif /* SEQTRACE_LOADER_H */
