// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * Syscall mode (the fallback for kernels without tp_btf/sock_send_length, < 6.3): the
 * programs on tracepoint/syscalls/sys_enter_* and sys_exit_* of every syscall that moves
 * bytes on a socket. Enter saves the arguments per thread (`calls`), exit finds the socket
 * through fd -> file -> socket -> sock (BTF) and emits the same data events as socket mode.
 * Included by seqtrace.bpf.c after the shared event construction; only loaded when the loader
 * chooses this mode.
 */
#ifndef SEQTRACE_SYSCALL_MODE_BPF_H
#define SEQTRACE_SYSCALL_MODE_BPF_H

/* ---------------------------------------------------------------- syscall mode */

/* Syscall mode: the arguments saved at syscall entry, tid -> args, read at exit. */
struct call_args {
	__u64 nr;
	__u64 fd;
	__u64 buf; /* buffer, iovec, msghdr or mmsghdr array */
	__u64 cnt; /* iovec count or mmsg vlen */
	__u64 fd2; /* splice: fd_out */
	__u64 flags; /* recvfrom, recvmsg, recvmmsg: MSG_PEEK is no receive */
};
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct call_args);
} calls SEC(".maps");

static __always_inline int enter_flags(__u64 nr, __u64 fd, __u64 buf, __u64 cnt, __u64 fd2, __u64 flags)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (!is_traced(pid_tgid >> 32))
		return 0;
	__u32 tid = (__u32)pid_tgid;
	struct call_args a = { .nr = nr, .fd = fd, .buf = buf, .cnt = cnt, .fd2 = fd2, .flags = flags };
	bpf_map_update_elem(&calls, &tid, &a, BPF_ANY);
	return 0;
}

static __always_inline int enter(__u64 nr, __u64 fd, __u64 buf, __u64 cnt, __u64 fd2)
{
	return enter_flags(nr, fd, buf, cnt, fd2, 0);
}

/* The TCP or Unix stream sock behind fd of the current process (*af_unix: which), or NULL. */
static __always_inline struct sock *fd_sock(__u64 fd, bool *af_unix)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(t, files, fdt);
	if (!fdt || fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = NULL;
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	if (!f)
		return NULL;
	umode_t mode = BPF_CORE_READ(f, f_inode, i_mode);
	if ((mode & S_IFMT) != S_IFSOCK)
		return NULL;
	struct socket *sock = BPF_CORE_READ(f, private_data);
	struct sock *sk = BPF_CORE_READ(sock, sk);
	if (!sk || BPF_CORE_READ(sk, sk_type) != SOCK_STREAM)
		return NULL;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	*af_unix = family == AF_UNIX;
	if (*af_unix)
		return sk;
	return BPF_CORE_READ(sk, sk_protocol) == IPPROTO_TCP && (family == AF_INET || family == AF_INET6) ? sk : NULL;
}

/* sock_id for the socket of a call. */
static __always_inline __u64 call_sock_id(struct sock *sk, bool af_unix, __u32 pid)
{
	return sock_id(sk, pid, af_unix ? unix_ino(sk) : 0);
}

/* The seq of `len` bytes a call moved on sk (its `seen` entry made by sock_id): TCP's sequence
 * number of the first, or a Unix socket's count of the bytes it moved that way before them. */
static __always_inline __u32 call_seq(struct sock *sk, bool af_unix, __u8 dir, __u32 len)
{
	if (!af_unix)
		return seq_of(sk, (struct tcp_sock *)sk, false, dir, len);
	__u64 key = (__u64)sk;
	struct sock_info *si = bpf_map_lookup_elem(&seen, &key);
	if (!si)
		return 0;
	return __sync_fetch_and_add(dir == ST_DIR_SEND ? &si->sent : &si->recvd, (__u64)len);
}

/* Syscall mode, at exit: the arguments saved at entry for this thread, removed from `calls`
 * (whatever the outcome, so a failed call leaves nothing behind). */
static __always_inline bool take_call(__u32 tid, struct call_args *out)
{
	struct call_args *ap = bpf_map_lookup_elem(&calls, &tid);
	if (!ap)
		return false;
	*out = *ap;
	bpf_map_delete_elem(&calls, &tid);
	return true;
}

static __always_inline int exit_call(long ret)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 bits = pid_bits(pid_tgid >> 32);
	struct call_args a;
	if (!(bits & ST_PID_TRACED) || !take_call((__u32)pid_tgid, &a))
		return 0;
	/* a peek moved nothing (socket mode skips it too; PHP's streams peek a byte to see whether
	 * a connection is alive: taken for a read, its bytes came twice, the first time one early) */
	if (ret < 0 || (a.flags & MSG_PEEK))
		return 0;
	if (ret == 0) {
		/* a read of 0 bytes at a Unix stream socket: its end (unix_eof) */
		if (a.nr == NR_read || a.nr == NR_readv || a.nr == NR_preadv2 || a.nr == NR_recvfrom || a.nr == NR_recvmsg) {
			bool af_unix = false;
			struct sock *sk = fd_sock(a.fd, &af_unix);
			if (sk && af_unix)
				sock_event(sk, ST_EV_CLOSE, false);
		}
		return 0;
	}

	struct msg_src m = {};
	__u8 dir = ST_DIR_SEND;
	__u64 fd = a.fd;
	switch (a.nr) {
	case NR_read:
	case NR_recvfrom:
		dir = ST_DIR_RECV;
		/* fallthrough */
	case NR_write:
	case NR_sendto:
		m.buf = a.buf;
		break;
	case NR_readv:
	case NR_preadv2:
		dir = ST_DIR_RECV;
		/* fallthrough */
	case NR_writev:
	case NR_pwritev2:
		m.iov = a.buf;
		m.iovcnt = a.cnt;
		break;
	case NR_recvmsg:
		dir = ST_DIR_RECV;
		/* fallthrough */
	case NR_sendmsg: {
		struct user_msghdr h;
		if (bpf_probe_read_user(&h, sizeof(h), (void *)a.buf))
			m.no_payload = true;
		m.iov = (__u64)h.msg_iov;
		m.iovcnt = h.msg_iovlen;
		break;
	}
	case NR_sendfile:
		m.no_payload = true;
		break;
	case NR_splice: {
		/* splice into a socket is a send; out of one, a receive */
		m.no_payload = true;
		bool out_af_unix = false;
		struct sock *out = fd_sock(a.fd2, &out_af_unix);
		if (out) {
			__u64 id = call_sock_id(out, out_af_unix, pid_tgid >> 32);
			if (!id) /* muted */
				return 0;
			return emit_data(out, false, id, ST_DIR_SEND, ret, call_seq(out, out_af_unix, ST_DIR_SEND, ret), &m, pid_tgid);
		}
		dir = ST_DIR_RECV;
		break;
	}
	default:
		return 0;
	}
	bool af_unix = false;
	struct sock *sk = fd_sock(fd, &af_unix);
	if (!sk)
		return 0;
	/* inside an OpenSSL call: ciphertext, whose plaintext comes from tls.bpf.h (before the mute:
	 * the socket's ciphertext is muted, the call still wants its sequence numbers) */
	if (!af_unix && (bits & ST_PID_TLS) &&
	    tls_io(bpf_get_current_task_btf(), sk, (struct tcp_sock *)sk, false, 0, dir, ret, m.buf, pid_tgid >> 32))
		return 0;
	__u64 id = call_sock_id(sk, af_unix, pid_tgid >> 32);
	if (!id) /* muted */
		return 0;
	return emit_data(sk, false, id, dir, ret, call_seq(sk, af_unix, dir, ret), &m, pid_tgid);
}

/* *mmsg at exit: ret messages moved, each with its msg_len; the socket's sequence counter
 * is past all of them, so message i starts at seq - (bytes of messages i..ret-1). */
static __always_inline int exit_mmsg(long ret, __u8 dir)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct call_args a;
	if (!is_traced(pid_tgid >> 32) || !take_call((__u32)pid_tgid, &a))
		return 0;
	if (ret <= 0 || (a.flags & MSG_PEEK))
		return 0;
	bool af_unix = false;
	struct sock *sk = fd_sock(a.fd, &af_unix);
	if (!sk)
		return 0;
	__u64 id = call_sock_id(sk, af_unix, pid_tgid >> 32);
	if (!id) /* muted */
		return 0;
	__u32 n = ret < ST_MAX_MMSG ? ret : ST_MAX_MMSG;
	__u32 total = 0;
	for (int i = 0; i < ST_MAX_MMSG; i++) {
		__u32 l = 0;
		if (i >= n)
			break;
		bpf_probe_read_user(&l, sizeof(l), (void *)(a.buf + i * sizeof(struct mmsghdr) +
							   offsetof(struct mmsghdr, msg_len)));
		total += l;
	}
	__u32 seq = call_seq(sk, af_unix, dir, total);
	for (int i = 0; i < ST_MAX_MMSG; i++) {
		if (i >= n)
			break;
		struct mmsghdr h;
		if (bpf_probe_read_user(&h, sizeof(h), (void *)(a.buf + i * sizeof(struct mmsghdr))))
			break;
		struct msg_src m = { .iov = (__u64)h.msg_hdr.msg_iov, .iovcnt = h.msg_hdr.msg_iovlen };
		if (h.msg_len > 0)
			emit_data(sk, false, id, dir, h.msg_len, seq, &m, pid_tgid);
		seq += h.msg_len;
	}
	return 0;
}

#define ARG(i) (ctx->args[i])

SEC("tracepoint/syscalls/sys_enter_read")
int sys_enter_read(struct trace_event_raw_sys_enter *ctx) { return enter(NR_read, ARG(0), ARG(1), 0, 0); }
SEC("tracepoint/syscalls/sys_enter_write")
int sys_enter_write(struct trace_event_raw_sys_enter *ctx) { return enter(NR_write, ARG(0), ARG(1), 0, 0); }
SEC("tracepoint/syscalls/sys_enter_readv")
int sys_enter_readv(struct trace_event_raw_sys_enter *ctx) { return enter(NR_readv, ARG(0), ARG(1), ARG(2), 0); }
SEC("tracepoint/syscalls/sys_enter_writev")
int sys_enter_writev(struct trace_event_raw_sys_enter *ctx) { return enter(NR_writev, ARG(0), ARG(1), ARG(2), 0); }
SEC("tracepoint/syscalls/sys_enter_preadv2")
int sys_enter_preadv2(struct trace_event_raw_sys_enter *ctx) { return enter(NR_preadv2, ARG(0), ARG(1), ARG(2), 0); }
SEC("tracepoint/syscalls/sys_enter_pwritev2")
int sys_enter_pwritev2(struct trace_event_raw_sys_enter *ctx) { return enter(NR_pwritev2, ARG(0), ARG(1), ARG(2), 0); }
SEC("tracepoint/syscalls/sys_enter_sendto")
int sys_enter_sendto(struct trace_event_raw_sys_enter *ctx) { return enter(NR_sendto, ARG(0), ARG(1), 0, 0); }
SEC("tracepoint/syscalls/sys_enter_recvfrom")
int sys_enter_recvfrom(struct trace_event_raw_sys_enter *ctx) { return enter_flags(NR_recvfrom, ARG(0), ARG(1), 0, 0, ARG(3)); }
SEC("tracepoint/syscalls/sys_enter_sendmsg")
int sys_enter_sendmsg(struct trace_event_raw_sys_enter *ctx) { return enter(NR_sendmsg, ARG(0), ARG(1), 0, 0); }
SEC("tracepoint/syscalls/sys_enter_recvmsg")
int sys_enter_recvmsg(struct trace_event_raw_sys_enter *ctx) { return enter_flags(NR_recvmsg, ARG(0), ARG(1), 0, 0, ARG(2)); }
SEC("tracepoint/syscalls/sys_enter_sendmmsg")
int sys_enter_sendmmsg(struct trace_event_raw_sys_enter *ctx) { return enter(NR_sendmmsg, ARG(0), ARG(1), ARG(2), 0); }
SEC("tracepoint/syscalls/sys_enter_recvmmsg")
int sys_enter_recvmmsg(struct trace_event_raw_sys_enter *ctx) { return enter_flags(NR_recvmmsg, ARG(0), ARG(1), ARG(2), 0, ARG(3)); }
SEC("tracepoint/syscalls/sys_enter_sendfile64")
int sys_enter_sendfile64(struct trace_event_raw_sys_enter *ctx) { return enter(NR_sendfile, ARG(0), 0, 0, 0); }
SEC("tracepoint/syscalls/sys_enter_splice")
int sys_enter_splice(struct trace_event_raw_sys_enter *ctx) { return enter(NR_splice, ARG(0), 0, 0, ARG(2)); }

#define EXIT(name)                                                        \
	SEC("tracepoint/syscalls/sys_exit_" #name)                        \
	int sys_exit_##name(struct trace_event_raw_sys_exit *ctx) { return exit_call(ctx->ret); }
EXIT(read)
EXIT(write)
EXIT(readv)
EXIT(writev)
EXIT(preadv2)
EXIT(pwritev2)
EXIT(sendto)
EXIT(recvfrom)
EXIT(sendmsg)
EXIT(recvmsg)
EXIT(sendfile64)
EXIT(splice)

SEC("tracepoint/syscalls/sys_exit_sendmmsg")
int sys_exit_sendmmsg(struct trace_event_raw_sys_exit *ctx) { return exit_mmsg(ctx->ret, ST_DIR_SEND); }
SEC("tracepoint/syscalls/sys_exit_recvmmsg")
int sys_exit_recvmmsg(struct trace_event_raw_sys_exit *ctx) { return exit_mmsg(ctx->ret, ST_DIR_RECV); }

#endif
