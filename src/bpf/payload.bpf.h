// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * Payload: where a data event is built (`scratch`, or the batch) and the copy of a message's
 * head and tail from user memory, from one buffer or an iovec array. Bounded copies only:
 * user space parses. Included by seqtrace.bpf.c.
 */
#ifndef SEQTRACE_PAYLOAD_BPF_H
#define SEQTRACE_PAYLOAD_BPF_H

/* A walk over a message's iovec array, in parts (copy_iov). */
struct iov_walk {
	__u64 iov, iovcnt, len, want;
	__u64 got;    /* bytes copied to head */
	__u64 walked; /* message bytes walked */
	__u64 last_end, last_len;
	__u64 bad;
	/* the part's entries, read at once; twice the part so that the verifier's bound of the
	 * read's size (a mask, see copy_iov_part) stays inside */
	struct iovec v[2 * ST_IOV_PART];
};

/* Where a data event is built: the compact header (st_data_rec) then the head, tail, goid and
 * tuple. The area is larger than the largest record so that the verifier's bounds of a copy,
 * offset < MAX plus size < 2*MAX (see copy_user), stay inside it. Then the state of an iovec
 * walk, kept here between its parts. */
struct scratch {
	struct st_data_rec ev;
	__u8 data[3 * ST_CAPTURE_MAX];
	struct iov_walk w;
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
	bool tls;              /* the plaintext of an OpenSSL call (tls.bpf.h): ST_F_TLS */
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

/* Walk entries first .. first + ST_IOV_PART - 1 of the iovec array in s->w, copying what the
 * head still wants. A global function: the verifier checks it once, however many parts a
 * message has (one loop over ST_MAX_IOV entries is more than it accepts). Returns 1 when the
 * walk is over: the message's bytes or the entries ran out, or a read failed. */
__noinline int copy_iov_part(struct scratch *s, __u32 first)
{
	if (!s)
		return 1;
	/* in registers for the loop, as the walk was when it had one part (each access to s->w
	 * in the loop cost the iovec path ≈ 40 ns an event) */
	struct iov_walk *w = &s->w;
	__u64 iov = w->iov, iovcnt = w->iovcnt, len = w->len, want = w->want;
	__u64 got = w->got, walked = w->walked, last_end = w->last_end, last_len = w->last_len;
	if (first >= iovcnt || walked >= len)
		return 1;
	/* The part's entries in one read: an iovec array is one piece of user memory, and each
	 * read of it costs more than its 16 bytes (a writev of three entries: six reads, now four,
	 * ≈ −120 ns). A single entry (readv, recvmsg) is read to the stack as before: into the
	 * scratch it cost ≈ 30 ns more. */
	__u64 n = iovcnt - first;
	if (n > ST_IOV_PART)
		n = ST_IOV_PART;
	__u64 bytes = n * sizeof(struct iovec);
	asm volatile("%[b] &= %[m]" : [b] "+r"(bytes) : [m] "i"(sizeof(w->v) - 1)); /* as in copy_user */
	void *src = (void *)(iov + (__u64)first * sizeof(struct iovec));
	struct iovec one;
	if (n == 1 ? bpf_probe_read_user(&one, sizeof(one), src) : bpf_probe_read_user(w->v, bytes, src)) {
		w->bad = 1;
		return 1;
	}
	int over = first + n >= iovcnt;
	for (int k = 0; k < ST_IOV_PART; k++) {
		if (k >= n || walked >= len) {
			over = 1;
			break;
		}
		struct iovec v = n == 1 ? one : w->v[k];
		__u64 in_iov = v.iov_len;
		if (in_iov > len - walked)
			in_iov = len - walked;
		if (got < want) {
			__u64 take = want - got;
			if (take > in_iov)
				take = in_iov;
			if (copy_user(s, got, (__u64)v.iov_base, take))
				w->bad = 1;
			got += take;
		}
		walked += in_iov;
		last_end = (__u64)v.iov_base + in_iov;
		last_len = in_iov;
	}
	w->got = got;
	w->walked = walked;
	w->last_end = last_end;
	w->last_len = last_len;
	return over;
}

/* Copy the head (want bytes) and tail of a message held in an iovec array, up to ST_MAX_IOV
 * entries (Varnish writes a head as two entries per header line). Returns 1 when a read failed
 * or the iovecs ended early. */
__noinline int copy_iov(struct scratch *s, __u64 iov, __u64 iovcnt, __u64 len, __u64 want)
{
	if (!s)
		return 1;
	struct iov_walk *w = &s->w;
	/* field by field: a compound literal would also clear the 512 bytes of v */
	w->iov = iov;
	w->iovcnt = iovcnt;
	w->len = len;
	w->want = want;
	w->got = w->walked = w->last_end = w->last_len = w->bad = 0;
	for (int p = 0; p < ST_MAX_IOV / ST_IOV_PART; p++)
		if (copy_iov_part(s, p * ST_IOV_PART))
			break;
	s->ev.head_len = w->got & (2 * ST_CAPTURE_MAX - 1);
	/* the tail comes from the last entry holding data (only its own bytes) */
	if (w->walked >= len && len > want && w->last_len && copy_tail(s, w->last_end, w->last_len))
		w->bad = 1;
	return w->bad || w->got < want;
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
