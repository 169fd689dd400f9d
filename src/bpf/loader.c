// SPDX-License-Identifier: Apache-2.0
/*
 * seqtrace-loader: loads seqtrace.bpf.c, attaches it, and streams its events.
 *
 *   seqtrace-loader [--mode socket|syscall|auto] [--capture-bytes N] [--ringbuf-bytes N]
 *                   [--batch-bytes N] [--pid PID]... [--provisional-exec] [--exec-env NAME]...
 *                   [--uprobes auto|perf|tracefs|perf-or-tracefs] [--verbose]
 *   seqtrace-loader --print-layout
 *
 * --provisional-exec: a process that execs is traced from its exec until `add` keeps it or
 *   `del` ends it (with the children it forked meanwhile); its exec event says so.
 * --uprobes: how the go and tls commands attach their uprobes (uprobes.h): auto (uprobe_multi
 *   links where the kernel has them, else perf-or-tracefs: perf events, refused: uprobe events
 *   in tracefs), or only perf events or only tracefs events (the ways of kernels before 6.6,
 *   for their tests).
 * --exec-env NAME: an exec's frame carries `NAME=value\0` for each such variable of the new
 *   image's environment, read as the event is taken (a client gone before the agent reads /proc
 *   is still selected and named by its environment).
 * stdin, one command a line:  add PID | del PID | stats | shutdowns | mute SOCK_ID   (each
 *   answered by an ACK frame, `stats` by a STATS frame then the ACK; `shutdowns`: SHUTDOWN
 *   events from now on, see state_prog; `mute`: no more data events of that socket, its close
 *   still comes). Go processes (go.bpf.h), also ACKed:
 *     go PID TLS_OFF GOID_OFF PCONN_CONN TCPCONN_ITAB TCPCONN_FD NETFD_SYSFD G_M M_CURG
 *     uprobe newproc1_ret|newproc_nop5|roundtrip FILE_OFFSET PATH   (attached to each Go process of
 *       that binary by its `go` command: go_probes.c)
 *     (uprobe execute: the seed's per-switch probe, for bench/go-switch-cost.sh only)
 *   A process using OpenSSL (tls.bpf.h), also ACKed:
 *     tls PID PATH   (OpenSSL's probes attached to that process, on its libssl at PATH: tls_probes.c)
 * stdout: frames, each a u32 little-endian length then that many bytes, the first byte
 *   being an st_kind (seqtrace.h). READY first, then events in ts_ns order (batches of the
 *   kernel unpacked, see output.c, "Order"); STATS every second.
 * stderr: messages. Exit status: 0 on SIGTERM/SIGINT/stdin EOF, 2 when eBPF is unavailable
 *   (privileges, BTF, kernel), 3 when the programs fail to load or attach, 1 on bad usage.
 *
 * Steps (as in libbpf-bootstrap): open -> set settings -> load -> attach -> drain; every
 * failure goes to the one cleanup path, which detaches every program and frees every map.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include "seqtrace.h"
#include "seqtrace.skel.h"
#include "go_probes.h"
#include "tls_probes.h"
#include "uprobes.h"
#include "loader.h"

#define STATS_EVERY_NS 1000000000ULL
#define GO_POLL_NS 100000000ULL /* Go processes that began calling out get their goroutine-start probe */

static struct {
	int mode; /* ST_MODE_*, 0 = auto */
	unsigned capture_bytes;
	unsigned ringbuf_bytes;
	int batch_bytes; /* -1: default (min(ST_BATCH_MAX, ringbuf_bytes / 8)) */
	bool provisional; /* --provisional-exec: trace every process from its exec until add or del */
	enum uprobe_way uprobes; /* --uprobes */
	bool verbose;
	int pids[64];
	int npids;
/* The ring buffer: 4 MiB is ~250 ms of a 2-event Go request stream at 14k requests/s while the
 * loader drains every 15 ms (and is woken at a quarter full); its pages are mapped twice into
 * this process (wrap-around), so each MiB shows as 2 MiB of the loader's RSS. */
} opt = { .capture_bytes = ST_CAPTURE_DEFAULT, .ringbuf_bytes = 4 << 20, .batch_bytes = -1 };

static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list args)
{
	if (level == LIBBPF_DEBUG && !opt.verbose)
		return 0;
	return vfprintf(stderr, fmt, args);
}

/* libbpf returns -errno; name the cause in words a user can act on. */
static const char *hint(int err)
{
	switch (err) {
	case EPERM:
		return "needs CAP_BPF+CAP_PERFMON (or root)";
	case EACCES:
		return "the verifier rejected a program (its log is above; --verbose for more)";
	case ENOENT:
	case ESRCH:
		return "a kernel feature is missing (BTF, tracepoint or tracefs)";
	case EINVAL:
	case E2BIG:
		return "the kernel rejected a program (verifier log above; --verbose for more)";
	case ENOMEM:
		return "out of memory for BPF maps (lower --ringbuf-bytes or raise RLIMIT_MEMLOCK)";
	default:
		return "";
	}
}

static int failed(const char *step, int err)
{
	err = err < 0 ? -err : err;
	fprintf(stderr, "seqtrace-loader: %s failed: %s (errno %d)%s%s\n", step, strerror(err), err,
		*hint(err) ? ": " : "", hint(err));
	return err == EPERM ? EXIT_UNAVAILABLE : EXIT_LOAD;
}

static void send_stats(struct seqtrace_bpf *skel)
{
	int ncpu = libbpf_num_possible_cpus();
	__u64 vals[ncpu > 0 ? ncpu : 1];
	__u64 sum[ST_STAT_MAX] = {};
	for (__u32 k = 0; k < ST_STAT_MAX && ncpu > 0; k++) {
		if (bpf_map_lookup_elem(bpf_map__fd(skel->maps.stats), &k, vals))
			continue;
		for (int c = 0; c < ncpu; c++)
			sum[k] += vals[c];
	}
	struct st_stats_event s = { .kind = ST_EV_STATS };
	s.events = sum[ST_STAT_EVENTS];
	s.drops = sum[ST_STAT_DROPS] + tuple_drops; /* both lost events */
	s.truncated = sum[ST_STAT_TRUNCATED];
	s.loader_cpu_ns = now_ns(CLOCK_PROCESS_CPUTIME_ID);
	s.late = late_events;
	frame(&s, sizeof(s));
}

/* ------------------------------------------------------------ traced processes */

/* The kernel's `traced` map (ST_PID_BITS bits per pid, ST_PID_*), mapped here: bits are set and
 * cleared with atomics, as the programs do on fork and exit. */
static __u64 *traced_words;
static __u32 traced_nwords;

static unsigned pid_max(void)
{
	unsigned n = 0;
	FILE *f = fopen("/proc/sys/kernel/pid_max", "r");
	if (f) {
		if (fscanf(f, "%u", &n) != 1)
			n = 0;
		fclose(f);
	}
	return n ? n : 1U << 22; /* the kernel's limit (PID_MAX_LIMIT on 64-bit) */
}

static int map_traced(struct seqtrace_bpf *skel)
{
	size_t bytes = (size_t)traced_nwords * sizeof(__u64);
	long page = sysconf(_SC_PAGESIZE);
	bytes = (bytes + page - 1) / page * page;
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, bpf_map__fd(skel->maps.traced), 0);
	if (p == MAP_FAILED)
		return -errno;
	traced_words = p;
	return 0;
}

/* false: the pid is past the map (kernel.pid_max raised after the loader started) */
static bool set_pid_bits(__u32 pid, __u64 bits, bool on)
{
	if (pid / ST_PIDS_PER_WORD >= traced_nwords)
		return false;
	bits <<= ST_PID_SHIFT(pid);
	if (on)
		__atomic_fetch_or(&traced_words[pid / ST_PIDS_PER_WORD], bits, __ATOMIC_SEQ_CST);
	else
		__atomic_fetch_and(&traced_words[pid / ST_PIDS_PER_WORD], ~bits, __ATOMIC_SEQ_CST);
	return true;
}

static bool pid_traced(__u32 pid)
{
	return pid / ST_PIDS_PER_WORD < traced_nwords &&
	       (__atomic_load_n(&traced_words[pid / ST_PIDS_PER_WORD], __ATOMIC_RELAXED) >> ST_PID_SHIFT(pid) & ST_PID_TRACED);
}

/* ------------------------------------------------------------ the data path, attached on demand */

/* The programs on every send and receive (socket mode) or every socket system call (syscall
 * mode), and at a socket's end (its close event). They run for every process on the host,
 * traced or not, and the kernel's dispatch to them costs even when they return at once: ≈ 3 %
 * of an untraced Go server's CPU per request on this project's VM (docs/kernel.md, "What
 * attaching costs a process that is not traced"). So they are attached only while a process is
 * traced: at the first `add` (or --pid) and detached once no traced bit is left (the last
 * traced process exited or was deleted; checked every second). Exec, fork and exit stay
 * attached: exec is how the agent finds processes to trace. At start they are attached once, so
 * that a kernel that refuses them stops the loader there, not at the first process. */
#define MAX_DATA_PROGS 64 /* syscall mode has 28 */
static struct {
	struct bpf_program *progs[MAX_DATA_PROGS];
	struct bpf_link *links[MAX_DATA_PROGS];
	int n;
	bool attached;
	int per_call_fds[2]; /* calls, mmsg_at: a thread's state inside one system call (forget_threads) */
	int by_sock_fds[2];  /* seen, go_rt: keyed by a socket's address (forget_sockets) */
} data_path = { .per_call_fds = { -1, -1 }, .by_sock_fds = { -1, -1 } };

/* A process no longer traced: its threads' state inside a system call goes, or a call it enters
 * untraced could find it once the process is traced again (the exit programs leave an untraced
 * thread's entry alone). */
static void forget_threads(__u32 pid)
{
	char path[32];
	snprintf(path, sizeof(path), "/proc/%u/task", pid);
	DIR *d = opendir(path);
	if (!d)
		return; /* gone: its threads' entries went with proc_exit */
	struct dirent *e;
	while ((e = readdir(d))) {
		__u32 tid = (__u32)strtoul(e->d_name, NULL, 10);
		for (int i = 0; tid && i < 2; i++)
			if (data_path.per_call_fds[i] >= 0)
				bpf_map_delete_elem(data_path.per_call_fds[i], &tid);
	}
	closedir(d);
}

/* The data path was just detached while processes run: the entries keyed by a socket's
 * address go. Each loses its entry when sock_destroy sees the socket end, which it does not
 * while detached, and TCP reuses a closed socket's memory at once (SLAB_TYPESAFE_BY_RCU): a
 * socket opened meanwhile at the same address would take the closed one's id (`seen`, syscall
 * mode) or its round trip's goroutine (`go_rt`). A socket still open gets a new id at its next
 * event (syscall mode); a round trip sets its go_rt entry again. */
static void forget_sockets(void)
{
	for (int i = 0; i < 2; i++) {
		int fd = data_path.by_sock_fds[i];
		__u64 key, next;
		int err = fd >= 0 ? bpf_map_get_next_key(fd, NULL, &key) : -1;
		while (!err) {
			err = bpf_map_get_next_key(fd, &key, &next); /* before the delete: it needs key */
			bpf_map_delete_elem(fd, &key);
			key = next;
		}
	}
}

static void detach_data_path(void)
{
	for (int i = 0; i < data_path.n; i++) {
		bpf_link__destroy(data_path.links[i]);
		data_path.links[i] = NULL;
	}
	if (data_path.attached && opt.verbose)
		fprintf(stderr, "seqtrace-loader: nothing traced: data path detached\n");
	data_path.attached = false;
}

/* 0, or the negative errno of the program that could not be attached (none is left attached). */
static int attach_data_path(void)
{
	if (data_path.attached)
		return 0;
	for (int i = 0; i < data_path.n; i++) {
		data_path.links[i] = bpf_program__attach(data_path.progs[i]);
		if (!data_path.links[i]) {
			int err = -errno;
			detach_data_path();
			return err;
		}
	}
	data_path.attached = true;
	if (opt.verbose)
		fprintf(stderr, "seqtrace-loader: data path attached\n");
	return 0;
}

/* sock_state, on every TCP state change of every socket on the host (≈ 5 in a connection's
 * life, ≈ 50 ns each): the SHUTDOWN events of traced sockets, which user space asks for once it
 * has seen a traced server answer until the close (`shutdowns`), and the Go processes that wait
 * for their first outgoing connection before their goroutine-start probe is attached
 * (go_probes.c). Attached while the data path is and either is wanted, else not: a host whose
 * servers frame their answers pays nothing per connection. 0, or the negative errno of a
 * failed attach. */
static struct {
	struct bpf_program *prog;
	struct bpf_link *link;
	bool shutdowns;
} state_prog;

static int update_state_prog(void)
{
	bool want = data_path.attached && (state_prog.shutdowns || go_waiting_to_call_out());
	if (want == (state_prog.link != NULL))
		return 0;
	if (!want) {
		bpf_link__destroy(state_prog.link);
		state_prog.link = NULL;
		return 0;
	}
	state_prog.link = bpf_program__attach(state_prog.prog);
	if (!state_prog.link)
		return -errno;
	if (opt.verbose)
		fprintf(stderr, "seqtrace-loader: a Go process waits to call out: sock_state attached\n");
	return 0;
}

static bool any_traced(void)
{
	const __u64 traced_bits = 0x1111111111111111ULL; /* ST_PID_TRACED of each pid's four bits */
	for (__u32 i = 0; i < traced_nwords; i++)
		if (__atomic_load_n(&traced_words[i], __ATOMIC_RELAXED) & traced_bits)
			return true;
	return false;
}

/* ------------------------------------------------------------ stdin commands */

/* go_procs changed: the programs' per-CPU copies of its entries (go_cache) are stale. */
static void go_changed(struct seqtrace_bpf *skel)
{
	__atomic_fetch_add(&skel->bss->go_gen, 1, __ATOMIC_SEQ_CST);
}

/* User space decided about a process the kernel traces provisionally since its exec (the
 * `provisional` map): `add` keeps it and the children it forked meanwhile (their entries go,
 * their bits stay); `del` ends them all. The map is walked only for a root that has children
 * (most processes decided against fork none before the decision): one lookup otherwise. */
static void settle_provisional(struct seqtrace_bpf *skel, __u32 pid, bool keep)
{
	int fd = bpf_map__fd(skel->maps.provisional);
	static __u32 keys[ST_PROVISIONAL_MAX];
	size_t n = 0;
	__u32 key, next;
	struct st_provisional e;
	if (bpf_map_lookup_elem(fd, &pid, &e))
		return; /* not (or no longer) provisional */
	keys[n++] = pid;
	bool first = true;
	while (e.children && n < sizeof(keys) / sizeof(keys[0]) && !bpf_map_get_next_key(fd, first ? NULL : &key, &next)) {
		first = false;
		key = next;
		struct st_provisional c;
		if (key != pid && !bpf_map_lookup_elem(fd, &key, &c) && c.root == pid)
			keys[n++] = key;
	}
	for (size_t i = 0; i < n; i++) {
		if (!keep && keys[i] != pid) {
			set_pid_bits(keys[i], ST_PID_ALL, false);
			forget_threads(keys[i]);
		}
		bpf_map_delete_elem(fd, &keys[i]);
	}
}

static void command(struct seqtrace_bpf *skel, struct ring_buffer *rb, char *line)
{
	char verb[16];
	long pid = 0;
	struct st_ack_event ack = { .kind = ST_EV_ACK };
	int n = sscanf(line, "%15s %ld", verb, &pid);
	if (n >= 1 && !strcmp(verb, "go")) {
		ack.ok = go_process_command(line, &ack.pid) && set_pid_bits(ack.pid, ST_PID_GO, true);
		go_changed(skel);
		int err = ack.ok ? update_state_prog() : 0; /* before the ACK: its first connection counts */
		if (err) {
			fprintf(stderr, "seqtrace-loader: go %u: attaching sock_state failed: %s\n", ack.pid, strerror(-err));
			ack.ok = 0;
		}
	} else if (n >= 1 && !strcmp(verb, "shutdowns")) {
		state_prog.shutdowns = true;
		int err = update_state_prog();
		if (err)
			fprintf(stderr, "seqtrace-loader: shutdowns: attaching sock_state failed: %s\n", strerror(-err));
		ack.ok = !err;
	} else if (n >= 1 && !strcmp(verb, "mute")) {
		/* sockets.bpf.h, `muted`: socket mode looks a socket up there when it enters a CPU's
		 * cache of recent sockets, so every cache is emptied (as after a lost tuple); syscall
		 * mode when the socket's `seen` entry looked before the latest mute */
		unsigned long long id = 0;
		__u8 one = 1;
		ack.ok = sscanf(line, "%*s %llu", &id) == 1 && id &&
			 !bpf_map_update_elem(bpf_map__fd(skel->maps.muted), &id, &one, BPF_ANY);
		if (ack.ok) {
			__atomic_fetch_add(&skel->bss->tuple_gen, 1, __ATOMIC_SEQ_CST);
			__atomic_fetch_add(&skel->bss->mute_gen, 1, __ATOMIC_SEQ_CST);
		}
	} else if (n >= 1 && !strcmp(verb, "uprobe")) {
		ack.ok = go_uprobe_command(line);
	} else if (n >= 1 && !strcmp(verb, "tls")) {
		/* the bit after the probes: the socket hooks of its threads then look for a call */
		ack.ok = tls_process_command(line, &ack.pid) && set_pid_bits(ack.pid, ST_PID_TLS, true);
	} else if (n >= 1 && !strcmp(verb, "stats")) {
		drain(rb, false, true); /* the counters then cover what was written before them */
		send_stats(skel);
		ack.ok = 1;
	} else if (n == 2 && pid > 0 && pid <= INT_MAX && (!strcmp(verb, "add") || !strcmp(verb, "del"))) {
		__u32 key = (__u32)pid;
		settle_provisional(skel, key, verb[0] == 'a');
		if (verb[0] == 'a') {
			ack.ok = set_pid_bits(key, ST_PID_TRACED, true);
			int err = ack.ok ? attach_data_path() : 0;
			if (!err)
				err = update_state_prog();
			if (err) {
				fprintf(stderr, "seqtrace-loader: add %ld: attaching the data path failed: %s\n", pid,
					strerror(-err));
				ack.ok = 0;
			}
		} else {
			ack.ok = set_pid_bits(key, ST_PID_ALL, false);
			forget_threads(key);
			if (bpf_map_delete_elem(bpf_map__fd(skel->maps.go_procs), &key) == 0) /* Go offsets, if any */
				go_changed(skel);
		}
		if (!ack.ok)
			fprintf(stderr, "seqtrace-loader: %s %ld: past kernel.pid_max when the loader started (%u)\n",
				verb, pid, traced_nwords * ST_PIDS_PER_WORD);
		ack.pid = key;
	} else {
		fprintf(stderr, "seqtrace-loader: unknown command \"%s\" (accepted: add PID, del PID, stats, shutdowns, mute SOCK_ID, go ..., uprobe ..., tls PID PATH)\n", line);
	}
	frame(&ack, sizeof(ack));
}

/* Reads what stdin has; returns false at EOF. */
static bool read_commands(struct seqtrace_bpf *skel, struct ring_buffer *rb)
{
	static char buf[4096];
	static size_t used;
	ssize_t n = read(STDIN_FILENO, buf + used, sizeof(buf) - 1 - used);
	if (n < 0)
		return errno == EINTR || errno == EAGAIN;
	if (n == 0)
		return false;
	used += n;
	buf[used] = 0;
	char *start = buf, *nl;
	while ((nl = strchr(start, '\n'))) {
		*nl = 0;
		if (nl > start)
			command(skel, rb, start);
		start = nl + 1;
	}
	used -= start - buf;
	memmove(buf, start, used);
	if (used == sizeof(buf) - 1) /* a line longer than the buffer: drop it */
		used = 0;
	return true;
}

/* ------------------------------------------------------------ setup helpers */

static bool kernel_has(const char *type_name)
{
	struct btf *btf = btf__load_vmlinux_btf();
	if (!btf)
		return false;
	bool has = btf__find_by_name_kind(btf, type_name, BTF_KIND_TYPEDEF) > 0;
	btf__free(btf);
	return has;
}

/* Syscall tracepoints are found through tracefs; mount it when nobody did. */
static int ensure_tracefs(void)
{
	struct stat st;
	if (!stat("/sys/kernel/tracing/events", &st) || !stat("/sys/kernel/debug/tracing/events", &st))
		return 0;
	if (mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, NULL))
		return -errno;
	return 0;
}

static void choose_programs(struct seqtrace_bpf *skel, int mode)
{
	struct bpf_program *p;
	bpf_object__for_each_program(p, skel->obj)
	{
		const char *sec = bpf_program__section_name(p);
		bool syscall_prog = !strncmp(sec, "tracepoint/syscalls/", 20);
		bool socket_prog = !strncmp(sec, "tp_btf/sock_", 12);
		if ((mode == ST_MODE_SOCKET && syscall_prog) || (mode == ST_MODE_SYSCALL && socket_prog)) {
			bpf_program__set_autoload(p, false);
			continue;
		}
		/* flush_cpu is run by the loader, never attached; Go uprobes by the uprobe command,
		 * OpenSSL's by the tls command */
		if (!strcmp(sec, "raw_tp") || !strcmp(sec, "uprobe") || !strcmp(sec, "uretprobe"))
			bpf_program__set_autoattach(p, false);
		/* attached while a Go process waits to call out (see state_prog) */
		if (!strcmp(sec, "tp_btf/inet_sock_set_state")) {
			bpf_program__set_autoattach(p, false);
			state_prog.prog = p;
		}
		/* the data path: attached while something is traced (see data_path) */
		if ((syscall_prog || socket_prog || !strcmp(sec, "tp_btf/tcp_destroy_sock")) &&
		    data_path.n < MAX_DATA_PROGS) {
			bpf_program__set_autoattach(p, false);
			data_path.progs[data_path.n++] = p;
		}
	}
}

#define FIELD(t, f) printf("%s\"%s\":%zu", first ? "" : ",", #f, offsetof(struct t, f)), first = false
#define STRUCT(name, t, body)                                                          \
	do {                                                                               \
		bool first = true;                                                         \
		printf("%s\"%s\":{", sfirst ? "" : ",", name);                             \
		sfirst = false;                                                            \
		body;                                                                      \
		printf(",\"size\":%zu}", sizeof(struct t));                                \
	} while (0)

static void print_layout(void)
{
	bool sfirst = true;
	printf("{");
	STRUCT("data", st_data_event,
	       (FIELD(st_data_event, kind), FIELD(st_data_event, dir), FIELD(st_data_event, family),
		FIELD(st_data_event, flags), FIELD(st_data_event, pid), FIELD(st_data_event, tid),
		FIELD(st_data_event, seq), FIELD(st_data_event, ts_ns), FIELD(st_data_event, sock_id),
		FIELD(st_data_event, goid), FIELD(st_data_event, len), FIELD(st_data_event, head_len),
		FIELD(st_data_event, tail_len), FIELD(st_data_event, src_port), FIELD(st_data_event, dst_port),
		FIELD(st_data_event, path_len),
		FIELD(st_data_event, src_addr), FIELD(st_data_event, dst_addr), FIELD(st_data_event, tail),
		FIELD(st_data_event, head)));
	STRUCT("close", st_close_event,
	       (FIELD(st_close_event, kind), FIELD(st_close_event, pid), FIELD(st_close_event, ts_ns),
		FIELD(st_close_event, sock_id)));
	STRUCT("proc", st_proc_event,
	       (FIELD(st_proc_event, kind), FIELD(st_proc_event, flags), FIELD(st_proc_event, pid), FIELD(st_proc_event, ppid),
		FIELD(st_proc_event, ts_ns), FIELD(st_proc_event, comm)));
	STRUCT("thread", st_thread_event,
	       (FIELD(st_thread_event, kind), FIELD(st_thread_event, pid), FIELD(st_thread_event, tid),
		FIELD(st_thread_event, ptid), FIELD(st_thread_event, ts_ns)));
	STRUCT("goroutine", st_goroutine_event,
	       (FIELD(st_goroutine_event, kind), FIELD(st_goroutine_event, pid), FIELD(st_goroutine_event, tid),
		FIELD(st_goroutine_event, goid), FIELD(st_goroutine_event, pgoid), FIELD(st_goroutine_event, ts_ns)));
	STRUCT("stats", st_stats_event,
	       (FIELD(st_stats_event, kind), FIELD(st_stats_event, events), FIELD(st_stats_event, drops),
		FIELD(st_stats_event, truncated), FIELD(st_stats_event, loader_cpu_ns),
		FIELD(st_stats_event, late)));
	STRUCT("ready", st_ready_event,
	       (FIELD(st_ready_event, kind), FIELD(st_ready_event, mode), FIELD(st_ready_event, capture_bytes),
		FIELD(st_ready_event, ringbuf_bytes)));
	STRUCT("ack", st_ack_event, (FIELD(st_ack_event, kind), FIELD(st_ack_event, ok), FIELD(st_ack_event, pid)));
	printf(",\"kinds\":{\"data\":%d,\"close\":%d,\"exec\":%d,\"exit\":%d,\"stats\":%d,\"ready\":%d,\"ack\":%d,\"thread\":%d,\"goroutine\":%d,\"thread_exit\":%d,\"shutdown\":%d}",
	       ST_EV_DATA, ST_EV_CLOSE, ST_EV_EXEC, ST_EV_EXIT, ST_EV_STATS, ST_EV_READY, ST_EV_ACK, ST_EV_THREAD,
	       ST_EV_GOROUTINE, ST_EV_THREAD_EXIT, ST_EV_SHUTDOWN);
	printf(",\"tailBytes\":%d,\"captureMax\":%d}\n", ST_TAIL_BYTES, ST_CAPTURE_MAX);
}

static unsigned parse_num(const char *flag, const char *v, unsigned min, unsigned max)
{
	char *end;
	unsigned long n = v ? strtoul(v, &end, 10) : 0;
	if (!v || *end || n < min || n > max) {
		fprintf(stderr, "seqtrace-loader: %s must be a number from %u to %u, got \"%s\"\n", flag, min, max,
			v ? v : "");
		exit(EXIT_USAGE);
	}
	return (unsigned)n;
}

/* The index of v among a flag's n choices; exits naming them when it is none of them. */
static int parse_choice(const char *flag, const char *v, const char *const *names, int n)
{
	for (int k = 0; v && k < n; k++)
		if (!strcmp(v, names[k]))
			return k;
	fprintf(stderr, "seqtrace-loader: %s must be ", flag);
	for (int k = 0; k < n; k++)
		fprintf(stderr, "%s%s", names[k], k + 2 < n ? ", " : k + 1 < n ? " or " : "");
	fprintf(stderr, ", got \"%s\"\n", v ? v : "");
	exit(EXIT_USAGE);
}

static void parse_args(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--print-layout")) {
			print_layout();
			exit(0);
		} else if (!strcmp(a, "--verbose")) {
			opt.verbose = true;
		} else if (!strcmp(a, "--provisional-exec")) {
			opt.provisional = true;
		} else if (!strcmp(a, "--uprobes")) {
			static const char *const names[] = { "auto", "perf", "tracefs", "perf-or-tracefs" };
			static const enum uprobe_way ways[] = { UPROBE_AUTO, UPROBE_PERF, UPROBE_TRACEFS, UPROBE_PERF_OR_TRACEFS };
			i++;
			opt.uprobes = ways[parse_choice(a, v, names, 4)];
		} else if (!strcmp(a, "--mode")) {
			static const char *const names[] = { "socket", "syscall", "auto" };
			static const int modes[] = { ST_MODE_SOCKET, ST_MODE_SYSCALL, 0 };
			i++;
			opt.mode = modes[parse_choice(a, v, names, 3)];
		} else if (!strcmp(a, "--capture-bytes")) {
			i++;
			opt.capture_bytes = parse_num(a, v, 0, ST_CAPTURE_MAX);
		} else if (!strcmp(a, "--ringbuf-bytes")) {
			i++;
			opt.ringbuf_bytes = parse_num(a, v, 4096, 1U << 30);
			if (opt.ringbuf_bytes & (opt.ringbuf_bytes - 1)) {
				fprintf(stderr, "seqtrace-loader: --ringbuf-bytes must be a power of two, got %u\n",
					opt.ringbuf_bytes);
				exit(EXIT_USAGE);
			}
		} else if (!strcmp(a, "--batch-bytes")) {
			i++;
			opt.batch_bytes = (int)parse_num(a, v, 0, ST_BATCH_MAX);
		} else if (!strcmp(a, "--exec-env")) {
			i++;
			if (!v || !*v || strlen(v) >= EXEC_ENV_NAME_MAX || strchr(v, '=') || n_exec_env >= EXEC_ENV_NAMES) {
				fprintf(stderr, "seqtrace-loader: --exec-env takes a variable name (no '=', under %d bytes), at most %d times; got \"%s\"\n",
					EXEC_ENV_NAME_MAX, EXEC_ENV_NAMES, v ? v : "");
				exit(EXIT_USAGE);
			}
			exec_env_len[n_exec_env] = strlen(v);
			exec_env[n_exec_env++] = v;
		} else if (!strcmp(a, "--pid")) {
			i++;
			unsigned pid = parse_num(a, v, 1, INT_MAX);
			if (opt.npids < (int)(sizeof(opt.pids) / sizeof(opt.pids[0])))
				opt.pids[opt.npids++] = (int)pid;
		} else {
			fprintf(stderr,
				"seqtrace-loader: unknown argument \"%s\" (accepted: --mode socket|syscall|auto, "
				"--capture-bytes N, --ringbuf-bytes N, --batch-bytes N, --pid PID, --provisional-exec, --exec-env NAME, --verbose, "
				"--print-layout)\n",
				a);
			exit(EXIT_USAGE);
		}
	}
}

/* ------------------------------------------------------------ main */

int main(int argc, char **argv)
{
	struct seqtrace_bpf *skel = NULL;
	struct ring_buffer *rb = NULL;
	int epfd = -1, sigfd = -1, status = 0, err;

	parse_args(argc, argv);
	libbpf_set_print(libbpf_print);
	static char outbuf[1 << 20];
	setvbuf(stdout, outbuf, _IOFBF, sizeof(outbuf));

	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	sigprocmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (access("/sys/kernel/btf/vmlinux", R_OK)) {
		fprintf(stderr, "seqtrace-loader: the kernel has no BTF (/sys/kernel/btf/vmlinux): "
				"needs a kernel built with CONFIG_DEBUG_INFO_BTF=y (5.8+)\n");
		return EXIT_UNAVAILABLE;
	}
	int mode = opt.mode;
	if (!mode)
		mode = kernel_has("btf_trace_sock_send_length") ? ST_MODE_SOCKET : ST_MODE_SYSCALL;
	if (mode == ST_MODE_SOCKET && !kernel_has("btf_trace_sock_send_length")) {
		fprintf(stderr, "seqtrace-loader: --mode socket needs the sock_send_length tracepoint (kernel 6.3+); "
				"use --mode syscall or auto\n");
		return EXIT_UNAVAILABLE;
	}
	if (mode == ST_MODE_SYSCALL && (err = ensure_tracefs())) {
		fprintf(stderr, "seqtrace-loader: syscall mode needs tracefs at /sys/kernel/tracing and mounting it "
				"failed: %s\n", strerror(-err));
		return EXIT_UNAVAILABLE;
	}

	skel = seqtrace_bpf__open();
	if (!skel) {
		status = failed("open", -errno);
		goto cleanup;
	}
	skel->rodata->capture_bytes = opt.capture_bytes;
	skel->rodata->wakeup_bytes = opt.ringbuf_bytes / 4;
	skel->rodata->syscall_mode = mode == ST_MODE_SYSCALL;
	skel->rodata->provisional_exec = opt.provisional;
	/* A batch must hold the largest data event and stay small against the ring buffer (a full
	 * ring loses a whole batch); too small a ring buffer means no batching. */
	unsigned batch = opt.batch_bytes >= 0 ? (unsigned)opt.batch_bytes
					      : (opt.ringbuf_bytes / 8 < ST_BATCH_MAX ? opt.ringbuf_bytes / 8 : ST_BATCH_MAX);
	unsigned rec_max = ST_DATA_REC_MAX(opt.capture_bytes);
	if (batch < rec_max || batch > opt.ringbuf_bytes / 2)
		batch = 0;
	skel->rodata->batch_bytes = batch;
	bpf_map__set_max_entries(skel->maps.rb, opt.ringbuf_bytes);
	traced_nwords = (pid_max() + ST_PIDS_PER_WORD - 1) / ST_PIDS_PER_WORD;
	bpf_map__set_max_entries(skel->maps.traced, traced_nwords);
	choose_programs(skel, mode);
	enum uprobe_way uway = uprobes_prepare(skel->obj, opt.uprobes);
	static const char *const uway_said[] = {
		[UPROBE_MULTI] = "as uprobe_multi links",
		[UPROBE_PERF_OR_TRACEFS] = "as perf events, tracefs events where refused",
		[UPROBE_PERF] = "as perf events",
		[UPROBE_TRACEFS] = "as tracefs events",
	};
	if (opt.verbose)
		fprintf(stderr, "seqtrace-loader: uprobes %s\n", uway_said[uway]);

	err = seqtrace_bpf__load(skel);
	if (err) {
		status = failed("load", err);
		goto cleanup;
	}
	data_path.per_call_fds[0] = bpf_map__fd(skel->maps.calls);
	data_path.per_call_fds[1] = bpf_map__fd(skel->maps.mmsg_at);
	data_path.by_sock_fds[0] = bpf_map__fd(skel->maps.seen);
	data_path.by_sock_fds[1] = bpf_map__fd(skel->maps.go_rt);
	err = map_traced(skel);
	if (err) {
		status = failed("mmap of the traced map", err);
		goto cleanup;
	}
	for (int i = 0; i < opt.npids; i++)
		set_pid_bits(opt.pids[i], ST_PID_TRACED, true);
	err = seqtrace_bpf__attach(skel);
	if (!err)
		err = attach_data_path();
	if (!err && !(state_prog.link = bpf_program__attach(state_prog.prog)))
		err = -errno;
	if (err) {
		status = failed("attach", err);
		goto cleanup;
	}
	if (!opt.npids)
		detach_data_path(); /* nothing traced yet: see data_path */
	update_state_prog(); /* no Go process, no shutdowns asked for yet: detached */
	struct go_programs gp = { .newproc1_ret = skel->progs.go_newproc1_ret, .newproc_nop5 = skel->progs.go_newproc_nop5,
				  .roundtrip = skel->progs.go_round_trip, .execute = skel->progs.go_execute,
				  .procs_fd = bpf_map__fd(skel->maps.go_procs) };
	go_probes_init(&gp);
	struct tls_programs tp = { .write = skel->progs.ssl_write, .write_ex = skel->progs.ssl_write_ex,
				   .read = skel->progs.ssl_read, .read_ex = skel->progs.ssl_read_ex,
				   .handshake = skel->progs.ssl_handshake, .ret = skel->progs.ssl_return,
				   .traced = pid_traced };
	tls_probes_init(&tp);
	if (!output_init(libbpf_num_possible_cpus(), batch ? bpf_program__fd(skel->progs.flush_cpu) : -1,
			 &skel->bss->tuple_gen)) {
		status = failed("allocation", -ENOMEM);
		goto cleanup;
	}
	rb = ring_buffer__new(bpf_map__fd(skel->maps.rb), on_event, NULL, NULL);
	if (!rb) {
		status = failed("ring buffer", -errno);
		goto cleanup;
	}

	/* Loading parsed the kernel's BTF (~15 MiB of heap, freed now): give it back. From here the
	 * pending buffers grow to the largest write-out and are reused: keep them (and any large
	 * block) in the heap instead of fresh mmaps that fault their pages in every time. */
	malloc_trim(0);
	mallopt(M_MMAP_THRESHOLD, 256 << 20);
	mallopt(M_TRIM_THRESHOLD, 512 << 20);

	epfd = epoll_create1(EPOLL_CLOEXEC);
	sigfd = signalfd(-1, &sigs, SFD_CLOEXEC);
	struct epoll_event ev = { .events = EPOLLIN };
	ev.data.fd = ring_buffer__epoll_fd(rb);
	epoll_ctl(epfd, EPOLL_CTL_ADD, ev.data.fd, &ev);
	ev.data.fd = STDIN_FILENO;
	epoll_ctl(epfd, EPOLL_CTL_ADD, STDIN_FILENO, &ev);
	ev.data.fd = sigfd;
	epoll_ctl(epfd, EPOLL_CTL_ADD, sigfd, &ev);

	struct st_ready_event ready = { .kind = ST_EV_READY, .mode = mode, .capture_bytes = opt.capture_bytes,
					 .ringbuf_bytes = opt.ringbuf_bytes };
	frame(&ready, sizeof(ready));
	fflush(stdout);

	/* Drain: the kernel submits without wakeups, so read on a short timer; a forced
	 * wakeup (buffer filling up) or a command ends the wait early. */
	__u64 next_stats = now_ns(CLOCK_MONOTONIC) + STATS_EVERY_NS, next_go_poll = 0;
	bool running = true;
	while (running && !out_broken) {
		struct epoll_event evs[4];
		int n = epoll_wait(epfd, evs, 4, DRAIN_MS);
		if (n < 0 && errno != EINTR) {
			status = failed("epoll_wait", -errno);
			break;
		}
		drain(rb, false, false);
		for (int i = 0; i < n; i++) {
			if (evs[i].data.fd == sigfd) {
				running = false;
			} else if (evs[i].data.fd == STDIN_FILENO) {
				if (!read_commands(skel, rb))
					running = false;
			}
		}
		__u64 now = now_ns(CLOCK_MONOTONIC);
		if (now >= next_go_poll) {
			go_poll();
			tls_poll();
			next_go_poll = now + GO_POLL_NS;
			int err = update_state_prog();
			if (err)
				fprintf(stderr, "seqtrace-loader: attaching sock_state failed: %s\n", strerror(-err));
		}
		if (now >= next_stats) {
			send_stats(skel);
			output_trim();
			next_stats += STATS_EVERY_NS;
			if (data_path.attached && !any_traced()) {
				detach_data_path();
				update_state_prog();
				forget_sockets();
			}
		}
		if (fflush(stdout))
			out_broken = true;
	}
	/* what the kernel wrote before we stopped still goes out */
	if (!out_broken) {
		drain(rb, true, true);
		send_stats(skel);
		fflush(stdout);
	}
	if (opt.verbose || late_events)
		fprintf(stderr, "seqtrace-loader: %llu events arrived after their time was written\n",
			(unsigned long long)late_events);
	if (opt.verbose || tuple_drops)
		fprintf(stderr, "seqtrace-loader: %llu data events dropped without their 4-tuple (counted as drops)\n",
			(unsigned long long)tuple_drops);

cleanup:
	if (sigfd >= 0)
		close(sigfd);
	if (epfd >= 0)
		close(epfd);
	ring_buffer__free(rb);
	output_free();
	go_probes_free();
	tls_probes_free();
	uprobes_free();
	detach_data_path();
	bpf_link__destroy(state_prog.link);
	if (traced_words)
		munmap(traced_words, ((size_t)traced_nwords * sizeof(__u64) + sysconf(_SC_PAGESIZE) - 1) /
					     sysconf(_SC_PAGESIZE) * sysconf(_SC_PAGESIZE));
	seqtrace_bpf__destroy(skel);
	return status;
}
