// SPDX-License-Identifier: Apache-2.0
/*
 * The loader's `tls PID PATH` command (tls.bpf.h, docs/kernel.md "TLS"): OpenSSL's SSL_read,
 * SSL_read_ex, SSL_write, SSL_write_ex and SSL_do_handshake, each with an entry and a return
 * probe, attached to one process on the libssl it maps at PATH (the agent gives
 * /proc/PID/root/..., so a process in another mount namespace has its own library). Found by
 * name in the library's symbols (elf_func_offsets). A uprobe with a pid (uprobes.h) installs its
 * breakpoints in that process's memory only: an untraced process using the same library pays
 * nothing. A process no longer traced (gone, or `del`) loses its probes at the next poll.
 *
 * Removing a uprobe waits for RCU grace periods in the kernel (≈ 80 ms a probe here: a
 * process's ten took 0.8 s, and six curls exiting stopped the drain for 5 s, their last
 * events with it). So links are destroyed by a thread of their own (`detacher`), each batch
 * with a thread per link: their grace periods overlap, a batch costs about one.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/libbpf.h>
#include "tls_probes.h"
#include "loader.h"
#include "uprobes.h"

#define TLS_FUNCS 5

/* A process and the probes attached to it (an entry and a return probe per function). */
struct tls_process {
	__u32 pid;
	int nlinks;
	struct uprobe_link links[2 * TLS_FUNCS];
};

static struct tls_programs progs;
static struct tls_process *procs;
static int nprocs, cap_procs;

/* Links waiting for the detacher, under `lock`. */
#define DETACH_BATCH 64
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t more = PTHREAD_COND_INITIALIZER;
static struct uprobe_link *doomed;
static int ndoomed, cap_doomed;
static bool stopping, detacher_running;
static pthread_t detacher;

static void *destroy_one(void *link)
{
	uprobe_detach(link);
	return NULL;
}

/* n <= DETACH_BATCH links at once: a thread each (one that cannot start: here). */
static void destroy_batch(struct uprobe_link *links, int n)
{
	pthread_t t[DETACH_BATCH];
	bool started[DETACH_BATCH];
	for (int i = 0; i < n; i++) {
		started[i] = !pthread_create(&t[i], NULL, destroy_one, &links[i]);
		if (!started[i])
			uprobe_detach(&links[i]);
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
		destroy_batch(batch, n);
		pthread_mutex_lock(&lock);
	}
	pthread_mutex_unlock(&lock);
	return NULL;
}

void tls_probes_init(const struct tls_programs *p)
{
	progs = *p;
	detacher_running = !pthread_create(&detacher, NULL, detach_loop, NULL);
}

/* p's links go to the detacher (destroyed here when it is not running or memory is short). */
static void detach(struct tls_process *p)
{
	pthread_mutex_lock(&lock);
	bool queued = detacher_running && grow_array((void **)&doomed, &cap_doomed, ndoomed + p->nlinks, sizeof(*doomed));
	if (queued) {
		memcpy(doomed + ndoomed, p->links, p->nlinks * sizeof(*p->links));
		ndoomed += p->nlinks;
		pthread_cond_signal(&more);
	}
	pthread_mutex_unlock(&lock);
	if (!queued)
		destroy_batch(p->links, p->nlinks);
	p->nlinks = 0;
}

static bool attach(struct tls_process *p, const char *path)
{
	const struct {
		const char *name;
		struct bpf_program *prog;
		bool required; /* the _ex calls came with OpenSSL 1.1.1 */
	} fns[TLS_FUNCS] = {
		{ "SSL_write", progs.write, true },	     { "SSL_write_ex", progs.write_ex, false },
		{ "SSL_read", progs.read, true },	     { "SSL_read_ex", progs.read_ex, false },
		{ "SSL_do_handshake", progs.handshake, true },
	};
	const char *names[TLS_FUNCS];
	long offs[TLS_FUNCS];
	for (int i = 0; i < TLS_FUNCS; i++)
		names[i] = fns[i].name;
	int err = elf_func_offsets(path, names, TLS_FUNCS, offs);
	if (err) {
		fprintf(stderr, "seqtrace-loader: tls %u: %s: %s\n", p->pid, path, strerror(-err));
		return false;
	}
	for (int i = 0; i < TLS_FUNCS; i++) {
		if (!offs[i]) {
			if (!fns[i].required)
				continue;
			fprintf(stderr, "seqtrace-loader: tls %u: %s in %s: no such function\n", p->pid, fns[i].name, path);
			return false;
		}
		for (int ret = 0; ret <= 1; ret++) {
			if (!uprobe_attach(ret ? progs.ret : fns[i].prog, (pid_t)p->pid, path, (unsigned long)offs[i], ret,
					   &p->links[p->nlinks])) {
				err = errno;
				fprintf(stderr, "seqtrace-loader: tls %u: %s%s of %s: %s%s\n", p->pid, fns[i].name, ret ? " (return)" : "",
					path, strerror(err), err == EACCES ? UPROBE_EACCES_HINT : "");
				return false;
			}
			p->nlinks++;
		}
	}
	return true;
}

bool tls_process_command(const char *line, __u32 *pid_out)
{
	long pid;
	int at = 0;
	if (sscanf(line, "tls %ld %n", &pid, &at) != 1 || !at || !line[at] || pid <= 0 || pid > INT_MAX) {
		fprintf(stderr, "seqtrace-loader: bad tls command \"%s\" (accepted: tls PID PATH)\n", line);
		return false;
	}
	*pid_out = (__u32)pid;
	struct tls_process *p = NULL;
	for (int i = 0; i < nprocs; i++)
		if (procs[i].pid == (__u32)pid)
			p = &procs[i];
	if (p) {
		detach(p); /* the same pid again (a re-exec): its library now */
	} else {
		if (!grow_array((void **)&procs, &cap_procs, nprocs + 1, sizeof(*procs))) {
			fprintf(stderr, "seqtrace-loader: tls %ld: out of memory\n", pid);
			return false;
		}
		p = &procs[nprocs++];
		*p = (struct tls_process){ .pid = (__u32)pid };
	}
	if (!attach(p, line + at)) {
		detach(p);
		*p = procs[--nprocs];
		return false;
	}
	return true;
}

void tls_poll(void)
{
	for (int i = 0; i < nprocs;) {
		if (!progs.traced(procs[i].pid)) {
			detach(&procs[i]);
			procs[i] = procs[--nprocs];
			continue;
		}
		i++;
	}
}

void tls_probes_free(void)
{
	for (int i = 0; i < nprocs; i++)
		detach(&procs[i]);
	if (detacher_running) {
		pthread_mutex_lock(&lock);
		stopping = true;
		pthread_cond_signal(&more);
		pthread_mutex_unlock(&lock);
		pthread_join(detacher, NULL); /* it destroys what is queued first */
		detacher_running = false;
	}
	free(procs);
	free(doomed);
	procs = NULL;
	doomed = NULL;
	nprocs = cap_procs = ndoomed = cap_doomed = 0;
}
