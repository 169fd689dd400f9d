// SPDX-License-Identifier: Apache-2.0
/*
 * The loader's stdout (loader.c): frames, and the kernel's events put back into one time order.
 * The kernel sends per-CPU batches of compact records; here they become the st_data_event and
 * other frames of seqtrace.h, written in ts_ns order at every write-out (see "Order").
 */
#define _GNU_SOURCE
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <malloc.h>
#include <fcntl.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "seqtrace.h"
#include "loader.h"

/* ------------------------------------------------------------ output frames */

bool out_broken;

void frame(const void *data, __u32 len)
{
	/* unlocked: only the main thread writes; the lock per call was ~8 % of the loader's time */
	if (fwrite_unlocked(&len, sizeof(len), 1, stdout) != 1 || fwrite_unlocked(data, len, 1, stdout) != 1)
		out_broken = true;
}

__u64 now_ns(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return (__u64)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

/* ------------------------------------------------------------ order */
/*
 * The kernel collects events per CPU (batch.bpf.h, `batches`), so events of different CPUs
 * reach the ring buffer out of time order: a thread event on CPU 0 could come after the new
 * thread's send on CPU 1, a close after data still waiting in another CPU's batch. Every
 * write-out (drain(): every FLUSH_NS, after an exec event, on `stats`, at exit) therefore:
 * takes a cutoff T; flushes every CPU's batch (flush_cpu run on that CPU with T, retried while
 * an event is being built there), after which every event built before is in the ring buffer
 * and every event built after is stamped T or later; reads the ring buffer into `pend`; and
 * writes out the pending events stamped before T in ts_ns order (ties in arrival order). The
 * others wait for the next write-out. So stdout carries one time order, as the single ring
 * buffer gave before batching.
 *
 * T lags the write-out's time (CLOCK_MONOTONIC, the clock of ts_ns) by WRITE_LAG_NS. A data
 * event is stamped when its call moved the bytes, which can be well before the tracepoint runs
 * when the call was held up in between; had T been the write-out's time, such a call spanning
 * a write-out would have had to take T instead (after the peer had read the bytes, say). A
 * write-out on an exec event takes T just past the newest exec (the agent decides at exec,
 * and need not wait for the next write-out); `stats` and exit take their own time (all that
 * came before them). T never goes back: a write-out less than WRITE_LAG_NS after a `stats`
 * takes that one's T.
 */
struct pending {
	__u64 ts;
	__u32 off; /* in pend.buf */
	__u32 len;
};
struct pend_list {
	char *buf;
	size_t used, cap;
	struct pending *ev;
	size_t n, cap_n;
};
static struct pend_list pend, spare;
static __u64 written_upto;  /* every event stamped before this has been written */
__u64 late_events;
static int flush_fd = -1;   /* flush_cpu, or -1 without batching */
static bool exec_seen;      /* an exec event was read: write out now (the agent decides at exec) */
static __u64 exec_newest;   /* the newest exec event's ts_ns */
static int ncpus;

/* A buffer grew since the last output_trim(): realloc may have left its old block free. */
static bool grew;

static void *grow(void *p, size_t *cap, size_t need, size_t unit)
{
	if (need <= *cap)
		return p;
	grew = true;
	size_t c = *cap ? *cap : 4096;
	while (c < need)
		c *= 2;
	void *q = realloc(p, c * unit);
	if (!q) {
		fprintf(stderr, "seqtrace-loader: out of memory for %zu pending events\n", need);
		exit(EXIT_LOAD);
	}
	*cap = c;
	return q;
}

/* Room for an event of len bytes at the end of l, stamped ts: filled by the caller. */
static void *pend_reserve(struct pend_list *l, __u64 ts, __u32 len)
{
	l->buf = grow(l->buf, &l->cap, l->used + len, 1);
	l->ev = grow(l->ev, &l->cap_n, l->n + 1, sizeof(*l->ev));
	void *at = l->buf + l->used;
	l->ev[l->n++] = (struct pending){ .ts = ts, .off = (__u32)l->used, .len = len };
	l->used += len;
	return at;
}

static void pend_add(struct pend_list *l, __u64 ts, const void *data, __u32 len)
{
	memcpy(pend_reserve(l, ts, len), data, len);
}

/* ts_ns of a kernel event, by its kind (every kernel event has one). */
static bool event_ts(const void *data, size_t len, __u64 *ts)
{
	size_t at;
	switch (*(const __u8 *)data) {
	case ST_EV_CLOSE:
	case ST_EV_SHUTDOWN:
		at = offsetof(struct st_close_event, ts_ns);
		break;
	case ST_EV_EXEC:
	case ST_EV_EXIT:
		at = offsetof(struct st_proc_event, ts_ns);
		break;
	case ST_EV_THREAD:
	case ST_EV_THREAD_EXIT:
		at = offsetof(struct st_thread_event, ts_ns);
		break;
	case ST_EV_GOROUTINE:
		at = offsetof(struct st_goroutine_event, ts_ns);
		break;
	default:
		return false;
	}
	if (len < at + sizeof(*ts))
		return false;
	memcpy(ts, (const char *)data + at, sizeof(*ts));
	return true;
}

/* ------------------------------------------------------------ data records */
/*
 * The kernel writes a data event as an st_data_rec (seqtrace.h): a 40-byte header, the head and
 * tail, the goid when there is one, and the 4-tuple only when the socket was not in the CPU's
 * cache of recent sockets. Here each record becomes the st_data_event of stdout. `tuples` is
 * that cache of every CPU as the CPU's batches filled it: a batched record with a tuple filled
 * its slot in the kernel, so it fills the same slot here, in the CPU's order; a record without
 * one takes the slot's tuple. A record whose socket the slot does not hold (its batch lost, or
 * anything unforeseen) is dropped and counted, and tuple_gen bumped: the kernel then empties
 * every CPU's cache and each socket's next event brings its tuple. Never a wrong tuple.
 */
struct tuple_slot {
	__u64 id; /* socket cookie, 0: empty */
	__u8 family; /* 4, 6, ST_FAMILY_UNIX */
	__u16 src_port, dst_port;
	__u16 path_len; /* Unix */
	__u8 src_addr[16], dst_addr[16]; /* Unix: dst_addr holds the peer's cookie */
	__u8 path[ST_UNIX_PATH];
};
static struct tuple_slot *tuples; /* ncpus * ST_SOCK_CACHE */
__u64 tuple_drops;
static __u32 *tuple_gen;          /* the kernel's, in the mmap'd .bss */
static bool tuple_gen_bumped;     /* once per drain is enough */

static void take_data(const struct st_data_rec *r, int cpu)
{
	__u32 head = r->head_len, tail = r->tail_len;
	const __u8 *p = (const __u8 *)(r + 1);
	const __u8 *h = p, *t = p + ST_ALIGN8(head), *after = t + ST_ALIGN8(tail);
	struct tuple_slot got, *slot = NULL;
	__u64 goid = 0;
	if (r->flags & ST_R_GOID) {
		memcpy(&goid, after, 8);
		after += 8;
	}
	if (cpu >= 0 && cpu < ncpus)
		slot = &tuples[(size_t)cpu * ST_SOCK_CACHE + st_sock_slot(r->sock_id)];
	if (r->flags & ST_R_TUPLE) {
		got = (struct tuple_slot){ .id = r->sock_id };
		if (r->flags & ST_R_UNIX) {
			const struct st_tuple_unix *tu = (const void *)after;
			got.family = ST_FAMILY_UNIX;
			memcpy(got.dst_addr, &tu->peer_id, 8);
			got.path_len = tu->path_len < ST_UNIX_PATH ? tu->path_len : ST_UNIX_PATH;
			memcpy(got.path, tu->path, got.path_len);
		} else if (r->flags & ST_R_V6) {
			const struct st_tuple6 *t6 = (const void *)after;
			got.family = 6;
			got.src_port = t6->src_port;
			got.dst_port = t6->dst_port;
			memcpy(got.src_addr, t6->src_addr, 16);
			memcpy(got.dst_addr, t6->dst_addr, 16);
		} else {
			const struct st_tuple4 *t4 = (const void *)after;
			got.family = 4;
			got.src_port = t4->src_port;
			got.dst_port = t4->dst_port;
			memcpy(got.src_addr, t4->src_addr, 4);
			memcpy(got.dst_addr, t4->dst_addr, 4);
		}
		if (slot)
			*slot = got;
		slot = &got;
	} else if (!slot || slot->id != r->sock_id) {
		tuple_drops++;
		if (tuple_gen && !tuple_gen_bumped) {
			__atomic_fetch_add(tuple_gen, 1, __ATOMIC_SEQ_CST);
			tuple_gen_bumped = true;
		}
		return;
	}
	if (r->ts_ns < written_upto)
		late_events++;
	struct st_data_event *e = pend_reserve(&pend, r->ts_ns, sizeof(*e) + head + slot->path_len);
	*e = (struct st_data_event){
		.kind = ST_EV_DATA, .dir = r->dir, .family = slot->family, .flags = r->flags & (ST_F_NO_PAYLOAD | ST_F_TRUNCATED | ST_F_TLS),
		.pid = r->pid, .tid = r->tid, .seq = r->seq, .ts_ns = r->ts_ns, .sock_id = r->sock_id, .goid = goid,
		.len = r->len, .head_len = head, .tail_len = tail, .src_port = slot->src_port, .dst_port = slot->dst_port,
		.path_len = slot->path_len,
	};
	memcpy(e->src_addr, slot->src_addr, 16);
	memcpy(e->dst_addr, slot->dst_addr, 16);
	memcpy(e->tail, t, tail);
	memcpy(e->head, h, head);
	memcpy(e->head + head, slot->path, slot->path_len);
}

/* Bytes of the kernel record at data (len available), 0 when it does not fit or is unknown. */
static size_t rec_size(const void *data, size_t len)
{
	size_t n;
	if (len < 8) /* every record is at least 8 bytes */
		return 0;
	switch (*(const __u8 *)data) {
	case ST_EV_DATA_REC:
		n = len >= sizeof(struct st_data_rec) ? st_data_rec_size(data) : len + 1;
		break;
	case ST_EV_CLOSE:
	case ST_EV_SHUTDOWN:
		n = sizeof(struct st_close_event);
		break;
	case ST_EV_EXEC:
	case ST_EV_EXIT:
		n = sizeof(struct st_proc_event);
		break;
	case ST_EV_THREAD:
	case ST_EV_THREAD_EXIT:
		n = sizeof(struct st_thread_event);
		break;
	case ST_EV_GOROUTINE:
		n = sizeof(struct st_goroutine_event);
		break;
	default:
		return 0;
	}
	return n <= len ? n : 0;
}

const char *exec_env[EXEC_ENV_NAMES];
size_t exec_env_len[EXEC_ENV_NAMES];
int n_exec_env;

/* /proc/PID/environ, whole (up to 1 MiB), into a buffer kept for the next exec; its length. */
static char *env_buf;
static size_t env_cap;
static size_t read_environ(__u32 pid)
{
	char path[32];
	snprintf(path, sizeof(path), "/proc/%u/environ", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0; /* gone already, or another user's without CAP_SYS_PTRACE */
	size_t n = 0;
	for (;;) {
		if (n == env_cap) {
			if (env_cap >= (1 << 20))
				break;
			env_buf = grow(env_buf, &env_cap, n + 1, 1);
		}
		ssize_t got = read(fd, env_buf + n, env_cap - n);
		if (got <= 0)
			break;
		n += (size_t)got;
	}
	close(fd);
	return n;
}

/*
 * An exec: its record, then `NAME=value\0` for each --exec-env variable of the new image's
 * environment. Read here, tens of microseconds after the exec (the event wakes the loader at
 * once), where the agent reads /proc a millisecond or more later: a client that runs for a few
 * milliseconds (a curl with the service in its environment: `OTEL_SERVICE_NAME=cli curl …`)
 * is often gone by then, its environment with it (docs/agent.md, "From the exec on").
 */
static void take_exec(const void *data, size_t len, __u64 ts)
{
	const struct st_proc_event *e = data;
	char tail[EXEC_ENV_BYTES];
	size_t t = 0, n = read_environ(e->pid);
	for (size_t at = 0; at < n;) {
		const char *s = env_buf + at;
		const char *nul = memchr(s, 0, n - at);
		size_t sl = nul ? (size_t)(nul - s) : n - at;
		for (int k = 0; k < n_exec_env; k++) {
			size_t kl = exec_env_len[k];
			if (sl > kl && s[kl] == '=' && !memcmp(s, exec_env[k], kl) && t + sl + 1 <= sizeof(tail)) {
				memcpy(tail + t, s, sl);
				tail[t + sl] = 0;
				t += sl + 1;
				break;
			}
		}
		at += sl + 1;
	}
	char *at = pend_reserve(&pend, ts, (__u32)(len + t));
	memcpy(at, data, len);
	memcpy(at + len, tail, t);
}

/* One kernel record (not a batch); cpu: the CPU whose batch held it, -1 for one sent alone. */
static void take(const void *data, size_t len, int cpu)
{
	if (*(const __u8 *)data == ST_EV_DATA_REC) {
		if (rec_size(data, len))
			take_data(data, cpu);
		else
			fprintf(stderr, "seqtrace-loader: data record of %zu bytes does not fit its fields: dropped\n", len);
		return;
	}
	__u64 ts;
	if (!event_ts(data, len, &ts)) {
		fprintf(stderr, "seqtrace-loader: unknown kernel event kind %u (%zu bytes) dropped\n", *(const __u8 *)data, len);
		return;
	}
	if (ts < written_upto)
		late_events++;
	if (*(const __u8 *)data == ST_EV_EXEC) {
		exec_seen = true;
		if (ts > exec_newest)
			exec_newest = ts;
		if (n_exec_env > 0) {
			take_exec(data, len, ts);
			return;
		}
	}
	pend_add(&pend, ts, data, (__u32)len);
}

/* A ring buffer record: one event, or a batch of them. */
int on_event(void *ctx, void *data, size_t len)
{
	if (len < 1)
		return 0;
	if (*(__u8 *)data != ST_EV_BATCH) {
		take(data, len, -1);
		return 0;
	}
	const struct st_batch_event *b = data;
	if (len < sizeof(*b))
		return 0;
	const char *p = (const char *)(b + 1), *end = p + (b->bytes < len - sizeof(*b) ? b->bytes : len - sizeof(*b));
	for (__u32 i = 0; i < b->count; i++) {
		size_t n = rec_size(p, p < end ? (size_t)(end - p) : 0);
		if (!n) {
			fprintf(stderr, "seqtrace-loader: batch of CPU %u: record %u of %u (kind %u) unreadable: rest dropped\n",
				b->cpu, i, b->count, p < end ? *(const __u8 *)p : 0);
			break;
		}
		take(p, n, (int)b->cpu);
		p += ST_ALIGN8(n);
	}
	return 0;
}

/* Time order; ties in arrival order (off grows with arrival, so the order is total). */
static bool before(const struct pending *x, const struct pending *y)
{
	return x->ts < y->ts || (x->ts == y->ts && x->off < y->off);
}

static size_t run_end(const struct pending *v, size_t i, size_t n)
{
	while (i + 1 < n && !before(&v[i + 1], &v[i]))
		i++;
	return i + 1;
}

/* Sorts v by before(): a natural merge sort. The events of one CPU's batch arrive in time
 * order, so v is a few long sorted runs and a pass merges pairs of them: n·log(runs), no
 * allocation per write-out (qsort allocated and faulted in a fresh buffer every time and moved
 * each element with memmove: half of the loader's time). */
static void sort_pending(struct pending *v, size_t n)
{
	static struct pending *tmp;
	static size_t tmp_cap;
	if (n < 2 || run_end(v, 0, n) == n)
		return;
	tmp = grow(tmp, &tmp_cap, n, sizeof(*tmp));
	struct pending *src = v, *dst = tmp;
	for (;;) {
		size_t runs = 0;
		for (size_t i = 0; i < n; runs++) {
			size_t m = run_end(src, i, n);
			size_t e = m < n ? run_end(src, m, n) : n;
			size_t a = i, b = m, k = i;
			while (a < m && b < e)
				dst[k++] = before(&src[b], &src[a]) ? src[b++] : src[a++];
			while (a < m)
				dst[k++] = src[a++];
			while (b < e)
				dst[k++] = src[b++];
			i = e;
		}
		struct pending *t = src;
		src = dst;
		dst = t;
		if (runs == 1)
			break;
	}
	if (src != v)
		memcpy(v, src, n * sizeof(*v));
}

/* Write the pending events stamped before upto, in time order; keep the rest. */
static void write_before(__u64 upto)
{
	sort_pending(pend.ev, pend.n);
	size_t i = 0;
	for (; i < pend.n && pend.ev[i].ts < upto; i++)
		frame(pend.buf + pend.ev[i].off, pend.ev[i].len);
	if (i == pend.n) {
		pend.used = pend.n = 0;
	} else {
		/* The rest (the events of the last WRITE_LAG_NS) go back to the front of `pend`,
		 * compacted in `spare` and copied back whole. Swapping the two lists instead let both
		 * grow to the size of a whole write-out: their pages stay resident (malloc's trim is
		 * off, see main), MiBs at tens of thousands of events a second; `spare` only ever
		 * holds the rest. */
		spare.used = spare.n = 0;
		for (size_t k = i; k < pend.n; k++)
			pend_add(&spare, pend.ev[k].ts, pend.buf + pend.ev[k].off, pend.ev[k].len);
		memcpy(pend.buf, spare.buf, spare.used); /* pend holds more than the rest: no growth */
		memcpy(pend.ev, spare.ev, spare.n * sizeof(*spare.ev));
		pend.used = spare.used;
		pend.n = spare.n;
	}
	if (upto > written_upto)
		written_upto = upto;
}

/* Every CPU's batch into the ring buffer; events built after are stamped cutoff or later (see
 * "Order"). */
static void flush_cpus(__u64 cutoff)
{
	if (flush_fd < 0)
		return;
	for (int c = 0; c < ncpus; c++) {
		for (int tries = 0; tries < 10000; tries++) {
			LIBBPF_OPTS(bpf_test_run_opts, o, .flags = BPF_F_TEST_RUN_ON_CPU, .cpu = c,
				    .ctx_in = &cutoff, .ctx_size_in = sizeof(cutoff));
			if (bpf_prog_test_run_opts(flush_fd, &o) || o.retval == 0)
				break; /* an error: that CPU is offline */
		}
	}
}

/* One drain: read the ring buffer (it must not fill up). Every FLUSH_NS (and when asked:
 * `stats`, exit, or an exec event was read) also flush every CPU and write out what is complete. A flush of another CPU
 * is an IPI (≈ 100 µs round trip on the test VM, some µs of the other CPU's time), so not at
 * every 15 ms drain: events reach stdout within FLUSH_NS + WRITE_LAG_NS + DRAIN_MS. all: at exit,
 * everything.
 *
 * The ring buffer is read before the cutoff is taken, whatever the drain: the exec events in it
 * move the cutoff. (Until 2026-12-06 a drain that was due to flush took its cutoff first; an
 * exec whose wakeup fell on such a drain, about one in four, was read after it and waited for
 * the next drain, up to DRAIN_MS, by which time a curl had made its request and exited
 * untraced.) An exec read by the flush's own read (it happened meanwhile) gets another
 * write-out at once: its wakeup has been spent. */
static __u64 next_flush;

void drain(struct ring_buffer *rb, bool all, bool now)
{
	ring_buffer__consume(rb);
	__u64 t = now_ns(CLOCK_MONOTONIC);
	if (flush_fd >= 0 && !all && !now && t < next_flush && !exec_seen)
		return;
	tuple_gen_bumped = false;
	for (int round = 0; round < 4; round++) {
		/* Every exec read so far was stamped before t: a cutoff up to t is safe (flush_cpus
		 * begins after it). */
		__u64 cutoff = t;
		if (!now) {
			cutoff = t - WRITE_LAG_NS;
			if (exec_seen && exec_newest >= cutoff)
				cutoff = exec_newest + 1;
			if (cutoff < written_upto) /* after a `stats` less than WRITE_LAG_NS ago: never back */
				cutoff = written_upto;
		}
		exec_seen = false;
		next_flush = t + FLUSH_NS;
		flush_cpus(cutoff);
		ring_buffer__consume(rb);
		write_before(all ? UINT64_MAX : cutoff);
		if (!exec_seen || all)
			return;
		t = now_ns(CLOCK_MONOTONIC);
	}
}

bool output_init(int cpus, int flush_prog_fd, __u32 *kernel_tuple_gen)
{
	ncpus = cpus;
	flush_fd = flush_prog_fd;
	tuple_gen = kernel_tuple_gen;
	tuples = calloc(ncpus > 0 ? ncpus : 1, ST_SOCK_CACHE * sizeof(*tuples));
	return tuples != NULL;
}

/* After a buffer grew: the blocks it left free go back to the system (main turned malloc's own
 * trimming off so that the buffers in use keep their pages; their old blocks would stay too). */
void output_trim(void)
{
	if (grew)
		malloc_trim(0);
	grew = false;
}

void output_free(void)
{
	free(tuples);
	tuples = NULL;
	free(env_buf);
	env_buf = NULL;
	env_cap = 0;
}

