// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * TLS through OpenSSL (libssl.so.1.1 / .3): uprobes on SSL_read, SSL_read_ex, SSL_write,
 * SSL_write_ex and SSL_do_handshake, attached by the loader to each traced process that maps
 * libssl (tls_probes.c), give the plaintext of HTTPS; the socket hooks (on_sock, syscall mode's
 * exit_call) see the ciphertext of the same calls. Included by seqtrace.bpf.c after the event
 * construction.
 *
 * A call with a socket BIO (nginx, curl, Python's ssl sockets, PHP) moves its ciphertext inside
 * the call, on its own thread: the socket hooks, finding the thread inside an OpenSSL call,
 * report nothing and note the socket and TCP's sequence numbers in the call instead (tls_io),
 * and mute the socket (its bytes outside calls, a close_notify, are ciphertext too). At the
 * call's return (ssl_return) the plaintext becomes one data event of the socket, ST_F_TLS, id
 * | ST_TLS_ID (one socket, two streams to the agent), its seq a number both ends of the
 * connection give the message (docs/kernel.md "TLS"):
 *  - a write: the sequence number just past its first send, which carried the first TLS
 *    record of the write whole (OpenSSL sends each record with its own write);
 *  - a read: the sequence number just past the record it returned (OpenSSL returns the
 *    plaintext of one record a read): the records the connection receives are followed by
 *    their headers (tls_records) and the read takes the one whose plaintext is its length
 *    (tls_pick; with read-ahead one receive may hold several); else the end of its last
 *    receive, the record it read last. A read answered from a record read before (a short
 *    buffer) takes that record's.
 * So a message's first record gets one number at both ends: the linker joins HTTPS calls by it
 * as it joins plain ones. A call with a memory BIO (Node.js, asyncio) moves its ciphertext
 * elsewhere: its plaintext has no socket, and is not reported (docs/agent.md "HTTPS").
 */
#ifndef SEQTRACE_TLS_BPF_H
#define SEQTRACE_TLS_BPF_H

#define TLS_SENT 1
#define TLS_RECVD 2

/* The OpenSSL call a thread is in, on the thread itself (task storage: the socket hooks of a
 * traced thread outside OpenSSL pay one lookup of a task's empty storage). A call made inside
 * another (none of the five calls another through its entry, but a library may) is left to the
 * outer: `sp` tells them apart (a deeper call has a lower stack pointer; a return of the outer
 * one a higher one than its entry), and a stale entry (a return never seen) is replaced by the
 * next call, which is no deeper. */
struct tls_call {
	__u64 ssl;   /* SSL * */
	__u64 buf;   /* the plaintext; 0 for a handshake */
	__u64 moved; /* SSL_*_ex: its size_t * of bytes moved; 0: the return value is the count */
	__u64 sp;    /* stack pointer at entry */
	__u64 sk;    /* socket of the call's I/O, 0 when none yet */
	__u64 id;    /* its id (sk_info / seen) */
	__u64 send_ns; /* when the call's first send moved its bytes */
	__u64 recv_ns; /* when its last receive did */
	__u32 send_end; /* TCP sequence number past the call's first send */
	__u32 recv_end; /* past its last receive */
	__u8 active;
	__u8 dir; /* ST_DIR_*, 0 for a handshake */
	__u8 io;  /* TLS_SENT | TLS_RECVD */
	__u8 _pad[5];
};
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct tls_call);
} tls_calls SEC(".maps");

/* OpenSSL connections of traced processes, (SSL *, pid) -> their socket, the records they
 * received and the number of the last one a read returned: a call that moves nothing on the
 * socket (a read answered from a record read before; a write whose bytes wait) still names its
 * socket and its record. A new connection at a
 * reused SSL * shakes hands first, and its handshake's I/O sets the socket afresh. LRU: a
 * connection pushed out is known again at its next call with I/O. */
struct tls_key {
	__u64 ssl;
	__u32 pid;
	__u32 _pad;
};
#define TLS_RECS 8 /* records a connection received and no read has returned yet (a power of two) */
struct ssl_rec {
	__u32 end; /* TCP sequence number past it */
	__u32 len; /* its length after the 5-byte header */
};
struct tls_conn {
	__u64 sk;
	__u64 id;
	__u32 recv_end; /* the number of the record the last read returned from */
	__u32 rec_next; /* TCP sequence number of the next record header it will receive (rec_known) */
	__u8 rec_known; /* rec_next is known: records are followed in what it receives */
	__u8 first;     /* recs[first], recs[first + 1], ... (mod TLS_RECS): oldest first */
	__u8 count;
	__u8 fresh;     /* made, nothing received yet */
	__u8 _pad[4];
	struct ssl_rec recs[TLS_RECS];
};
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, ST_TLS_CONNS);
	__type(key, struct tls_key);
	__type(value, struct tls_conn);
} tls_conns SEC(".maps");

/* The connection of call c, made if need be (sk: its socket). */
static __always_inline struct tls_conn *tls_conn_of(struct tls_call *c, __u32 pid, __u64 sk, __u64 id)
{
	struct tls_key k = { .ssl = c->ssl, .pid = pid };
	struct tls_conn *conn = bpf_map_lookup_elem(&tls_conns, &k);
	if (conn && conn->sk == sk)
		return conn;
	struct tls_conn n = { .sk = sk, .id = id, .fresh = 1 };
	bpf_map_update_elem(&tls_conns, &k, &n, BPF_ANY);
	return bpf_map_lookup_elem(&tls_conns, &k);
}

/* The TLS records that begin in `len` bytes received from sequence number `seq` into user memory
 * at ubuf (0: not one buffer): their headers (type, version, length) give where each ends. Why:
 * OpenSSL returns the plaintext of one record per read, and with `read_ahead` (nginx) one
 * receive may take several: the read is then numbered by the record it returned, not by the
 * last received (tls_pick). Followed from the connection's first received byte (a handshake)
 * or from a 5-byte receive (OpenSSL without read-ahead reads each header alone); a header split
 * across receives, or anything not a record header, loses the thread until then. */
static __always_inline void tls_records(struct tls_conn *conn, __u64 ubuf, __u32 seq, __u32 len, bool start)
{
	if (!ubuf) {
		conn->rec_known = 0;
		return;
	}
	if (start || (!conn->rec_known && len == 5)) {
		conn->rec_next = seq;
		conn->rec_known = 1;
	}
	if (!conn->rec_known)
		return;
	for (int i = 0; i < TLS_RECS; i++) {
		__u32 off = conn->rec_next - seq;
		if ((__s32)off < 0 || off + 5 > len) {
			if ((__s32)off < 0 || off < len) /* behind, or a header split: lost */
				conn->rec_known = 0;
			return;
		}
		__u8 h[5];
		if (bpf_probe_read_user(h, sizeof(h), (void *)(ubuf + off))) {
			conn->rec_known = 0;
			return;
		}
		__u32 rl = (__u32)h[3] << 8 | h[4];
		if (h[0] < 20 || h[0] > 24 || h[1] != 3 || rl > 18432) { /* not a record header */
			conn->rec_known = 0;
			return;
		}
		conn->rec_next += 5 + rl;
		__u32 at = (conn->first + conn->count) & (TLS_RECS - 1);
		if (conn->count == TLS_RECS) /* full: the oldest goes */
			conn->first = (conn->first + 1) & (TLS_RECS - 1);
		else
			conn->count += 1;
		conn->recs[at].end = conn->rec_next;
		conn->recs[at].len = rl;
	}
}

/* The number of a read that returned n bytes: the end of the oldest record received whose
 * plaintext is exactly n bytes (its length less an AEAD record's overhead: 17 in TLS 1.3, 24
 * with TLS 1.2's AES-GCM, 16 with its ChaCha20), which is then dropped with those before it
 * (TLS 1.3 session tickets a client reads first, the records of a read that returned less than
 * a record). Else (a read shorter than its record, CBC, records not followed): `fallback`, the
 * end of the call's last receive (or the connection's last number), and the records up to it
 * are dropped. */
static __always_inline __u32 tls_pick(struct tls_conn *conn, __u32 n, __u32 fallback)
{
	for (int i = 0; i < TLS_RECS; i++) {
		if (i >= conn->count)
			break;
		struct ssl_rec *r = &conn->recs[(conn->first + i) & (TLS_RECS - 1)];
		__u32 over = r->len - n;
		if (r->len > n && (over == 17 || over == 24 || over == 16)) {
			__u32 end = r->end;
			conn->first = (conn->first + i + 1) & (TLS_RECS - 1);
			conn->count -= i + 1;
			return end;
		}
	}
	for (int i = 0; i < TLS_RECS; i++) {
		if (!conn->count || (__s32)(conn->recs[conn->first & (TLS_RECS - 1)].end - fallback) > 0)
			break;
		conn->first = (conn->first + 1) & (TLS_RECS - 1);
		conn->count -= 1;
	}
	return fallback;
}

/* The socket's ciphertext is muted: in `muted` (its bytes outside a call; a mute_gen bump keeps
 * it so in syscall mode), in this CPU's cache (socket mode) or its `seen` entry (syscall mode).
 * Socket mode records it in sk_info, so that its close comes. Once per call. Returns the
 * socket's id: `id`, its cookie, in socket mode; in syscall mode its `seen` entry's, made if
 * need be (muted or not: sock_id would say 0 for a muted one). */
static __always_inline __u64 tls_mute_raw(struct sock *sk, __u64 id, __u32 pid)
{
	__u8 one = 1;
	if (syscall_mode) {
		__u64 key = (__u64)sk;
		struct sock_info *si = bpf_map_lookup_elem(&seen, &key);
		if (!si || si->ino) { /* none, or a dead Unix socket's at this address */
			id = sock_id(sk, pid, 0);
			si = bpf_map_lookup_elem(&seen, &key);
		} else {
			id = si->id;
		}
		if (si)
			si->muted = 1;
		bpf_map_update_elem(&muted, &id, &one, BPF_ANY);
		return id;
	}
	bpf_map_update_elem(&muted, &id, &one, BPF_ANY);
	record_sock(sk, id, pid);
	__u32 zero = 0;
	struct sock_cache *c = bpf_map_lookup_elem(&sock_cache, &zero);
	if (c) {
		__u32 i = st_sock_slot(id);
		if (c->slot[i].id == id)
			c->slot[i].muted = 1;
	}
	return id;
}

/* A socket hook, on a TCP socket of a traced thread that moved `len` bytes: true when the thread
 * is inside an OpenSSL call (its bytes are ciphertext: no event; the call notes the socket, where
 * its records end and when they moved, by TCP's stamps as a plain event is: event_ts). `id`: the
 * socket's cookie in socket mode; 0 in syscall mode (tls_mute_raw finds it). */
static __always_inline bool tls_io(struct task_struct *task, struct sock *sk, struct tcp_sock *tp, bool direct, __u64 id,
				   __u8 dir, __u32 len, __u64 ubuf, __u32 pid)
{
	/* (called for processes with ST_PID_TLS only) A thread that never entered an OpenSSL call
	 * has no task storage at all: one load instead of the helper call. */
	if (!task->bpf_storage)
		return false;
	struct tls_call *c = bpf_task_storage_get(&tls_calls, task, 0, 0);
	if (!c || !c->active)
		return false;
	if (c->sk != (__u64)sk) {
		c->sk = (__u64)sk;
		c->id = tls_mute_raw(sk, id, pid);
	}
	__u32 seq = seq_of(sk, tp, direct, dir, len);
	if (dir == ST_DIR_SEND) {
		if (!(c->io & TLS_SENT)) {
			c->send_end = seq + len;
			c->send_ns = tcp_stamp(sk, tp, direct, dir, seq, len) ?: bpf_ktime_get_ns();
		}
		c->io |= TLS_SENT;
	} else {
		c->recv_end = seq + len;
		c->recv_ns = tcp_stamp(sk, tp, direct, dir, seq, len) ?: bpf_ktime_get_ns();
		c->io |= TLS_RECVD;
		struct tls_conn *conn = tls_conn_of(c, pid, (__u64)sk, c->id);
		if (conn) {
			/* a handshake's first receive is the connection's first byte (probes on before it) */
			tls_records(conn, ubuf, seq, len, conn->fresh && !c->buf);
			conn->fresh = 0;
		}
	}
	return true;
}

static __always_inline int tls_enter(struct pt_regs *ctx, __u64 ssl, __u64 buf, __u64 moved, __u8 dir)
{
	struct task_struct *task = bpf_get_current_task_btf();
	if (!is_traced(task->tgid)) /* `del`ed; its probes go at the loader's next poll */
		return 0;
	struct tls_call *c = bpf_task_storage_get(&tls_calls, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!c)
		return 0;
	__u64 sp = PT_REGS_SP(ctx);
	if (c->active && sp < c->sp)
		return 0; /* inside another call: the outer one's */
	*c = (struct tls_call){ .ssl = ssl, .buf = buf, .moved = moved, .sp = sp, .active = 1, .dir = dir };
	return 0;
}

static __always_inline int tls_exit(struct pt_regs *ctx, long ret)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct tls_call *c = bpf_task_storage_get(&tls_calls, task, 0, 0);
	if (!c || !c->active || PT_REGS_SP(ctx) <= c->sp)
		return 0; /* not in a call, or an inner call's return */
	c->active = 0;
	__u32 pid = task->tgid;
	struct tls_key k = { .ssl = c->ssl, .pid = pid };
	struct tls_conn *conn = c->sk ? tls_conn_of(c, pid, c->sk, c->id) : bpf_map_lookup_elem(&tls_conns, &k);
	if (!conn)
		return 0; /* a socket never seen */
	if (!c->buf) { /* a handshake: its records are not answers */
		if (c->io & TLS_RECVD)
			conn->recv_end = c->recv_end;
		conn->count = 0;
		return 0;
	}
	/* all five return an int: rax's upper half is not part of it (-1, "want read", is 2^32 - 1) */
	__s64 n = (int)ret;
	if (c->moved) {
		__u64 moved = 0;
		if (n != 1 || bpf_probe_read_user(&moved, sizeof(moved), (void *)c->moved))
			return 0;
		n = moved;
	}
	if (n <= 0)
		return 0;
	struct sock *sk = (void *)conn->sk;
	/* The time is the ciphertext's, as a plain event's is its bytes': a write's when its first
	 * record left, a read's when its last record was read (not at the return, by when the
	 * peer may have read the record: the client's span would begin after the server's). Held
	 * up past a write-out, it takes the cutoff (event_ts). */
	__u32 mark;
	__u64 ts = 0;
	if (c->dir == ST_DIR_RECV) {
		mark = tls_pick(conn, n, (c->io & TLS_RECVD) ? c->recv_end : conn->recv_end);
		conn->recv_end = mark;
		if (c->io & TLS_RECVD)
			ts = c->recv_ns;
	} else if (c->io & TLS_SENT) {
		mark = c->send_end;
		ts = c->send_ns;
	} else { /* nothing sent in the call: no record to name */
		mark = BPF_CORE_READ((struct tcp_sock *)sk, write_seq);
	}
	__u64 id = conn->id | ST_TLS_ID;
	__u64 pid_tgid = (__u64)pid << 32 | (__u32)task->pid;
	struct batch *b = begin_event();
	if (!b)
		return 0;
	bool tuple = true;
	if (batching(b)) {
		/* (sk is no trusted pointer here; the plaintext's id is not recorded in sk_info) */
		int known = tcp_sock_cached(sk, false, id, pid, BPF_CORE_READ(sk, __sk_common.skc_family), false);
		if (known == SOCK_MUTED) {
			end_event(b);
			return 0;
		}
		tuple = known == SOCK_NEW;
	} else if (bpf_map_lookup_elem(&muted, &id)) {
		end_event(b);
		return 0;
	}
	struct msg_src m = { .buf = c->buf, .tls = true };
	if (!ts)
		ts = bpf_ktime_get_ns();
	emit_in(b, sk, false, id, tuple, c->dir, n, mark, &m, pid_tgid, ts >= b->cutoff_ns ? ts : b->cutoff_ns);
	end_event(b);
	return 0;
}

/* The loader attaches these to each traced process mapping libssl, by function name
 * (tls_probes.c); ssl_return as the return probe of all five. */
SEC("uprobe")
int BPF_KPROBE(ssl_write, void *ssl, const void *buf)
{
	return tls_enter(ctx, (__u64)ssl, (__u64)buf, 0, ST_DIR_SEND);
}

SEC("uprobe")
int BPF_KPROBE(ssl_write_ex, void *ssl, const void *buf, __u64 num, __u64 *written)
{
	return tls_enter(ctx, (__u64)ssl, (__u64)buf, (__u64)written, ST_DIR_SEND);
}

SEC("uprobe")
int BPF_KPROBE(ssl_read, void *ssl, void *buf)
{
	return tls_enter(ctx, (__u64)ssl, (__u64)buf, 0, ST_DIR_RECV);
}

SEC("uprobe")
int BPF_KPROBE(ssl_read_ex, void *ssl, void *buf, __u64 num, __u64 *readbytes)
{
	return tls_enter(ctx, (__u64)ssl, (__u64)buf, (__u64)readbytes, ST_DIR_RECV);
}

SEC("uprobe")
int BPF_KPROBE(ssl_handshake, void *ssl)
{
	return tls_enter(ctx, (__u64)ssl, 0, 0, 0);
}

SEC("uretprobe")
int BPF_KRETPROBE(ssl_return, long ret)
{
	return tls_exit(ctx, ret);
}

#endif /* SEQTRACE_TLS_BPF_H */
