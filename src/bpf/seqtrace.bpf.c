// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * seqtrace kernel side: sees every send/receive on TCP sockets of traced processes and
 * copies a bounded head (and a small tail) of the bytes with the TCP sequence number of
 * the first byte. It only classifies and copies; user space parses.
 *
 * Two ways in, chosen by the loader before load (the other programs are not loaded):
 *  - socket mode (kernel 6.3+): tp_btf/sock_send_length and sock_recv_length fire inside
 *    sock_sendmsg/sock_recvmsg of the calling thread; the syscall and its user buffer come
 *    from the task's saved registers. Only socket I/O pays.
 *  - syscall mode (fallback): tracepoint/syscalls/sys_enter_* + sys_exit_* of the same
 *    syscalls, fd -> file -> socket -> sock through BTF. Hooking syscall tracepoints slows
 *    every syscall of every process, hence only the fallback.
 * Both share the event construction below. x86_64 only (syscall numbers and pt_regs).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "seqtrace.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Settings, written by the loader between open and load. */
const volatile __u32 capture_bytes = ST_CAPTURE_DEFAULT; /* head bytes copied, <= ST_CAPTURE_MAX */
const volatile __u64 wakeup_bytes = 1 << 20; /* wake the reader once this much is waiting */
const volatile __u8 syscall_mode = 0;        /* ids are invented (no trusted sock pointer) */
const volatile __u32 batch_bytes = 0;        /* per-CPU batch size (<= ST_BATCH_MAX); 0: no batching */

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define MSG_PEEK 2
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define RCV_SHUTDOWN 1
#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_FIN_WAIT1 4
#define TCP_FIN_WAIT2 5
#define TCP_CLOSE 7

/* x86_64 syscall numbers */
#define NR_read 0
#define NR_write 1
#define NR_readv 19
#define NR_writev 20
#define NR_sendfile 40
#define NR_sendto 44
#define NR_recvfrom 45
#define NR_sendmsg 46
#define NR_recvmsg 47
#define NR_splice 275
#define NR_recvmmsg 299
#define NR_sendmmsg 307
#define NR_preadv2 327
#define NR_pwritev2 328

/* Traced processes: two bits per tgid (ST_PID_TRACED, ST_PID_GO at bit 2 * (tgid % 32) of word
 * tgid / 32), sized by the loader from kernel.pid_max. Looked up first on every send/receive of
 * every process: an array lookup is inlined by the JIT (a load of a word that stays in cache),
 * where a hash lookup walked a bucket (a cache miss); the Go bit rides in the same word, so
 * processes that are not Go skip the go_procs lookup for free. The loader sets and clears bits
 * with atomics on its mmap of the map; a traced process's fork sets the child's traced bit; the
 * exit of a process clears both (a reused pid must not inherit tracing). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, (1 << 22) / 32);
	__type(key, __u32);
	__type(value, __u64);
} traced SEC(".maps");

/* Every event to user space. Size set by the loader (power of two, page multiple). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} rb SEC(".maps");

/* Sockets that carried traced bytes: their id and the pid that last moved bytes on them.
 * Gives close events (only for these sockets) and, in syscall mode, a stable id. */
struct sock_info {
	__u64 id;
	__u32 pid;
	__u32 _pad;
};

/* Socket mode: on the socket itself (bpf_sk_storage_get on the trusted sk of the tracepoint):
 * a short list walk instead of a hash lookup, freed with the socket, never evicted. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sock_info);
} sk_info SEC(".maps");

/* Syscall mode (no trusted sock pointer for sk_storage): sock address -> sock_info. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct sock_info);
} seen SEC(".maps");

/* Socket mode, sendmmsg/recvmmsg: which message of the call this thread is at (the
 * tracepoint fires once per message; nothing marks a call's start). tid -> position. */
struct mmsg_pos {
	__u64 vec;
	__u32 idx;
	__u32 _pad;
};
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct mmsg_pos);
} mmsg_at SEC(".maps");

/* Syscall mode: the arguments saved at syscall entry, tid -> args, read at exit. */
struct call_args {
	__u64 nr;
	__u64 fd;
	__u64 buf; /* buffer, iovec, msghdr or mmsghdr array */
	__u64 cnt; /* iovec count or mmsg vlen */
	__u64 fd2; /* splice: fd_out */
};
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct call_args);
} calls SEC(".maps");

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

/* Per-CPU batch: events are built straight into it and sent to the ring buffer as one record
 * (ST_EV_BATCH) when the next data event might not fit, and at every drain by the loader
 * (flush_cpu). A ring buffer record costs its reserve/commit, the ring's lock and the
 * producer/consumer cache lines shared with the reader's CPU: one batch pays that once for
 * tens of events. Events of different CPUs reach the ring buffer out of time order; the
 * loader puts them back in ts_ns order (see loader.c, "Order"). `busy` counts events being
 * built on this CPU (a close from softirq can interrupt a data event): a nested event goes
 * straight to the ring buffer, and the loader's flush waits until it is 0, so that after a
 * flush every event stamped before it is in the ring buffer. */
struct batch {
	__u32 used; /* bytes of records in recs */
	__u32 busy;
	__u64 _pad;
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

/* Socket mode, per CPU: the sockets this CPU recorded in sk_info and whose tuple its batches
 * sent lately, by cookie (cookies are never reused) with the socket's addresses and ports (a
 * socket disconnected and connected again elsewhere misses): an event on one of them with the
 * same pid skips bpf_sk_storage_get and leaves the tuple out (st_data_rec; the loader keeps the
 * same cache per CPU). A slot counts only in the epoch it was filled in: a new epoch empties
 * the cache (a lost batch, or the loader's tuple_gen). */
struct sock_cache {
	__u32 gen;   /* tuple_gen seen last */
	__u32 epoch;
	struct {
		__u64 id;
		__u64 addrs;
		__u32 ports;
		__u32 pid;
		__u32 epoch;
		__u32 _pad;
	} slot[ST_SOCK_CACHE];
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sock_cache);
} sock_cache SEC(".maps");

/* Counters (enum st_stat), per CPU, summed by the loader: never a silent loss. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ST_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

/* Invented ids (syscall mode) have the top bit set: kernel cookies never get that high. */
__u64 next_id = 0;

/* Bumped by the loader when a record reached it without a tuple it knows (st_data_rec): every
 * CPU empties its cache of recent sockets at its next event, so each socket's next event
 * carries its tuple again. */
__u32 tuple_gen = 0;

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

/* Forget the sockets of this CPU's cache: their next events carry the tuple again. */
static __always_inline void forget_recent(void)
{
	__u32 zero = 0;
	struct sock_cache *c = bpf_map_lookup_elem(&sock_cache, &zero);
	if (c)
		c->epoch += 1;
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

static __always_inline __u64 pid_bits(__u32 pid)
{
	__u32 word = pid / 32;
	__u64 *w = bpf_map_lookup_elem(&traced, &word);
	return w ? *w >> (2 * (pid % 32)) : 0;
}

static __always_inline bool is_traced(__u32 pid)
{
	return pid_bits(pid) & ST_PID_TRACED;
}

/* A Go process the loader registered (go_procs holds its offsets). */
static __always_inline bool is_go(__u32 pid)
{
	return pid_bits(pid) & ST_PID_GO;
}

/* Sets or clears `bits` (ST_PID_*) of pid. */
static __always_inline void set_pid_bits(__u32 pid, __u64 bits, bool on)
{
	__u32 word = pid / 32;
	__u64 *w = bpf_map_lookup_elem(&traced, &word);
	if (!w)
		return;
	bits <<= 2 * (pid % 32);
	if (on)
		__sync_fetch_and_or(w, bits);
	else
		__sync_fetch_and_and(w, ~bits);
}

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

/* Socket mode: the socket's cookie is its id; sk_info on the socket holds it and the pid that
 * last used it (for the close event). */
static __always_inline void record_sock(struct sock *sk, __u64 id, __u32 pid)
{
	struct sock_info *si = bpf_sk_storage_get(&sk_info, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!si) /* no memory: the events still carry the id, the close goes unreported */
		return;
	si->id = id;
	si->pid = pid;
}

/* Socket mode, an event going into this CPU's batch: whether the socket is in the CPU's cache of
 * recent sockets with this pid and these addresses (then its tuple went out in an earlier record
 * of this CPU's batches and sk_info holds this pid: nothing to do); else it is recorded in
 * sk_info and in the cache, and the event carries the tuple. (Two processes taking turns on one
 * socket on different CPUs can leave the other one's pid in sk_info: the close then names that
 * one.) */
static __always_inline bool sock_cached(struct sock *sk, __u64 id, __u32 pid, __u16 family)
{
	__u32 zero = 0;
	struct sock_cache *c = bpf_map_lookup_elem(&sock_cache, &zero);
	if (!c) {
		record_sock(sk, id, pid);
		return false;
	}
	__u32 gen = *(volatile __u32 *)&tuple_gen;
	if (c->gen != gen) { /* the loader lost a tuple: every socket sends its tuple again */
		c->epoch += 1;
		c->gen = gen;
	}
	__u32 ports = sk->__sk_common.skc_portpair;
	__u64 addrs;
	if (family == AF_INET)
		addrs = sk->__sk_common.skc_addrpair;
	else
		addrs = sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32[3] |
			(__u64)sk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32[3] << 32;
	__u32 i = st_sock_slot(id);
	if (c->slot[i].id == id && c->slot[i].pid == pid && c->slot[i].addrs == addrs && c->slot[i].ports == ports &&
	    c->slot[i].epoch == c->epoch)
		return true;
	record_sock(sk, id, pid);
	c->slot[i].id = id;
	c->slot[i].pid = pid;
	c->slot[i].addrs = addrs;
	c->slot[i].ports = ports;
	c->slot[i].epoch = c->epoch;
	return false;
}

/* The id of a socket, remembered in `seen` with the pid that last used it. */
static __always_inline __u64 sock_id(struct sock *sk, __u32 pid, bool trusted_sk)
{
	__u64 key = (__u64)sk;
	struct sock_info *si = bpf_map_lookup_elem(&seen, &key);
	if (si) {
		if (si->pid != pid)
			si->pid = pid;
		return si->id;
	}
	struct sock_info n = { .pid = pid };
	if (trusted_sk)
		n.id = bpf_get_socket_cookie(sk);
	else
		n.id = (1ULL << 63) | __sync_fetch_and_add(&next_id, 1);
	bpf_map_update_elem(&seen, &key, &n, BPF_ANY);
	return n.id;
}

/* ---- Go (issue #6): goroutine ids and parents; everything in go.bpf.h ---- */
#include "go.bpf.h"

/* A field of the socket: a plain load through the trusted BTF pointer of a tp_btf argument
 * (socket mode, the hot path), else a probe read (syscall mode: sk came from memory).
 * `direct` is a constant at every call site, so only one of the two is compiled in. */
#define RD(direct, p, ...) ((direct) ? (p)->__VA_ARGS__ : BPF_CORE_READ(p, __VA_ARGS__))

/* Build one data record at s (in the CPU's batch or in scratch); returns its size. sk must be a
 * TCP socket (checked by the caller). The one place a data event's fields are filled. tuple:
 * whether the record carries the 4-tuple (see st_data_rec). */
static __always_inline __u32 fill_data_event(struct scratch *s, struct sock *sk, bool direct, __u64 id, bool tuple,
					     __u8 dir, __u32 len, __u32 seq, struct msg_src *m, __u64 pid_tgid)
{
	struct st_data_rec *e = &s->ev;
	__u8 flags = 0;

	e->kind = ST_EV_DATA_REC;
	e->dir = dir;
	e->tid = (__u32)pid_tgid;
	e->pid = pid_tgid >> 32;
	e->seq = seq;
	e->ts_ns = bpf_ktime_get_ns();
	e->sock_id = id;
	e->len = len;
	e->head_len = 0;
	e->tail_len = 0;
	e->_pad0 = 0;

	if (m->no_payload) {
		flags = ST_F_NO_PAYLOAD;
	} else if (copy_payload(s, m, len)) {
		flags = ST_F_TRUNCATED;
		stat_inc(ST_STAT_TRUNCATED);
	}
	/* after the head and tail: the goid, then the tuple */
	__u32 at = (ST_ALIGN8(e->head_len) & (2 * ST_CAPTURE_MAX - 1)) + (ST_ALIGN8(e->tail_len) & (2 * ST_TAIL_BYTES - 1));
	__u64 goid = go_goid(m->go, pid_tgid >> 32, (__u64)sk, m->regs); /* Go hook: 0 unless a Go process */
	if (goid) {
		*(__u64 *)&s->data[at] = goid;
		at += 8;
		flags |= ST_R_GOID;
	}
	if (tuple) {
		flags |= ST_R_TUPLE;
		__u16 sport = RD(direct, sk, __sk_common.skc_num);
		__u16 dport = bpf_ntohs(RD(direct, sk, __sk_common.skc_dport));
		if (RD(direct, sk, __sk_common.skc_family) == AF_INET) {
			struct st_tuple4 *t = (void *)&s->data[at];
			t->src_port = sport;
			t->dst_port = dport;
			__u32 a = RD(direct, sk, __sk_common.skc_rcv_saddr);
			__builtin_memcpy(t->src_addr, &a, 4);
			a = RD(direct, sk, __sk_common.skc_daddr);
			__builtin_memcpy(t->dst_addr, &a, 4);
			t->_pad0 = 0;
			at += sizeof(*t);
		} else {
			struct st_tuple6 *t = (void *)&s->data[at];
			flags |= ST_R_V6;
			t->src_port = sport;
			t->dst_port = dport;
			t->_pad0 = 0;
			struct in6_addr a6 = RD(direct, sk, __sk_common.skc_v6_rcv_saddr);
			__builtin_memcpy(t->src_addr, &a6, 16);
			a6 = RD(direct, sk, __sk_common.skc_v6_daddr);
			__builtin_memcpy(t->dst_addr, &a6, 16);
			at += sizeof(*t);
		}
	}
	e->flags = flags;
	return sizeof(*e) + at;
}

/* Build one data event into this CPU's batch (or, nested or without batching, into scratch and
 * straight to the ring buffer), between begin_event and end_event. */
static __always_inline void emit_in(struct batch *b, struct sock *sk, bool direct, __u64 id, bool tuple, __u8 dir,
				    __u32 len, __u32 seq, struct msg_src *m, __u64 pid_tgid)
{
	if (batching(b)) {
		__u32 off = b->used & (ST_BATCH_MAX - 1);
		struct scratch *s = (void *)&b->recs[off];
		commit(b, off, fill_data_event(s, sk, direct, id, tuple, dir, len, seq, m, pid_tgid));
	} else {
		__u32 zero = 0;
		struct scratch *s = bpf_map_lookup_elem(&scratch, &zero);
		if (s)
			output(s, fill_data_event(s, sk, direct, id, true, dir, len, seq, m, pid_tgid));
	}
}

/* Syscall mode: every record carries its tuple. */
static __always_inline int emit_data(struct sock *sk, bool direct, __u64 id, __u8 dir, __u32 len, __u32 seq,
				     struct msg_src *m, __u64 pid_tgid)
{
	struct batch *b = begin_event();
	if (!b)
		return 0;
	m->go = is_go(pid_tgid >> 32);
	emit_in(b, sk, direct, id, true, dir, len, seq, m, pid_tgid);
	end_event(b);
	return 0;
}

static __always_inline bool is_tcp(struct sock *sk)
{
	if (!sk)
		return false;
	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return false;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	return family == AF_INET || family == AF_INET6;
}

static __always_inline __u32 seq_of(struct sock *sk, struct tcp_sock *tp, bool direct, __u8 dir, __u32 len)
{
	/* both run after the data moved: write_seq/copied_seq already count these bytes */
	if (dir == ST_DIR_SEND)
		return RD(direct, tp, write_seq) - len;
	__u32 copied = RD(direct, tp, copied_seq);
	__u32 seq = copied - len;
	/* A read that reaches the peer's FIN also counts the FIN's sequence number into
	 * copied_seq. It did when everything received is read (rcv_nxt counts the FIN too),
	 * the receive side is shut, and the state says a FIN (not a reset, not our own
	 * shutdown(SHUT_RD)) did it. */
	if (copied != RD(direct, tp, rcv_nxt) || RD(direct, sk, sk_err))
		return seq;
	__u8 shut = direct ? BPF_CORE_READ_BITFIELD(sk, sk_shutdown) : BPF_CORE_READ_BITFIELD_PROBED(sk, sk_shutdown);
	__u8 state = RD(direct, sk, __sk_common.skc_state);
	if ((shut & RCV_SHUTDOWN) && state != TCP_ESTABLISHED && state != TCP_FIN_WAIT1 && state != TCP_FIN_WAIT2)
		seq -= 1;
	return seq;
}

/* ---------------------------------------------------------------- socket mode */

/* kfunc (kernel 6.2+, below socket mode's 6.3): a BTF pointer seen as another type, its
 * fields read with fault-safe loads; the verifier turns the call into a register move. */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;

static __always_inline int on_sock(struct sock *sk, int ret, int flags, __u8 dir)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 bits = pid_bits(pid_tgid >> 32);
	if (!(bits & ST_PID_TRACED))
		return 0;

	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	long nr = regs->orig_ax;
	bool mmsg = nr == NR_sendmmsg || nr == NR_recvmmsg;
	/* failed calls (EAGAIN of non-blocking reads) leave at once, except that *mmsg must count them */
	if ((ret <= 0 || (dir == ST_DIR_RECV && (flags & MSG_PEEK))) && !mmsg)
		return 0;
	__u64 a1 = regs->si;
	__u64 a2 = regs->dx;
	struct msg_src m = { .go = bits & ST_PID_GO, .regs = regs };

	switch (nr) {
	case NR_read:
	case NR_write:
	case NR_sendto:
	case NR_recvfrom:
		m.buf = a1;
		break;
	case NR_readv:
	case NR_writev:
	case NR_preadv2:
	case NR_pwritev2:
		m.iov = a1;
		m.iovcnt = a2;
		break;
	case NR_sendmsg:
	case NR_recvmsg: {
		struct user_msghdr h;
		if (bpf_probe_read_user(&h, sizeof(h), (void *)a1))
			m.no_payload = true;
		m.iov = (__u64)h.msg_iov;
		m.iovcnt = h.msg_iovlen;
		break;
	}
	case NR_sendmmsg:
	case NR_recvmmsg: {
		/* one firing per message: count this thread's position in the call. A call
		 * ends early only on an error (which fires too, ret < 0) or a recvmmsg timeout. */
		__u32 tid = (__u32)pid_tgid;
		struct mmsg_pos *p = bpf_map_lookup_elem(&mmsg_at, &tid);
		__u32 idx = 0;
		if (p && p->vec == a1)
			idx = p->idx;
		if (ret < 0 || idx + 1 >= a2) {
			if (p)
				bpf_map_delete_elem(&mmsg_at, &tid);
		} else if (p) {
			p->vec = a1;
			p->idx = idx + 1;
		} else {
			struct mmsg_pos n = { .vec = a1, .idx = 1 };
			bpf_map_update_elem(&mmsg_at, &tid, &n, BPF_ANY);
		}
		struct user_msghdr h;
		if (idx >= a2 || bpf_probe_read_user(&h, sizeof(h), (void *)(a1 + idx * sizeof(struct mmsghdr))))
			m.no_payload = true;
		m.iov = (__u64)h.msg_iov;
		m.iovcnt = h.msg_iovlen;
		break;
	}
	default: /* sendfile, splice, io_uring, ...: no user buffer to read */
		m.no_payload = true;
	}

	if (ret <= 0 || (dir == ST_DIR_RECV && (flags & MSG_PEEK)))
		return 0;
	/* A TCP socket in a send or receive call is a full socket, so the type check is enough,
	 * and the cast costs nothing where bpf_skc_to_tcp_sock was a helper call (≈ 7 ns of
	 * the ≈ 200 an event takes, bench/kernel-event-cost.sh). */
	if (sk->sk_protocol != IPPROTO_TCP || sk->sk_type != SOCK_STREAM)
		return 0;
	struct tcp_sock *tp = bpf_rdonly_cast(sk, bpf_core_type_id_kernel(struct tcp_sock));
	__u16 family = sk->__sk_common.skc_family;
	if (family != AF_INET && family != AF_INET6)
		return 0;
	struct batch *b = begin_event();
	if (!b)
		return 0;
	__u64 id = sk->__sk_common.skc_cookie.counter; /* what the helper returns once it was made */
	if (!id)
		id = bpf_get_socket_cookie(sk);
	bool tuple = true;
	if (batching(b))
		tuple = !sock_cached(sk, id, pid_tgid >> 32, family);
	else
		record_sock(sk, id, pid_tgid >> 32); /* nested: the cache is the batch's */
	emit_in(b, sk, true, id, tuple, dir, ret, seq_of(sk, tp, true, dir, ret), &m, pid_tgid);
	end_event(b);
	return 0;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(sock_send, struct sock *sk, int ret, int flags)
{
	return on_sock(sk, ret, flags, ST_DIR_SEND);
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(sock_recv, struct sock *sk, int ret, int flags)
{
	return on_sock(sk, ret, flags, ST_DIR_RECV);
}

/* ---------------------------------------------------------------- syscall mode */
#include "syscall_mode.bpf.h"

/* ---------------------------------------------------------------- both modes */

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(sock_state, const struct sock *sk, int oldstate, int newstate)
{
	if (newstate == TCP_SYN_SENT) {
		go_calls_out(bpf_get_current_pid_tgid() >> 32); /* Go hook */
		return 0;
	}
	if (newstate != TCP_CLOSE)
		return 0;
	__u64 key = (__u64)sk;
	struct sock_info *si;
	if (syscall_mode)
		si = bpf_map_lookup_elem(&seen, &key);
	else
		si = bpf_sk_storage_get(&sk_info, (struct sock *)sk, 0, 0);
	if (!si || !si->id)
		return 0;
	struct batch *b = begin_event();
	if (!b)
		return 0;
	struct st_close_event e = { .kind = ST_EV_CLOSE, .pid = si->pid, .ts_ns = bpf_ktime_get_ns(), .sock_id = si->id };
	if (syscall_mode)
		bpf_map_delete_elem(&seen, &key);
	else
		bpf_sk_storage_delete(&sk_info, (struct sock *)sk);
	go_sock_closed(key); /* Go hook */
	send_small(b, &e, sizeof(e));
	end_event(b);
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(proc_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	struct batch *b = begin_event();
	if (!b)
		return 0;
	struct st_proc_event e = { .kind = ST_EV_EXEC, .ts_ns = bpf_ktime_get_ns() };
	e.pid = BPF_CORE_READ(p, tgid);
	e.ppid = BPF_CORE_READ(p, real_parent, tgid);
	/* User space decides at exec whether to trace the process, and a short-lived client
	 * (curl) makes its request within milliseconds: not batched, and the reader is woken
	 * (the loader then writes everything up to now at once). An exec costs far more than
	 * the wakeup. */
	if (bpf_ringbuf_output(&rb, &e, sizeof(e), BPF_RB_FORCE_WAKEUP))
		stat_inc(ST_STAT_DROPS);
	else
		stat_inc(ST_STAT_EVENTS);
	end_event(b);
	return 0;
}

/* Fork of a traced process. A child process (not thread) is traced from its first instruction:
 * prefork servers (Apache) serve from children the agent never saw start. A new thread is
 * reported (creator and new tid) so user space can let it inherit its creator's thread group.
 * The tracepoint fires in the creator's context before the new task is first woken, so this
 * event precedes everything the new thread does in the ring buffer. Untraced processes pay
 * one hash lookup. */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(proc_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 ppid = BPF_CORE_READ(parent, tgid);
	if (!is_traced(ppid))
		return 0;
	__u32 cpid = BPF_CORE_READ(child, tgid);
	if (ppid == cpid) {
		struct batch *b = begin_event();
		if (!b)
			return 0;
		struct st_thread_event e = { .kind = ST_EV_THREAD, .pid = ppid, .ts_ns = bpf_ktime_get_ns() };
		e.tid = BPF_CORE_READ(child, pid);
		e.ptid = BPF_CORE_READ(parent, pid);
		send_small(b, &e, sizeof(e));
		end_event(b);
		return 0;
	}
	set_pid_bits(cpid, ST_PID_TRACED, true);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(proc_exit, struct task_struct *p)
{
	__u32 tid = BPF_CORE_READ(p, pid);
	__u32 pid = BPF_CORE_READ(p, tgid);
	if (is_traced(pid)) {
		bpf_map_delete_elem(&calls, &tid);
		bpf_map_delete_elem(&mmsg_at, &tid);
	}
	/* the tracepoint fires per thread; signal->live reached 0 for the last one */
	if (BPF_CORE_READ(p, signal, live.counter) != 0)
		return 0;
	set_pid_bits(pid, ST_PID_TRACED | ST_PID_GO, false);
	go_proc_exit(pid); /* Go hook */
	struct batch *b = begin_event();
	if (!b)
		return 0;
	struct st_proc_event e = { .kind = ST_EV_EXIT, .pid = pid, .ts_ns = bpf_ktime_get_ns() };
	send_small(b, &e, sizeof(e));
	end_event(b);
	return 0;
}

/* Run by the loader on every CPU at every drain (BPF_PROG_TEST_RUN with BPF_F_TEST_RUN_ON_CPU:
 * an IPI to that CPU, so nothing else runs there meanwhile): sends what the CPU's batch holds.
 * Returns 1 when an event is being built on that CPU (the interrupted code): the loader tries
 * again. After a 0, every event of that CPU stamped before the call is in the ring buffer. */
SEC("raw_tp")
int flush_cpu(void *ctx)
{
	__u32 zero = 0;
	struct batch *b = bpf_map_lookup_elem(&batches, &zero);
	if (!b)
		return 0;
	if (b->busy)
		return 1;
	flush(b);
	return 0;
}
