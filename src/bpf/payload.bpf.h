// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * Payload: where a data event is built (`scratch`, or the batch) and the copy of a message's
 * head and tail from user memory, from one buffer or an iovec array. Bounded copies only:
 * user space parses. Included by seqtrace.bpf.c.
 */
#ifndef SEQTRACE_PAYLOAD_BPF_H
#define SEQTRACE_PAYLOAD_BPF_H

/* Where a data event is built: the compact header (st_data_rec) then the head, tail, goid and
 * tuple. The area is larger than the largest record so that the verifier's bounds of a copy,
 * offset < MAX plus size < 2*MAX (see copy_user), stay inside it. */
struct scratch {
	struct st_data_rec ev;
	__u8 data[3 * ST_CAPTURE_MAX];
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch SEC(".maps");

/* Where the bytes of one message are in user memory. */
struct msg_src {
	__u64 buf;    /* a single buffer, or 0 */
	__u64 iov;    /* an iovec array, or 0 */
	__u64 iovcnt;
	bool no_payload;
	bool go;               /* the process's ST_PID_GO bit */
	struct pt_regs *regs;  /* the thread's saved registers, NULL when not read */
};

/* Copy n (<= ST_CAPTURE_MAX) user bytes to data[off] (off < ST_CAPTURE_MAX). */
static __always_inline long copy_user(struct scratch *s, __u64 off, __u64 src, __u64 n)
{
	off &= ST_CAPTURE_MAX - 1;
	if (n > ST_CAPTURE_MAX)
		n = ST_CAPTURE_MAX;
	/* clang may hand the helper an unclamped copy of n; a mask on the very register
	 * passed gives the verifier its bound (the value is already <= ST_CAPTURE_MAX) */
	asm volatile("%[n] &= %[m]" : [n] "+r"(n) : [m] "i"(2 * ST_CAPTURE_MAX - 1));
	return bpf_probe_read_user(&s->data[off], n, (void *)src);
}

/* The tail goes after the head (head_len set), at the next multiple of 8. */
static __always_inline long copy_tail(struct scratch *s, __u64 end, __u64 avail)
{
	__u64 t = avail < ST_TAIL_BYTES ? avail : ST_TAIL_BYTES;
	if (t > ST_TAIL_BYTES)
		t = ST_TAIL_BYTES;
	asm volatile("%[t] &= %[m]" : [t] "+r"(t) : [m] "i"(2 * ST_TAIL_BYTES - 1)); /* as in copy_user */
	s->ev.tail_len = t;
	__u64 at = ST_ALIGN8(s->ev.head_len) & (2 * ST_CAPTURE_MAX - 1);
	return bpf_probe_read_user(&s->data[at], t, (void *)(end - t));
}

/* Copy the head (want bytes) and tail of a message held in an iovec array. A global
 * function: the verifier checks it once, not once per caller path. Returns 1 when a read
 * failed or the iovecs ended early. */
__noinline int copy_iov(struct scratch *s, __u64 iov, __u64 iovcnt, __u64 len, __u64 want)
{
	__u64 got = 0;    /* bytes copied to head */
	__u64 walked = 0; /* message bytes walked */
	__u64 last_end = 0, last_len = 0;
	int bad = 0;

	if (!s)
		return 1;
	for (int i = 0; i < ST_MAX_IOV; i++) {
		struct iovec v;
		if (i >= iovcnt || walked >= len)
			break;
		if (bpf_probe_read_user(&v, sizeof(v), (void *)(iov + i * sizeof(v)))) {
			bad = 1;
			break;
		}
		__u64 in_iov = v.iov_len;
		if (in_iov > len - walked)
			in_iov = len - walked;
		if (got < want) {
			__u64 take = want - got;
			if (take > in_iov)
				take = in_iov;
			if (copy_user(s, got, (__u64)v.iov_base, take))
				bad = 1;
			got += take;
		}
		walked += in_iov;
		last_end = (__u64)v.iov_base + in_iov;
		last_len = in_iov;
	}
	s->ev.head_len = got & (2 * ST_CAPTURE_MAX - 1);
	/* the tail comes from the last entry holding data (only its own bytes) */
	if (walked >= len && len > want && last_len && copy_tail(s, last_end, last_len))
		bad = 1;
	return bad || got < want;
}

/* Fill head/tail from the message's user memory; returns true when a read failed. */
static __always_inline bool copy_payload(struct scratch *s, struct msg_src *m, __u32 len)
{
	__u64 want = len < capture_bytes ? len : capture_bytes;

	if (want > ST_CAPTURE_MAX)
		want = ST_CAPTURE_MAX;
	if (!m->buf)
		return copy_iov(s, m->iov, m->iovcnt, len, want);
	if (copy_user(s, 0, m->buf, want))
		return true;
	s->ev.head_len = want;
	return len > want && copy_tail(s, m->buf + len, len);
}

#endif /* SEQTRACE_PAYLOAD_BPF_H */
