// SPDX-License-Identifier: Apache-2.0
/*
 * Uprobes for the go and tls commands (uprobes.h): uprobe_multi links where the kernel has
 * them, else perf-event uprobes, else (refused) uprobe events in tracefs; and their removal.
 * Debian's libbpf (1.1) predates uprobe_multi (1.3), so the link is made with the bpf syscall
 * itself: the attribute's layout is the kernel's UAPI (union bpf_attr,
 * link_create.uprobe_multi), its constants the UAPI's (as this kernel's BTF has them).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <gelf.h>
#include <libelf.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/perf_event.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "loader.h"
#include "uprobes.h"

#define BPF_TRACE_UPROBE_MULTI_ 48    /* enum bpf_attach_type, kernel 6.6+ */
#define BPF_F_UPROBE_MULTI_RETURN_ 1U /* link_create.uprobe_multi.flags */

/* union bpf_attr as BPF_LINK_CREATE reads it for a uprobe_multi link */
struct link_create_uprobe_multi {
	__u32 prog_fd;
	__u32 target_fd;
	__u32 attach_type;
	__u32 flags;
	__u64 path; /* from here: link_create.uprobe_multi */
	__u64 offsets;
	__u64 ref_ctr_offsets;
	__u64 cookies;
	__u32 cnt;
	__u32 multi_flags;
	__u32 pid;
	__u32 _pad;
};

static enum uprobe_way way; /* uprobes_prepare's choice */

static int link_create_uprobe_multi(int prog_fd, const char *path, const unsigned long *off, __u32 cnt, pid_t pid,
				    bool ret)
{
	struct link_create_uprobe_multi a;
	memset(&a, 0, sizeof(a));
	a.prog_fd = (__u32)prog_fd;
	a.attach_type = BPF_TRACE_UPROBE_MULTI_;
	a.path = (__u64)(unsigned long)path;
	a.offsets = (__u64)(unsigned long)off;
	a.cnt = cnt;
	a.multi_flags = ret ? BPF_F_UPROBE_MULTI_RETURN_ : 0;
	a.pid = (__u32)pid;
	return (int)syscall(__NR_bpf, BPF_LINK_CREATE, &a, sizeof(a));
}

/* As libbpf 1.3's probe: a link on "/" (a directory) fails with EBADF only where the kernel
 * knows uprobe_multi; elsewhere the attach type itself is refused. */
static bool kernel_has_uprobe_multi(void)
{
	const struct bpf_insn insns[] = {
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 0 },
		{ .code = BPF_JMP | BPF_EXIT },
	};
	LIBBPF_OPTS(bpf_prog_load_opts, o, .expected_attach_type = BPF_TRACE_UPROBE_MULTI_);
	int prog = bpf_prog_load(BPF_PROG_TYPE_KPROBE, NULL, "GPL", insns, 2, &o);
	if (prog < 0)
		return false;
	unsigned long off = 0;
	int link = link_create_uprobe_multi(prog, "/", &off, 1, 0, false);
	int err = errno;
	if (link >= 0)
		close(link);
	close(prog);
	return link < 0 && err == EBADF;
}

/* ---- uprobe events in tracefs (the kernel's older interface; no capability is checked, the
 * file's mode is: root may write it). The event is named after the loader and a counter, so
 * that a loader that died leaves events a later one can tell (tracefs_sweep). */

/* Where tracefs is, looked up once. (Only a missing file sends it to debugfs: a user who may
 * not look gets EACCES where it is.) */
static const char *tracefs_dir(void)
{
	static const char *dir;
	if (!dir)
		dir = access("/sys/kernel/tracing/uprobe_events", F_OK) && errno == ENOENT ? "/sys/kernel/debug/tracing"
											   : "/sys/kernel/tracing";
	return dir;
}

/* tracefs's uprobe_events file (first asked for by the main thread, before any event exists
 * for the detacher's threads to remove) */
static const char *uprobe_events_file(void)
{
	static char file[64];
	if (!file[0])
		snprintf(file, sizeof(file), "%s/uprobe_events", tracefs_dir());
	return file;
}

/* Appends one line to uprobe_events; -errno */
static int uprobe_events_write(const char *line)
{
	int fd = open(uprobe_events_file(), O_WRONLY | O_APPEND | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = write(fd, line, strlen(line));
	int err = n < 0 ? -errno : 0;
	close(fd);
	return err;
}

/* Removes the event seqtrace/name (its perf event closed, or never opened) */
static void uprobe_event_remove(const char *name)
{
	char line[96];
	snprintf(line, sizeof(line), "-:seqtrace/%s\n", name);
	uprobe_events_write(line);
}

/* Removes the events of loaders that are gone (seqtrace_LPID_N with no process LPID). */
static void tracefs_sweep(void)
{
	char line[PATH_MAX + 128];
	FILE *f = fopen(uprobe_events_file(), "re");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		int lpid;
		char name[64];
		if (sscanf(line, "%*c:seqtrace/%63[^ ]", name) != 1 || sscanf(name, "seqtrace_%d_", &lpid) != 1)
			continue;
		if (lpid == getpid() || !kill(lpid, 0) || errno != ESRCH)
			continue;
		uprobe_event_remove(name);
	}
	fclose(f);
}

static bool tracefs_attach(struct bpf_program *prog, pid_t pid, const char *path, unsigned long off, bool ret,
			   struct uprobe_link *out)
{
	static unsigned long counter;
	if (strpbrk(path, " \t\n")) { /* the line's fields are split at spaces */
		errno = EINVAL;
		return false;
	}
	snprintf(out->event, sizeof(out->event), "seqtrace_%d_%lu", (int)getpid(), counter++);
	char line[PATH_MAX + 128];
	snprintf(line, sizeof(line), "%c:seqtrace/%s %s:0x%lx\n", ret ? 'r' : 'p', out->event, path, off);
	int err = uprobe_events_write(line);
	if (err) {
		out->event[0] = 0;
		errno = -err;
		return false;
	}
	char file[160];
	snprintf(file, sizeof(file), "%s/events/seqtrace/%s/id", tracefs_dir(), out->event);
	FILE *f = fopen(file, "re");
	int id = -1;
	if (!f || fscanf(f, "%d", &id) != 1)
		err = f ? -EINVAL : -errno;
	if (f)
		fclose(f);
	int pfd = -1;
	if (!err) {
		struct perf_event_attr a;
		memset(&a, 0, sizeof(a));
		a.size = sizeof(a);
		a.type = PERF_TYPE_TRACEPOINT;
		a.config = (__u64)id;
		a.sample_period = 1;
		a.wakeup_events = 1;
		pfd = (int)syscall(__NR_perf_event_open, &a, pid, -1, -1, PERF_FLAG_FD_CLOEXEC);
		if (pfd < 0)
			err = -errno;
	}
	if (!err && !(out->perf = bpf_program__attach_perf_event(prog, pfd))) /* the link owns pfd from here */
		err = -errno;
	if (err) {
		if (pfd >= 0 && !out->perf)
			close(pfd);
		uprobe_event_remove(out->event);
		out->event[0] = 0;
		errno = -err;
		return false;
	}
	return true;
}

enum uprobe_way uprobes_prepare(struct bpf_object *obj, enum uprobe_way want)
{
	way = want != UPROBE_AUTO ? want : kernel_has_uprobe_multi() ? UPROBE_MULTI : UPROBE_PERF_OR_TRACEFS;
	if (way == UPROBE_TRACEFS || way == UPROBE_PERF_OR_TRACEFS)
		tracefs_sweep();
	if (way != UPROBE_MULTI)
		return way;
	struct bpf_program *p;
	bpf_object__for_each_program(p, obj)
		if (bpf_program__type(p) == BPF_PROG_TYPE_KPROBE) /* SEC("uprobe"), SEC("uretprobe") */
			bpf_program__set_expected_attach_type(p, (enum bpf_attach_type)BPF_TRACE_UPROBE_MULTI_);
	return way;
}

bool uprobe_attach(struct bpf_program *prog, pid_t pid, const char *path, unsigned long off, bool ret,
		   struct uprobe_link *out)
{
	out->fd = -1;
	out->perf = NULL;
	out->event[0] = 0;
	if (way == UPROBE_MULTI) {
		out->fd = link_create_uprobe_multi(bpf_program__fd(prog), path, &off, 1, pid, ret);
		return out->fd >= 0;
	}
	if (way == UPROBE_PERF || way == UPROBE_PERF_OR_TRACEFS) {
		LIBBPF_OPTS(bpf_uprobe_opts, o, .retprobe = ret);
		if ((out->perf = bpf_program__attach_uprobe_opts(prog, pid, path, off, &o)))
			return true;
		/* refused (CAP_SYS_ADMIN, CVE-2025-38466): uprobe events in tracefs, where root may write */
		if (way == UPROBE_PERF || (errno != EACCES && errno != EPERM))
			return false;
		int perf_err = errno;
		if (tracefs_attach(prog, pid, path, off, ret, out))
			return true;
		errno = perf_err; /* the reason the usual way failed, with the hint */
		return false;
	}
	return tracefs_attach(prog, pid, path, off, ret, out);
}

static void detach_now(struct uprobe_link *l)
{
	if (l->fd >= 0)
		close(l->fd); /* the link's last reference: the kernel removes the probe now */
	else
		bpf_link__destroy(l->perf);
	if (l->event[0]) /* its perf event closed: the tracefs event can go */
		uprobe_event_remove(l->event);
	l->fd = -1;
	l->perf = NULL;
	l->event[0] = 0;
}

/*
 * Removing a uprobe waits for grace periods in the kernel (≈ 80 ms each here: a TLS process's
 * ten probes took 0.8 s, and six curls exiting held the loader's drain for 5 s, their last
 * events with it). So links are removed by a thread of their own (`detacher`, started at the
 * first), each batch with a thread per link: their grace periods overlap, a batch costs about
 * one. Links waiting for it are in `doomed`, under `lock`.
 */
#define DETACH_BATCH 64
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t more = PTHREAD_COND_INITIALIZER;
static struct uprobe_link *doomed;
static int ndoomed, cap_doomed;
static bool stopping, detacher_running;
static pthread_t detacher;

static void *detach_one(void *link)
{
	detach_now(link);
	return NULL;
}

/* n <= DETACH_BATCH links at once: a thread each (one that cannot start: here). */
static void detach_batch(struct uprobe_link *links, int n)
{
	pthread_t t[DETACH_BATCH];
	bool started[DETACH_BATCH];
	for (int i = 0; i < n; i++) {
		started[i] = !pthread_create(&t[i], NULL, detach_one, &links[i]);
		if (!started[i])
			detach_now(&links[i]);
	}
	for (int i = 0; i < n; i++)
		if (started[i])
			pthread_join(t[i], NULL);
}

static void *detach_loop(void *arg)
{
	struct uprobe_link batch[DETACH_BATCH];
	pthread_mutex_lock(&lock);
	for (;;) {
		while (!ndoomed && !stopping)
			pthread_cond_wait(&more, &lock);
		if (!ndoomed)
			break;
		int n = ndoomed < DETACH_BATCH ? ndoomed : DETACH_BATCH;
		ndoomed -= n;
		memcpy(batch, doomed + ndoomed, n * sizeof(*batch));
		pthread_mutex_unlock(&lock);
		detach_batch(batch, n);
		pthread_mutex_lock(&lock);
	}
	pthread_mutex_unlock(&lock);
	return NULL;
}

void uprobes_detach(const struct uprobe_link *links, int n)
{
	if (n <= 0)
		return;
	pthread_mutex_lock(&lock);
	if (!detacher_running && !stopping)
		detacher_running = !pthread_create(&detacher, NULL, detach_loop, NULL);
	bool queued = detacher_running && grow_array((void **)&doomed, &cap_doomed, ndoomed + n, sizeof(*doomed));
	if (queued) {
		memcpy(doomed + ndoomed, links, n * sizeof(*links));
		ndoomed += n;
		pthread_cond_signal(&more);
	}
	pthread_mutex_unlock(&lock);
	if (!queued) { /* no thread or no memory: here, one at a time */
		struct uprobe_link l;
		for (int i = 0; i < n; i++) {
			l = links[i];
			detach_now(&l);
		}
	}
}

void uprobes_free(void)
{
	pthread_mutex_lock(&lock);
	stopping = true;
	pthread_cond_signal(&more);
	bool running = detacher_running;
	pthread_mutex_unlock(&lock);
	if (running)
		pthread_join(detacher, NULL); /* it removes what is queued first */
	detacher_running = false;
	free(doomed);
	doomed = NULL;
	ndoomed = cap_doomed = 0;
}

int elf_func_offsets(const char *path, const char *const *names, int n, long *offs)
{
	for (int k = 0; k < n; k++)
		offs[k] = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	Elf *e = elf_version(EV_CURRENT) == EV_NONE ? NULL : elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (!e) {
		close(fd);
		return -ENOEXEC; /* not an ELF file */
	}
	int left = n;
	/* .symtab first (a library that has one lists its local functions too), then .dynsym */
	for (int pass = 0; left && pass < 2; pass++) {
		Elf_Scn *scn = NULL;
		while (left && (scn = elf_nextscn(e, scn))) {
			GElf_Shdr sh;
			if (!gelf_getshdr(scn, &sh) || sh.sh_type != (pass ? SHT_DYNSYM : SHT_SYMTAB) || !sh.sh_entsize)
				continue;
			Elf_Data *d = elf_getdata(scn, NULL);
			for (size_t i = 0; d && left && i < sh.sh_size / sh.sh_entsize; i++) {
				GElf_Sym s;
				if (!gelf_getsym(d, (int)i, &s) || GELF_ST_TYPE(s.st_info) != STT_FUNC || s.st_shndx == SHN_UNDEF ||
				    !s.st_value)
					continue;
				const char *name = elf_strptr(e, sh.sh_link, s.st_name);
				for (int k = 0; name && k < n; k++) {
					GElf_Shdr in;
					if (offs[k] || strcmp(name, names[k]) || !gelf_getshdr(elf_getscn(e, s.st_shndx), &in))
						continue;
					/* the address's place in the file, by the section that holds it */
					offs[k] = (long)(s.st_value - in.sh_addr + in.sh_offset);
					left--;
					break;
				}
			}
		}
	}
	elf_end(e);
	close(fd);
	return 0;
}
