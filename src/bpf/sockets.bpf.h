// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * Sockets: the id of each socket that carried traced bytes and the pid that last used it
 * (sk_info on the socket in socket mode, `seen` by address in syscall mode: they give the
 * close events), and each CPU's cache of the sockets whose 4-tuple its batches already sent
 * (an event on one of them leaves the tuple out). Included by seqtrace.bpf.c.
 */
#ifndef SEQTRACE_SOCKETS_BPF_H
#define SEQTRACE_SOCKETS_BPF_H

/* Sockets that carried traced bytes: their id and the pid that last moved bytes on them.
 * Gives close events (only for these sockets) and, in syscall mode, a stable id. */
struct sock_info {
	__u64 id;
	__u32 pid;
	__u32 mute_gen; /* syscall mode: `mute_gen` when `muted` was last looked at */
	__u32 muted;    /* syscall mode: the id is in `muted` */
	__u32 ino;      /* syscall mode, a Unix socket: its inode number (sock_id) */
	/* Unix stream sockets: bytes sent and received since the capture first saw the socket, the
	 * `seq` of their events (a Unix socket has no sequence numbers; these make a lost event a
	 * gap to the agent, as TCP's do). */
	__u64 sent;
	__u64 recvd;
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

/* Sockets user space found carrying something other than HTTP/1 (a database's or cache's
 * protocol, HTTP/2, a tunnel, a WebSocket), by id: their bytes are not captured any more (their
 * close still is), so a traced service's other traffic costs a check per call instead of an
 * event. Socket mode looks a socket up only when it enters a CPU's cache of recent sockets, and
 * the loader's `mute` empties the caches (tuple_gen); syscall mode when its `seen` entry last
 * looked before the latest `mute` (mute_gen). LRU: a socket pushed out is captured again (user
 * space ignores its calls, as before muting); ids are never reused, so entries of closed
 * sockets are harmless until they age out. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, ST_MUTED_MAX);
	__type(key, __u64);
	__type(value, __u8);
} muted SEC(".maps");

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
		__u32 muted; /* in `muted` when the slot was filled */
	} slot[ST_SOCK_CACHE];
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sock_cache);
} sock_cache SEC(".maps");

/* Invented ids (syscall mode) have bit 52 set: kernel cookies (a counter from 1) never get that
 * high, and every id stays below 2^53, where the agent holds it exactly as a JavaScript number. */
__u64 next_id = 0;

/* Syscall mode: bumped by the loader at every `mute`: each socket's next call looks itself up
 * in `muted` again (sock_id). */
__u32 mute_gen = 0;

/* Bumped by the loader when a record reached it without a tuple it knows (st_data_rec): every
 * CPU empties its cache of recent sockets at its next event, so each socket's next event
 * carries its tuple again. */
__u32 tuple_gen = 0;

/* Forget the sockets of this CPU's cache: their next events carry the tuple again. */
static __always_inline void forget_recent(void)
{
	__u32 zero = 0;
	struct sock_cache *c = bpf_map_lookup_elem(&sock_cache, &zero);
	if (c)
		c->epoch += 1;
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

/* Socket mode: records the socket in sk_info (record_sock); whether it is muted. */
static __always_inline bool record_sock_muted(struct sock *sk, __u64 id, __u32 pid)
{
	record_sock(sk, id, pid);
	return bpf_map_lookup_elem(&muted, &id) != 0;
}

/* Whether socket `id` is muted; with `record` also recorded in sk_info (record_sock_muted). A TLS
 * connection's plaintext (tls.bpf.h) is not recorded: its id is not the socket's. */
static __always_inline bool sock_muted_now(struct sock *sk, __u64 id, __u32 pid, bool record)
{
	return record ? record_sock_muted(sk, id, pid) : bpf_map_lookup_elem(&muted, &id) != 0;
}

/* What sock_cached found */
#define SOCK_NEW 0    /* recorded now: the event carries the tuple */
#define SOCK_CACHED 1 /* its tuple went out earlier: the event leaves it out */
#define SOCK_MUTED 2  /* no event */

/* Socket mode, an event going into this CPU's batch: whether the socket is in the CPU's cache of
 * recent sockets with this pid and these addresses (then its tuple went out in an earlier record
 * of this CPU's batches and sk_info holds this pid: nothing to do); else it is recorded in
 * sk_info and in the cache, and the event carries the tuple. Either way a muted socket has no
 * event. (Two processes taking turns on one socket on different CPUs can leave the other one's
 * pid in sk_info: the close then names that one.) `addrs` and `ports` are what the tuple says
 * in 96 bits (TCP: both addresses' last 32 bits, both ports; Unix: the peer's cookie). `record`:
 * see sock_muted_now. */
static __always_inline int sock_cached(struct sock *sk, __u64 id, __u32 pid, __u64 addrs, __u32 ports, bool record)
{
	__u32 zero = 0;
	struct sock_cache *c = bpf_map_lookup_elem(&sock_cache, &zero);
	if (!c)
		return sock_muted_now(sk, id, pid, record) ? SOCK_MUTED : SOCK_NEW;
	__u32 gen = *(volatile __u32 *)&tuple_gen;
	if (c->gen != gen) { /* the loader lost a tuple: every socket sends its tuple again */
		c->epoch += 1;
		c->gen = gen;
	}
	__u32 i = st_sock_slot(id);
	if (c->slot[i].id == id && c->slot[i].pid == pid && c->slot[i].addrs == addrs && c->slot[i].ports == ports &&
	    c->slot[i].epoch == c->epoch)
		return c->slot[i].muted ? SOCK_MUTED : SOCK_CACHED;
	__u32 mute = sock_muted_now(sk, id, pid, record);
	c->slot[i].id = id;
	c->slot[i].pid = pid;
	c->slot[i].addrs = addrs;
	c->slot[i].ports = ports;
	c->slot[i].epoch = c->epoch;
	c->slot[i].muted = mute;
	/* A muted socket's slot holds no tuple the loader knows: its next unmuted event (after the
	 * LRU let it go) misses and carries one. */
	return mute ? SOCK_MUTED : SOCK_NEW;
}

/* sock_cached for a TCP socket: its addresses and ports (`direct`: RD, a trusted pointer). */
static __always_inline int tcp_sock_cached(struct sock *sk, bool direct, __u64 id, __u32 pid, __u16 family, bool record)
{
	__u64 addrs;
	if (family == AF_INET)
		addrs = RD(direct, sk, __sk_common.skc_addrpair);
	else
		addrs = RD(direct, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr32[3]) |
			(__u64)RD(direct, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32[3]) << 32;
	return sock_cached(sk, id, pid, addrs, RD(direct, sk, __sk_common.skc_portpair), record);
}

/* Syscall mode: the id of a socket, remembered in `seen` with the pid that last used it; 0 when
 * it is muted. `ino`: a Unix socket's inode number (else 0). A TCP socket's entry goes at its
 * destruction (tcp_destroy_sock); a Unix socket has no such event, so its entry stays until the
 * LRU drops it, and a socket later made at the same address must not take its id, counts or
 * mute: an entry whose inode is not the socket's is a dead socket's, replaced. */
static __always_inline __u64 sock_id(struct sock *sk, __u32 pid, __u32 ino)
{
	__u64 key = (__u64)sk;
	struct sock_info *si = bpf_map_lookup_elem(&seen, &key);
	if (si && si->ino == ino) {
		if (si->pid != pid)
			si->pid = pid;
		__u32 gen = *(volatile __u32 *)&mute_gen;
		if (si->mute_gen != gen) { /* a socket was muted since: this one? */
			si->muted = bpf_map_lookup_elem(&muted, &si->id) != 0;
			si->mute_gen = gen;
		}
		return si->muted ? 0 : si->id;
	}
	/* new here, so not muted: user space mutes by the id made now */
	struct sock_info n = { .pid = pid, .mute_gen = *(volatile __u32 *)&mute_gen, .ino = ino };
	n.id = (1ULL << 52) | __sync_fetch_and_add(&next_id, 1);
	bpf_map_update_elem(&seen, &key, &n, BPF_ANY);
	return n.id;
}

#endif /* SEQTRACE_SOCKETS_BPF_H */
