/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/*
 * Go: goroutine ids for the data events of Go processes, without a probe on the scheduler.
 *
 * A socket tracepoint fires inside the syscall of the goroutine that made it, and Go keeps the
 * running goroutine's g in thread-local storage (on linux/amd64 at fsbase + a per-binary offset,
 * -8 for internally linked binaries). So the data path reads fsbase from the task (BTF), then
 * g, then g->goid: a goroutine switch costs nothing extra; only for a process that can call out
 * (ST_GO_CALLS_OUT, see go_goid). Offsets come from the binary (DWARF,
 * ELF symbols: src/agent/go/gooffsets) and reach the kernel through the loader's `go` command.
 *
 * Two uprobes, attached by the loader to each Go process (not to every process running the
 * binary: an untraced process of the same binary pays nothing), both per event they describe,
 * never per switch:
 *  - runtime.newproc1's result (at the NOP5 before newproc.func1's call to runqput, else at each
 *    RET of newproc1; no uretprobe, which rewrites the return address Go's tracebacks check):
 *    a goroutine event (parent goid, child goid) so user space lets a child
 *    goroutine inherit its creator's thread group, like a thread event. Only for a process that
 *    can call out: its binary links net/http's client, or it opened a TCP connection
 *    (go_calls_out). A server that calls nobody has no thread group for a child to inherit
 *    into an exit span, and a net/http server starts a goroutine per request.
 *  - net/http.(*persistConn).roundTrip: runs on the caller's goroutine (a handler or its child)
 *    while the transport's own goroutines (writeLoop, readLoop) do the I/O. It records
 *    sock -> caller goid; data events on that socket carry the caller's goid. Go's HTTP/1.1
 *    client has one request at a time per connection, so the record holds until the next round
 *    trip on it or the socket's close.
 * Included by seqtrace.bpf.c after the batch helpers (begin_event, send_small); the data path
 * calls go_goid() (a bit of the traced word for processes that are not Go).
 */
#ifndef SEQTRACE_GO_BPF_H
#define SEQTRACE_GO_BPF_H

/* Go processes: tgid -> offsets read from its binary. Loader `go` command; removed on `del`
 * and at process exit. Processes not in it are traced by thread (goid 0). */
#define go_proc st_go_proc /* the value layout is in seqtrace.h (the loader writes it) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct go_proc);
} go_procs SEC(".maps");

/* HTTP client sockets: sock address -> goid of the goroutine whose round trip uses it now.
 * Removed when the socket ends (sock_destroy); LRU so a missed end cannot fill it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u64);
} go_rt SEC(".maps");

/* Counters of the Go probes: [0] goroutine events, [1] round trips recorded, [2] round trips
 * whose connection was not a *net.TCPConn (TLS, custom dialers: left to the goroutine id). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} go_stats SEC(".maps");

static __always_inline void go_stat(__u32 which)
{
	__u64 *v = bpf_map_lookup_elem(&go_stats, &which);
	if (v)
		*v += 1;
}

/* Bumped whenever an entry of go_procs changes (the loader's go and del, through its mmap of
 * .bss; the kernel when it sets a flag or a process exits): the per-CPU copy in go_cache is
 * then read again. */
__u32 go_gen = 0;

static __always_inline void go_changed(void)
{
	__sync_fetch_and_add(&go_gen, 1);
}

#define GO_G_HEAD 256 /* bytes of runtime.g read at once: stack bounds through goid */

/* Per CPU: the go_procs entry of the last Go process seen on it (a hash lookup per data event
 * cost ≈ 100 ns here), and room to read the head of a g. */
struct go_cached {
	__u32 pid;
	__u32 gen;
	__s64 tls_off;
	__u64 goid_off;
	__u64 flags;
	__u64 head[GO_G_HEAD / 8];
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct go_cached);
} go_cache SEC(".maps");

/* pid's go_procs entry, from this CPU's copy while nothing changed. */
static __always_inline struct go_cached *go_proc_of(__u32 pid)
{
	__u32 zero = 0;
	struct go_cached *c = bpf_map_lookup_elem(&go_cache, &zero);
	if (!c)
		return NULL;
	__u32 gen = *(volatile __u32 *)&go_gen; /* before the lookup: a change after it refreshes next time */
	if (c->pid == pid && c->gen == gen)
		return c;
	struct go_proc *gp = bpf_map_lookup_elem(&go_procs, &pid);
	if (!gp)
		return NULL;
	c->pid = pid;
	c->gen = gen;
	c->tls_off = gp->tls_off;
	c->goid_off = gp->goid_off;
	c->flags = gp->flags;
	return c;
}

/* The goid of the goroutine running on the current thread, 0 when it cannot be read. In Go's
 * register ABI (Go 1.17+) R14 holds the running g, and the syscall stubs and the functions the
 * uprobes sit on keep it there: one read of g's head gives its stack bounds, which must hold the
 * thread's user stack pointer (so R14 really was this goroutine's g), and its goid. Otherwise
 * (the runtime's own stubs, cgo) g comes from thread-local storage: two reads. */
static __always_inline __u64 go_current_goid(struct go_cached *c, struct pt_regs *regs)
{
	if (!regs) /* the caller had not read them */
		regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	__u64 g = regs->r14, sp = regs->sp, off = c->goid_off, goid = 0;
	if (g && !(off & 7) && off + 8 <= GO_G_HEAD) {
		__u64 n = (off + 8) & (2 * GO_G_HEAD - 1);
		if (n > GO_G_HEAD)
			n = GO_G_HEAD;
		asm volatile("%[n] &= %[m]" : [n] "+r"(n) : [m] "i"(2 * GO_G_HEAD - 1)); /* as in copy_user */
		if (!bpf_probe_read_user(c->head, n, (void *)g) && c->head[0] <= sp && sp < c->head[1])
			return c->head[(off / 8) & (GO_G_HEAD / 8 - 1)];
	}
	__u64 fsbase = bpf_get_current_task_btf()->thread.fsbase;
	g = 0;
	if (!fsbase || bpf_probe_read_user(&g, sizeof(g), (void *)(fsbase + c->tls_off)) || !g)
		return 0;
	bpf_probe_read_user(&goid, sizeof(goid), (void *)(g + off));
	return goid;
}

/* Data-path hook: the goid a data event on sock sk of process pid carries (0: not Go). is_go: the
 * pid's ST_PID_GO bit (read with its traced bit: no lookup at all for other processes); regs:
 * the thread's saved registers, or NULL. */
static __always_inline __u64 go_goid(bool is_go, __u32 pid, __u64 sk, struct pt_regs *regs)
{
	if (!is_go)
		return 0;
	struct go_cached *c = go_proc_of(pid);
	if (!c)
		return 0;
	/* A goid only ever puts an exit span into the group of the entry its goroutine serves. A
	 * process that never called out (a leaf server: no net/http client in its binary, no TCP
	 * connection opened) has no exit spans, so its goids would link nothing, and reading g is
	 * most of what a Go event costs beyond a plain one. From its first connect (SYN_SENT, in
	 * the connecting thread, before any byte of that connection) its events carry goids. */
	if (!(c->flags & ST_GO_CALLS_OUT))
		return 0;
	/* go_rt holds sockets of round trips (a round trip sets ST_GO_CALLS_OUT first) */
	__u64 *caller = bpf_map_lookup_elem(&go_rt, &sk);
	if (caller)
		return *caller;
	return go_current_goid(c, regs);
}

/* Hook of the state-change path: a thread of pid is opening a TCP connection (SYN_SENT is set
 * by connect() in the caller's context). A Go process that calls out gets its goroutine-start
 * probe from the loader (see go_probes.c); one that never does (a leaf server) is spared the
 * uprobe on every goroutine start, one per request of a net/http server. */
static __always_inline void go_mark_calls_out(struct go_proc *gp)
{
	if (!(gp->flags & ST_GO_CALLS_OUT)) {
		__sync_fetch_and_or(&gp->flags, ST_GO_CALLS_OUT);
		go_changed();
	}
}

static __always_inline void go_calls_out(__u32 pid)
{
	if (!is_go(pid))
		return;
	struct go_proc *gp = bpf_map_lookup_elem(&go_procs, &pid);
	if (gp)
		go_mark_calls_out(gp);
}

/* Hooks for the close and exit paths. */
static __always_inline void go_sock_closed(__u64 sk)
{
	bpf_map_delete_elem(&go_rt, &sk);
}

static __always_inline void go_proc_exit(__u32 pid)
{
	if (bpf_map_delete_elem(&go_procs, &pid) == 0)
		go_changed();
}

/* A goroutine was started: newg is the new g; the thread runs on the system stack (newproc's
 * systemstack closure), so TLS holds g0, whose m's curg is the goroutine that executed `go`. */
static __always_inline int go_report_newproc(__u64 newg)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 pid = pid_tgid >> 32, tid = (__u32)pid_tgid;
	if (!is_go(pid))
		return 0;
	struct go_proc *gp = bpf_map_lookup_elem(&go_procs, &pid);
	if (!gp)
		return 0;
	struct task_struct *t = bpf_get_current_task_btf();
	__u64 fsbase = t->thread.fsbase;
	__u64 g0 = 0, m = 0, curg = 0;
	struct st_goroutine_event e = { .kind = ST_EV_GOROUTINE, .pid = pid, .tid = tid };
	if (bpf_probe_read_user(&g0, sizeof(g0), (void *)(fsbase + gp->tls_off)) || !g0 ||
	    bpf_probe_read_user(&m, sizeof(m), (void *)(g0 + gp->g_m)) || !m ||
	    bpf_probe_read_user(&curg, sizeof(curg), (void *)(m + gp->m_curg)) || !curg ||
	    bpf_probe_read_user(&e.pgoid, sizeof(e.pgoid), (void *)(curg + gp->goid_off)) ||
	    bpf_probe_read_user(&e.goid, sizeof(e.goid), (void *)(newg + gp->goid_off)) || !e.goid)
		return 0;
	struct batch *b = begin_event(); /* into this CPU's batch, in time order with the data events */
	if (!b)
		return 0;
	e.ts_ns = bpf_ktime_get_ns();
	send_small(b, &e, sizeof(e));
	end_event(b);
	go_stat(0);
	return 0;
}

/* Each RET of runtime.newproc1: the new g is its result, in RAX. */
SEC("uprobe")
int BPF_KPROBE(go_newproc1_ret)
{
	return go_report_newproc(ctx->ax);
}

/* The NOP5 right before newproc.func1's call runqput(pp, newg, next): newg in RBX. Preferred
 * when the binary has it (gooffsets): the kernel turns a uprobe on a NOP5 into a call, not a
 * trap. */
SEC("uprobe")
int BPF_KPROBE(go_newproc_nop5)
{
	return go_report_newproc(ctx->bx);
}

/* The TCP sock behind fd of the current process, or 0. */
static __always_inline __u64 go_fd_sock(__u64 fd)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(t, files, fdt);
	if (!fdt || fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = NULL;
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	if (!f)
		return 0;
	struct socket *sock = BPF_CORE_READ(f, private_data);
	return (__u64)BPF_CORE_READ(sock, sk);
}

SEC("uprobe")
int BPF_KPROBE(go_round_trip)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct go_proc *gp = bpf_map_lookup_elem(&go_procs, &pid);
	if (!gp || !gp->pconn_conn)
		return 0;
	go_mark_calls_out(gp); /* also for a pooled connection opened before the loader knew pid */
	/* (*persistConn).roundTrip(pc, req): pc in RAX; pc.conn is an interface {itab, data} */
	__u64 iface[2] = {};
	__u64 netfd = 0;
	__s64 fd = -1;
	if (bpf_probe_read_user(iface, sizeof(iface), (void *)(ctx->ax + gp->pconn_conn)))
		return 0;
	if (iface[0] != gp->tcpconn_itab || !iface[1]) {
		go_stat(2);
		return 0;
	}
	if (bpf_probe_read_user(&netfd, sizeof(netfd), (void *)(iface[1] + gp->tcpconn_fd)) || !netfd ||
	    bpf_probe_read_user(&fd, sizeof(fd), (void *)(netfd + gp->netfd_sysfd)) || fd < 0)
		return 0;
	__u64 sk = go_fd_sock(fd);
	struct go_cached *c = go_proc_of(pid);
	__u64 goid = c ? go_current_goid(c, NULL) : 0;
	if (!sk || !goid)
		return 0;
	bpf_map_update_elem(&go_rt, &sk, &goid, BPF_ANY);
	go_stat(1);
	return 0;
}

/* For comparison only (bench/go-switch-cost.sh): the seed's design, a uprobe on the scheduler's
 * runtime.execute(gp *g, ...) recording tid -> goid at every goroutine switch. Not used by the
 * agent: it is what the TLS read above avoids. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u64);
} go_running SEC(".maps");

SEC("uprobe")
int BPF_KPROBE(go_execute)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 pid = pid_tgid >> 32, tid = (__u32)pid_tgid;
	struct go_proc *gp = bpf_map_lookup_elem(&go_procs, &pid);
	__u64 goid = 0;
	if (!gp || bpf_probe_read_user(&goid, sizeof(goid), (void *)(ctx->ax + gp->goid_off)))
		return 0;
	bpf_map_update_elem(&go_running, &tid, &goid, BPF_ANY);
	return 0;
}

#endif
