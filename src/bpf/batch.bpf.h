// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * Batches: how events reach user space. Each CPU builds events straight into its batch and
 * sends the batch to the ring buffer as one record (no wakeup per event); counters of what
 * was sent and lost. Included by seqtrace.bpf.c after payload.bpf.h (a batch has room for
 * one more record of the largest data event) and sockets.bpf.h (a lost batch empties the
 * socket cache).
 */
#ifndef SEQTRACE_BATCH_BPF_H
#define SEQTRACE_BATCH_BPF_H

/* Every event to user space. Size set by the loader (power of two, page multiple). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} rb SEC(".maps");

/* Per-CPU batch: events are built straight into it and sent to the ring buffer as one record
 * (ST_EV_BATCH) when the next data event might not fit, and at every drain by the loader
 * (flush_cpu). A ring buffer record costs its reserve/commit, the ring's lock and the
 * producer/consumer cache lines shared with the reader's CPU: one batch pays that once for
 * tens of events. Events of different CPUs reach the ring buffer out of time order; the
 * loader puts them back in ts_ns order (see output.c, "Order"). `busy` counts events being
 * built on this CPU (a close from softirq can interrupt a data event): a nested event goes
 * straight to the ring buffer, and the loader's flush waits until it is 0, so that after a
 * flush every event stamped before it is in the ring buffer. */
struct batch {
	__u32 used; /* bytes of records in recs */
	__u32 busy;
	__u64 cutoff_ns; /* the cutoff of the last write-out that flushed this CPU (flush_cpu): an
			  * event built since must be stamped at or after it (event_ts) */
	struct st_batch_event hdr; /* sent with recs[0, used): the two are contiguous */
	/* room for one more record of the largest data event past ST_BATCH_MAX, as in scratch */
	__u8 recs[ST_BATCH_MAX + sizeof(struct scratch)];
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct batch);
} batches SEC(".maps");

/* Counters (enum st_stat), per CPU, summed by the loader: never a silent loss. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ST_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

static __always_inline void stat_add(__u32 which, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &which);
	if (v)
		*v += n;
}

static __always_inline void stat_inc(__u32 which)
{
	stat_add(which, 1);
}

/* Submit without waking the reader (a wakeup per event is the dominant cost); the loader
 * drains on a short timer, and is woken only when the buffer is filling up. Returns 0 when
 * the ring buffer took it. */
static __always_inline long ring_output(void *data, __u64 size)
{
	__u64 waiting = bpf_ringbuf_query(&rb, BPF_RB_AVAIL_DATA);
	__u64 flags = waiting + size >= wakeup_bytes ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
	return bpf_ringbuf_output(&rb, data, size, flags);
}

/* One event straight to the ring buffer (no batching, or nested in another event). */
static __always_inline void output(void *data, __u64 size)
{
	if (ring_output(data, size))
		stat_inc(ST_STAT_DROPS);
	else
		stat_inc(ST_STAT_EVENTS);
}

/* The batch record of the largest data event (capture_bytes of head). */
static __always_inline __u32 rec_max(void)
{
	return ST_DATA_REC_MAX(capture_bytes);
}

/* Send what the batch holds as one ring buffer record; a failure loses (and counts) all of it. */
static __always_inline void flush(struct batch *b)
{
	__u32 used = b->used;
	__u32 n = b->hdr.count;
	if (!used)
		return;
	b->hdr.kind = ST_EV_BATCH;
	b->hdr.bytes = used;
	b->hdr.cpu = bpf_get_smp_processor_id();
	/* used <= batch_bytes <= ST_BATCH_MAX (a full batch may reach it exactly) */
	__u64 size = used & (2 * ST_BATCH_MAX - 1);
	if (size > sizeof(b->recs))
		size = sizeof(b->recs);
	size += sizeof(b->hdr);
	if (ring_output(&b->hdr, size)) {
		stat_add(ST_STAT_DROPS, n);
		forget_recent(); /* the tuples it carried are lost with it */
	} else {
		stat_add(ST_STAT_EVENTS, n);
		stat_inc(ST_STAT_BATCHES);
	}
	b->used = 0;
	b->hdr.count = 0;
}

/* Start an event on this CPU: from here to end_event() a flush of this CPU's batch waits
 * (the loader retries), and a nested event does not touch the batch. Take ts_ns after this. */
static __always_inline struct batch *begin_event(void)
{
	__u32 zero = 0;
	struct batch *b = bpf_map_lookup_elem(&batches, &zero);
	if (b) {
		b->busy += 1;
		asm volatile("" ::: "memory");
	}
	return b;
}

static __always_inline void end_event(struct batch *b)
{
	asm volatile("" ::: "memory");
	b->busy -= 1;
}

/* Whether this event goes into the batch: batching on and not nested in another event. */
static __always_inline bool batching(struct batch *b)
{
	return batch_bytes && b->busy == 1;
}

/* The record at off (where recs[used] was) now holds an event of size bytes (its size follows
 * from its kind and fields). Flushes when the largest data event might not fit after it: the
 * next event always has room. */
static __always_inline void commit(struct batch *b, __u32 off, __u32 size)
{
	b->used = off + ST_ALIGN8(size);
	b->hdr.count += 1;
	if (b->used + rec_max() > batch_bytes)
		flush(b);
}

/* A small fixed-size event (close, exec, exit, thread) between begin_event and end_event. */
static __always_inline void send_small(struct batch *b, void *e, __u32 size)
{
	if (!batching(b)) {
		output(e, size);
		return;
	}
	__u32 off = b->used & (ST_BATCH_MAX - 1);
	if (bpf_probe_read_kernel(&b->recs[off], size & 63, e)) {
		output(e, size);
		return;
	}
	commit(b, off, size);
}

#endif /* SEQTRACE_BATCH_BPF_H */
