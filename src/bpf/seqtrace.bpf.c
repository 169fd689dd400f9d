// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * seqtrace kernel side: sees every send/receive on TCP sockets of traced processes and
 * copies a bounded head (and a small tail) of the bytes with the TCP sequence number of
 * the first byte; Unix stream sockets too, with each end's byte counts (on_unix, call_seq).
 * It only classifies and copies; user space parses.
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
const volatile __u8 provisional_exec = 0;    /* trace a process from its exec until user space decides */

#define AF_UNIX 1
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

/* Traced processes: ST_PID_BITS bits per tgid (ST_PID_TRACED, ST_PID_GO, ST_PID_TLS at bit
 * ST_PID_SHIFT(tgid) of word tgid / ST_PIDS_PER_WORD), sized by the loader from kernel.pid_max. Looked up first on every send/receive of
 * every process: an array lookup is inlined by the JIT (a load of a word that stays in cache),
 * where a hash lookup walked a bucket (a cache miss); the Go bit rides in the same word, so
 * processes that are not Go skip the go_procs lookup for free, and so does the TLS bit: a process
 * without OpenSSL's probes skips the look at its thread's task storage (tls_io). The loader sets and clears bits
 * with atomics on its mmap of the map; a traced process's fork sets the child's traced bit; the
 * exit of a process clears both (a reused pid must not inherit tracing). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, (1 << 22) / ST_PIDS_PER_WORD);
	__type(key, __u32);
	__type(value, __u64);
} traced SEC(".maps");

/* Processes traced provisionally since their exec (ST_PROC_PROVISIONAL): pid -> the pid whose
 * exec began it (itself, or the provisional parent of a child forked meanwhile) and, in the
 * root's own entry, how many children it has here. User space decides at the exec event; the
 * loader's `add` of the root removes its entries (the bits stay), its `del` clears the bits of
 * all of them (it looks for children only when the count says there are). Bounded: with the
 * map full an exec is not traced provisionally (user space still decides, as before). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ST_PROVISIONAL_MAX);
	__type(key, __u32);
	__type(value, struct st_provisional);
} provisional SEC(".maps");

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

/* A field of the socket: a plain load through the trusted BTF pointer of a tp_btf argument
 * (socket mode, the hot path), else a probe read (syscall mode: sk came from memory).
 * `direct` is a constant at every call site, so only one of the two is compiled in. */
#define RD(direct, p, ...) ((direct) ? (p)->__VA_ARGS__ : BPF_CORE_READ(p, __VA_ARGS__))

/* Maps and helpers by concern, each header with its own maps (the Go ones in go.bpf.h) */
#include "sockets.bpf.h"
#include "payload.bpf.h"
#include "batch.bpf.h"

static __always_inline __u64 pid_bits(__u32 pid)
{
	__u32 word = pid / ST_PIDS_PER_WORD;
	__u64 *w = bpf_map_lookup_elem(&traced, &word);
	return w ? *w >> ST_PID_SHIFT(pid) : 0;
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
	__u32 word = pid / ST_PIDS_PER_WORD;
	__u64 *w = bpf_map_lookup_elem(&traced, &word);
	if (!w)
		return;
	bits <<= ST_PID_SHIFT(pid);
	if (on)
		__sync_fetch_and_or(w, bits);
	else
		__sync_fetch_and_and(w, ~bits);
}

/* ---- Go (issue #6): goroutine ids and parents; everything in go.bpf.h ---- */
#include "go.bpf.h"

/* kfunc (kernel 6.2+, below socket mode's 6.3): a BTF pointer seen as another type, its
 * fields read with fault-safe loads; the verifier turns the call into a register move. */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;

/* ---- Unix stream sockets: the peer and the path, through unix_sock ---- */

static __always_inline struct unix_sock *unix_of(struct sock *sk)
{
	return bpf_rdonly_cast(sk, bpf_core_type_id_kernel(struct unix_sock));
}

/* A Unix socket's inode number (struct socket is the first member of socket_alloc, beside its
 * inode): in syscall mode what tells it from a dead socket whose `seen` entry has its address
 * (sock_id). 0 once its process closed it. */
static __always_inline __u32 unix_ino(struct sock *sk)
{
	struct socket_alloc *sa = (void *)BPF_CORE_READ(sk, sk_socket);
	return sa ? BPF_CORE_READ(sa, vfs_inode.i_ino) : 0;
}

/* Syscall mode: sk's `seen` entry, unless it is that of a dead Unix socket that had sk's address
 * (its inode is not sk's; a TCP socket's entry has none: tcp_destroy_sock deletes it). */
static __always_inline struct sock_info *seen_of(struct sock *sk)
{
	__u64 key = (__u64)sk;
	struct sock_info *si = bpf_map_lookup_elem(&seen, &key);
	return si && si->ino && si->ino != unix_ino(sk) ? NULL : si;
}

/* The id of a Unix socket's peer: 0 when it has none (closed), or none was made yet (the capture
 * makes a socket's id at its first traced call: a peer not traced, or not yet used). Socket
 * mode: its cookie; syscall mode: the id its `seen` entry holds, if that entry is its own. */
static __always_inline __u64 unix_peer_id(struct sock *sk)
{
	struct sock *peer = unix_of(sk)->peer;
	if (!peer)
		return 0;
	if (!syscall_mode)
		return peer->__sk_common.skc_cookie.counter;
	struct sock_info *si = seen_of(peer);
	return si ? si->id : 0;
}

/* The peer's cookie and the socket's path: its own address (a listener's accepted socket shares
 * the listener's), else its peer's (a client's socket is not bound: its peer's is the
 * listener's). The bytes after sun_family as the kernel keeps them: a path with its NUL, or an
 * abstract name after a NUL. */
static __always_inline void fill_unix_tuple(struct st_tuple_unix *t, struct sock *sk)
{
	struct unix_sock *u = unix_of(sk);
	struct sock *peer = u->peer;
	t->peer_id = unix_peer_id(sk);
	struct unix_address *a = u->addr;
	if (!a && peer)
		a = unix_of(peer)->addr;
	__u32 n = 0;
	if (a) {
		int len = a->len - 2; /* sun_family */
		n = len > 0 ? len : 0;
		if (n > 108)
			n = 108;
		if (bpf_probe_read_kernel(t->path, n, (void *)a->name[0].sun_path))
			n = 0;
	}
	t->path_len = n;
	__builtin_memset(t->_pad0, 0, sizeof(t->_pad0));
}

/* Build one data record at s (in the CPU's batch or in scratch); returns its size. sk must be a
 * TCP socket (checked by the caller). The one place a data event's fields are filled. tuple:
 * whether the record carries the 4-tuple (see st_data_rec). */
static __always_inline __u32 fill_data_event(struct scratch *s, struct sock *sk, bool direct, __u64 id, bool tuple,
					     __u8 dir, __u32 len, __u32 seq, struct msg_src *m, __u64 pid_tgid, __u64 ts)
{
	struct st_data_rec *e = &s->ev;
	__u8 flags = 0;

	e->kind = ST_EV_DATA_REC;
	e->dir = dir;
	e->tid = (__u32)pid_tgid;
	e->pid = pid_tgid >> 32;
	e->seq = seq;
	e->ts_ns = ts;
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
	if (tuple && RD(direct, sk, __sk_common.skc_family) == AF_UNIX) {
		flags |= ST_R_TUPLE | ST_R_UNIX;
		fill_unix_tuple((void *)&s->data[at], sk);
		at += sizeof(struct st_tuple_unix);
	} else if (tuple) {
		flags |= ST_R_TUPLE;
		__u16 sport = RD(direct, sk, __sk_common.skc_num);
		/* A reset unhashes the socket and clears its port number (inet_put_port) while its
		 * process may still read; the port it was bound to stays in inet_sport. */
		if (!sport)
			sport = bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));
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
	e->flags = flags | (m->tls ? ST_F_TLS : 0);
	return sizeof(*e) + at;
}

/* The kernel's TCP receive and send (from kallsyms; 0 where they cannot be read). */
extern const void tcp_recvmsg __ksym __weak;
extern const void tcp_sendmsg __ksym __weak;

/* A data event's time, taken after begin_event (in syscall mode at the call's exit): when the
 * call moved the bytes, without a clock read where TCP itself just read the clock (the clock
 * read costs 25–60 ns on this VM, pvclock: about a fifth of a traced event's program time).
 * Both are CLOCK_MONOTONIC (tcp_clock_ns(), the clock of bpf_ktime_get_ns):
 *  - a receive through tcp_recvmsg (the socket's own: not kTLS, sockmap or MPTCP, which take
 *    the clock) takes tcp_clock_cache, refreshed (tcp_mstamp_refresh) after it copied the
 *    bytes (tcp_rcv_space_adjust): the time of the read;
 *  - a send takes tcp_wstamp_ns, the departure time of the socket's last segment: if any of
 *    this send's bytes have left (snd_nxt past their first sequence number), they left during
 *    this call, so it is the time of the last transmit in it. Not tcp_clock_cache: every
 *    segment the socket receives refreshes that, and a call held up after its bytes left (a
 *    busy or preempted CPU, the softirq of other traffic) releases the socket after the peer
 *    read them and acknowledged: the ACK, waiting in the backlog until then, stamped the send
 *    after the read (capture.test.ts, "a send held up"). A segment the socket itself sends in
 *    that window (an immediate ACK of the peer's answer) moves tcp_wstamp_ns too: if the
 *    segment that carried the send's last byte has been acknowledged, RACK kept its departure
 *    (tcp_sock.rack: the latest-sent of the acknowledged segments, in µs: rounded up here, so
 *    never before it), which no later segment of ours moves. Paced sockets (fq, BBR) keep the
 *    next departure in tcp_wstamp_ns, which may be ahead: the cache bounds it. A send whose
 *    bytes all wait (autocorked, corked, Nagle, a full window) takes the clock.
 * Either is about a microsecond before the tracepoint. The loader's order (output.c, "Order")
 * needs an event built after a write-out flushed this CPU to be stamped at or after that
 * write-out's cutoff, which lags the write-out by WRITE_LAG_NS: a call held up longer than
 * that across a write-out takes the cutoff. tcp_stamp: TCP's time, 0 where it has none. */
static __always_inline __u64 tcp_stamp(struct sock *sk, struct tcp_sock *tp, bool direct, __u8 dir, __u32 seq, __u32 len)
{
	struct proto *prot = RD(direct, sk, __sk_common.skc_prot);
	__u64 ts = 0;
	if (dir == ST_DIR_RECV) {
		if ((__u64)&tcp_recvmsg && (__u64)RD(direct, prot, recvmsg) == (__u64)&tcp_recvmsg)
			ts = RD(direct, tp, tcp_clock_cache);
	} else if ((__u64)&tcp_sendmsg && (__u64)RD(direct, prot, sendmsg) == (__u64)&tcp_sendmsg) {
		if ((__s32)(RD(direct, tp, snd_nxt) - seq) > 0) { /* some of its bytes left (seq: the first's) */
			ts = RD(direct, tp, tcp_wstamp_ns);
			__u64 cache = RD(direct, tp, tcp_clock_cache);
			if (ts > cache)
				ts = cache;
			/* its last byte acked: RACK's segment ends at or after it and was sent. A socket
			 * none of whose segments was acknowledged yet has rack all 0 (an accepted one
			 * until its first answer is acked): end_seq 0 is "after" half of all sequence
			 * numbers, so the sent-bound and the stamp are both checked. */
			__u32 acked_end = RD(direct, tp, rack.end_seq);
			__u64 acked_us = RD(direct, tp, rack.mstamp);
			if (acked_us && (__s32)(acked_end - (seq + len)) >= 0 &&
			    (__s32)(RD(direct, tp, snd_nxt) - acked_end) >= 0) {
				__u64 acked = acked_us * 1000 + 999;
				if (acked < ts)
					ts = acked;
			}
		}
	}
	return ts;
}

static __always_inline __u64 event_ts(struct batch *b, struct sock *sk, struct tcp_sock *tp, bool direct, __u8 dir,
				      __u32 seq, __u32 len)
{
	__u64 ts = tcp_stamp(sk, tp, direct, dir, seq, len);
	if (!ts)
		return bpf_ktime_get_ns();
	return ts >= b->cutoff_ns ? ts : b->cutoff_ns;
}

/* Build one data event into this CPU's batch (or, nested or without batching, into scratch and
 * straight to the ring buffer), between begin_event and end_event; ts taken after begin_event
 * (see event_ts). */
static __always_inline void emit_in(struct batch *b, struct sock *sk, bool direct, __u64 id, bool tuple, __u8 dir,
				    __u32 len, __u32 seq, struct msg_src *m, __u64 pid_tgid, __u64 ts)
{
	if (batching(b)) {
		__u32 off = b->used & (ST_BATCH_MAX - 1);
		struct scratch *s = (void *)&b->recs[off];
		commit(b, off, fill_data_event(s, sk, direct, id, tuple, dir, len, seq, m, pid_tgid, ts));
	} else {
		__u32 zero = 0;
		struct scratch *s = bpf_map_lookup_elem(&scratch, &zero);
		if (s)
			output(s, fill_data_event(s, sk, direct, id, true, dir, len, seq, m, pid_tgid, ts));
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
	emit_in(b, sk, direct, id, true, dir, len, seq, m, pid_tgid, event_ts(b, sk, (struct tcp_sock *)sk, direct, dir, seq, len));
	end_event(b);
	return 0;
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

/* A close or shutdown event (kind) of a socket the capture has seen (its record: in socket mode
 * the sk_info storage, in syscall mode the seen map, with its id and last pid). A close also
 * deletes the record (`forget`) when the socket is gone; a Unix socket's close (its peer's end
 * of the stream, read) keeps it: its byte counts go on if its process still writes. */
static __always_inline void sock_event(struct sock *sk, __u8 kind, bool forget)
{
	__u64 key = (__u64)sk;
	struct sock_info *si;
	if (syscall_mode)
		si = seen_of(sk);
	else
		si = bpf_sk_storage_get(&sk_info, sk, 0, 0);
	if (!si || !si->id)
		return;
	struct batch *b = begin_event();
	if (!b)
		return;
	struct st_close_event e = { .kind = kind, .pid = si->pid, .ts_ns = bpf_ktime_get_ns(), .sock_id = si->id };
	if (forget) {
		if (syscall_mode)
			bpf_map_delete_elem(&seen, &key);
		else
			bpf_sk_storage_delete(&sk_info, sk);
		go_sock_closed(key); /* Go hook */
	}
	send_small(b, &e, sizeof(e));
	end_event(b);
}

/* ---- TLS (OpenSSL uprobes): the plaintext of HTTPS; everything in tls.bpf.h ---- */
#include "tls.bpf.h"

/* ---------------------------------------------------------------- socket mode */

/* A Unix stream socket (AF_UNIX, SOCK_STREAM: nginx to PHP-FPM, uWSGI or gunicorn on a socket
 * file) of a traced process moved `ret` bytes: an event as for TCP, whose seq is this end's own
 * count of bytes moved that way (sock_info), its tuple the peer's cookie and the path. Its
 * time is the clock's (no TCP stamp to take). A function of its own (a BPF-to-BPF call): inlined
 * into on_sock it cost TCP's sends ≈ 20 ns a run (bench/kernel-event-cost.sh, 190 → 209 ns). */
static __noinline int on_unix(struct sock *sk, int ret, __u8 dir, struct msg_src *m, __u64 pid_tgid)
{
	__u64 id = sk->__sk_common.skc_cookie.counter;
	if (!id)
		id = bpf_get_socket_cookie(sk);
	struct sock_info *si = bpf_sk_storage_get(&sk_info, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!si) /* no memory: no count to give its bytes a place */
		return 0;
	/* counted whatever becomes of the event: a lost one is a gap to the agent */
	__u32 seq = __sync_fetch_and_add(dir == ST_DIR_SEND ? &si->sent : &si->recvd, (__u64)ret);
	struct batch *b = begin_event();
	if (!b)
		return 0;
	bool tuple = true;
	if (batching(b)) {
		/* the peer's cookie in the cache's slot: a peer first seen after this socket (its
		 * cookie 0 until then) brings the tuple again */
		int known = sock_cached(sk, id, pid_tgid >> 32, unix_peer_id(sk), 0, true);
		if (known == SOCK_MUTED) {
			end_event(b);
			return 0;
		}
		tuple = known == SOCK_NEW;
	} else if (record_sock_muted(sk, id, pid_tgid >> 32)) {
		end_event(b);
		return 0;
	}
	__u64 ts = bpf_ktime_get_ns();
	emit_in(b, sk, true, id, tuple, dir, ret, seq, m, pid_tgid, ts >= b->cutoff_ns ? ts : b->cutoff_ns);
	end_event(b);
	return 0;
}

/* A read returned 0: at a Unix stream socket's end, its peer closed (or shut its sending side):
 * a close event, which ends an answer that ran until then. TCP's sockets have theirs from
 * tcp_destroy_sock; Unix sockets have no such tracepoint. */
static __always_inline void unix_eof(struct sock *sk)
{
	if (sk->__sk_common.skc_family == AF_UNIX && sk->sk_type == SOCK_STREAM)
		sock_event(sk, ST_EV_CLOSE, false);
}


static __always_inline int on_sock(struct sock *sk, int ret, int flags, __u8 dir)
{
	/* one helper call for the task, its ids and its registers (bpf_get_current_pid_tgid
	 * would be a second one: ≈ 5–15 ns of a traced event's ≈ 180, bench/kernel-event-cost.sh) */
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 tgid = task->tgid;
	__u64 bits = pid_bits(tgid);
	if (!(bits & ST_PID_TRACED))
		return 0;
	__u64 pid_tgid = (__u64)tgid << 32 | (__u32)task->pid;

	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
	long nr = regs->orig_ax;
	bool mmsg = nr == NR_sendmmsg || nr == NR_recvmmsg;
	/* failed calls (EAGAIN of non-blocking reads) leave at once, except that *mmsg must count them */
	if ((ret <= 0 || (dir == ST_DIR_RECV && (flags & MSG_PEEK))) && !mmsg) {
		if (ret == 0 && dir == ST_DIR_RECV && !(flags & MSG_PEEK))
			unix_eof(sk);
		return 0;
	}
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
	if (sk->sk_type != SOCK_STREAM)
		return 0;
	__u16 family = sk->__sk_common.skc_family;
	if (family == AF_UNIX)
		return on_unix(sk, ret, dir, &m, pid_tgid);
	/* A TCP socket in a send or receive call is a full socket, so the type check is enough,
	 * and the cast costs nothing where bpf_skc_to_tcp_sock was a helper call (≈ 7 ns of
	 * the ≈ 200 an event takes, bench/kernel-event-cost.sh). */
	if (sk->sk_protocol != IPPROTO_TCP || (family != AF_INET && family != AF_INET6))
		return 0;
	struct tcp_sock *tp = bpf_rdonly_cast(sk, bpf_core_type_id_kernel(struct tcp_sock));
	__u64 id = sk->__sk_common.skc_cookie.counter; /* what the helper returns once it was made */
	if (!id)
		id = bpf_get_socket_cookie(sk);
	if ((bits & ST_PID_TLS) && tls_io(task, sk, tp, true, id, dir, ret, m.buf, tgid)) /* ciphertext: tls.bpf.h */
		return 0;
	struct batch *b = begin_event();
	if (!b)
		return 0;
	bool tuple = true;
	if (batching(b)) {
		int known = tcp_sock_cached(sk, true, id, pid_tgid >> 32, family, true);
		if (known == SOCK_MUTED) {
			end_event(b);
			return 0;
		}
		tuple = known == SOCK_NEW;
	} else if (record_sock_muted(sk, id, pid_tgid >> 32)) { /* nested: the cache is the batch's */
		end_event(b);
		return 0;
	}
	__u32 seq = seq_of(sk, tp, true, dir, ret);
	emit_in(b, sk, true, id, tuple, dir, ret, seq, &m, pid_tgid, event_ts(b, sk, tp, true, dir, seq, ret));
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

/* A Go process's first outgoing connection turns its goroutine-start probe on (go.md).
 * A socket the capture has seen sending its FIN (close or shutdown by its process: FIN_WAIT1,
 * LAST_ACK) sends nothing more: its shutdown event ends an answer that runs until the close
 * (uWSGI's, HTTP/1.0's) at once, where the socket's end waits for the peer to close too, by
 * when a server's thread may be reading its next request. Taken in the closing call, so only
 * a traced process's sockets are looked up. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(sock_state, struct sock *sk, int oldstate, int newstate)
{
	/* (the other changes, most of them, return before any helper call) */
	if (newstate == TCP_SYN_SENT)
		go_calls_out(bpf_get_current_pid_tgid() >> 32); /* Go hook */
	else if ((newstate == TCP_FIN_WAIT1 || newstate == TCP_LAST_ACK) && is_traced(bpf_get_current_pid_tgid() >> 32))
		sock_event(sk, ST_EV_SHUTDOWN, false);
	return 0;
}

/* The end of a socket the capture has seen: its close event, after the last bytes its process
 * moved. Not TCP's CLOSE state: a reset puts the socket there while its process can still
 * read what came before (a server draining a keep-alive connection it closes, a client reading
 * an answer that preceded the server's reset). The socket is destroyed once its process has
 * closed it and TCP is done with it (at once after a reset; after the FIN handshake, or on
 * entering TIME_WAIT, otherwise), in the closing call or in TCP's softirq. Every TCP socket on
 * the host pays one storage lookup here, once in its life. */
SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(sock_destroy, struct sock *sk)
{
	sock_event(sk, ST_EV_CLOSE, true);
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
	bpf_get_current_comm(e.comm, sizeof(e.comm));
	/* A process not traced is traced from here until user space has decided (a client sends
	 * its request milliseconds after its exec); one traced provisionally is decided again. A
	 * process traced for good (selected, or forked by one) stays so. */
	if (!provisional_exec) {
		/* user space decides alone, from this event on */
	} else if (is_traced(e.pid)) {
		if (bpf_map_lookup_elem(&provisional, &e.pid))
			e.flags = ST_PROC_PROVISIONAL; /* still undecided */
	} else if (!bpf_map_update_elem(&provisional, &e.pid, &(struct st_provisional){ .root = e.pid }, BPF_ANY)) {
		/* (an entry there is a dead root's, whose pid this is again) */
		set_pid_bits(e.pid, ST_PID_TRACED, true);
		e.flags = ST_PROC_PROVISIONAL;
	}
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
	/* The child of a process traced provisionally is so too, under the same root: the root's
	 * `del` ends both. Without room for it, it is not traced. */
	struct st_provisional *pe = bpf_map_lookup_elem(&provisional, &ppid);
	if (pe) {
		struct st_provisional entry = { .root = pe->root };
		if (bpf_map_update_elem(&provisional, &cpid, &entry, BPF_ANY))
			return 0;
		struct st_provisional *root = bpf_map_lookup_elem(&provisional, &entry.root);
		if (root)
			__sync_fetch_and_add(&root->children, 1);
	} else {
		/* traced for good: not under the entry of a dead root whose pid this was */
		bpf_map_delete_elem(&provisional, &cpid);
	}
	set_pid_bits(cpid, ST_PID_TRACED, true);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(proc_exit, struct task_struct *p)
{
	__u32 tid = BPF_CORE_READ(p, pid);
	__u32 pid = BPF_CORE_READ(p, tgid);
	/* the tracepoint fires per thread; signal->live reached 0 for the last one */
	bool last = BPF_CORE_READ(p, signal, live.counter) == 0;
	bool traced = is_traced(pid);
	if (traced) {
		bpf_map_delete_elem(&calls, &tid);
		bpf_map_delete_elem(&mmsg_at, &tid);
		/* So user space can tell a thread started for one request (gone when the request
		 * ends) from a pool's worker (lives on); the last thread's end is the exit below. */
		if (!last) {
			struct batch *b = begin_event();
			if (!b)
				return 0;
			struct st_thread_event e = { .kind = ST_EV_THREAD_EXIT, .pid = pid, .tid = tid,
						     .ts_ns = bpf_ktime_get_ns() };
			send_small(b, &e, sizeof(e));
			end_event(b);
		}
	}
	if (!last)
		return 0;
	set_pid_bits(pid, ST_PID_ALL, false);
	if (traced) {
		/* A root that forked children keeps its entry until user space decides about it: its
		 * `del` ends the children too. */
		struct st_provisional *pe = bpf_map_lookup_elem(&provisional, &pid);
		if (pe && !(pe->root == pid && pe->children))
			bpf_map_delete_elem(&provisional, &pid);
	}
	go_proc_exit(pid); /* Go hook */
	struct batch *b = begin_event();
	if (!b)
		return 0;
	struct st_proc_event e = { .kind = ST_EV_EXIT, .pid = pid, .ts_ns = bpf_ktime_get_ns() };
	send_small(b, &e, sizeof(e));
	end_event(b);
	return 0;
}

/* Run by the loader on every CPU at every write-out (BPF_PROG_TEST_RUN with
 * BPF_F_TEST_RUN_ON_CPU: an IPI to that CPU, so nothing else runs there meanwhile), with the
 * write-out's cutoff as its one argument: sends what the CPU's batch holds. Returns 1 when an
 * event is being built on that CPU (the interrupted code): the loader tries again. After a 0,
 * every event of that CPU built before the call is in the ring buffer, and every one built
 * after it is stamped at or after the cutoff (event_ts). */
SEC("raw_tp")
int flush_cpu(__u64 *ctx)
{
	__u32 zero = 0;
	struct batch *b = bpf_map_lookup_elem(&batches, &zero);
	if (!b)
		return 0;
	if (b->busy)
		return 1;
	flush(b);
	b->cutoff_ns = ctx[0];
	return 0;
}
