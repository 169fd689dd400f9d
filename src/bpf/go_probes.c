// SPDX-License-Identifier: Apache-2.0
/*
 * The loader's Go commands (go.bpf.h, docs/go.md): a process's offsets into go_procs, and its
 * uprobes, attached to that process only.
 *
 * The agent names a binary's probes once (`uprobe WHICH OFFSET PATH`, kept here by the binary's
 * device and inode) and each Go process of it (`go PID ...`). Probes are attached per process
 * (a uprobe with a pid, uprobes.h, installs its breakpoint only in that process's memory): an
 * untraced process running the same binary pays nothing. The goroutine-start probe (newproc*),
 * one uprobe per `go` statement and so one per request of a net/http server, is attached only
 * to a process that can call out: at once when its binary links net/http's client (the agent
 * then gives PCONN_CONN), else when the kernel sets ST_GO_CALLS_OUT (the process opened a TCP
 * connection; go_poll() looks every 100 ms). A process gone from go_procs (exit: the kernel
 * removes it; `del`) loses its probes at the next poll.
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "seqtrace.h"
#include "go_probes.h"
#include "loader.h"
#include "uprobes.h"

/* One probe of a binary, as the agent named it. */
struct go_spec {
	dev_t dev;
	ino_t ino;
	int which; /* GO_PROBE_* */
	unsigned long long off;
};

/* A Go process and the probes attached to it. */
struct go_process {
	__u32 pid;
	bool parents; /* goroutine-start probe attached */
	int nlinks;
	struct uprobe_link links[ST_GO_MAX_PROBES];
};

static struct go_programs progs;
static struct go_spec *specs;
static int nspecs, cap_specs;
static struct go_process *procs;
static int nprocs, cap_procs;

static const char *const probe_names[] = { "newproc1_ret", "newproc_nop5", "roundtrip", "execute" };

void go_probes_init(const struct go_programs *p)
{
	progs = *p;
}

static bool is_parent_probe(int which)
{
	return which == GO_PROBE_NEWPROC1_RET || which == GO_PROBE_NEWPROC_NOP5;
}

/* uprobe newproc1_ret|newproc_nop5|roundtrip|execute FILE_OFFSET PATH */
bool go_uprobe_command(const char *line)
{
	char name[16];
	unsigned long long off;
	int at = 0, which = -1;
	struct stat st;
	if (sscanf(line, "uprobe %15s %llu %n", name, &off, &at) != 2 || !at || !line[at]) {
		fprintf(stderr, "seqtrace-loader: bad uprobe command \"%s\" (accepted: uprobe "
				"newproc1_ret|newproc_nop5|roundtrip|execute FILE_OFFSET PATH)\n", line);
		return false;
	}
	for (int i = 0; i < (int)(sizeof(probe_names) / sizeof(probe_names[0])); i++)
		if (!strcmp(name, probe_names[i]))
			which = i;
	if (which < 0) {
		fprintf(stderr, "seqtrace-loader: uprobe %s: unknown program\n", name);
		return false;
	}
	if (stat(line + at, &st)) {
		fprintf(stderr, "seqtrace-loader: uprobe %s: %s: %s\n", name, line + at, strerror(errno));
		return false;
	}
	for (int i = 0; i < nspecs; i++)
		if (specs[i].dev == st.st_dev && specs[i].ino == st.st_ino && specs[i].which == which && specs[i].off == off)
			return true;
	if (!grow_array((void **)&specs, &cap_specs, nspecs + 1, sizeof(*specs))) {
		fprintf(stderr, "seqtrace-loader: uprobe %s: out of memory\n", name);
		return false;
	}
	specs[nspecs++] = (struct go_spec){ .dev = st.st_dev, .ino = st.st_ino, .which = which, .off = off };
	return true;
}

static struct bpf_program *program(int which)
{
	switch (which) {
	case GO_PROBE_NEWPROC1_RET: return progs.newproc1_ret;
	case GO_PROBE_NEWPROC_NOP5: return progs.newproc_nop5;
	case GO_PROBE_ROUNDTRIP: return progs.roundtrip;
	default: return progs.execute;
	}
}

/* Attaches the probes of p's binary that are (parents) or are not (!parents) goroutine-start
 * probes. On failure the probes attached so far stay (detach removes them). */
static bool attach(struct go_process *p, bool parents)
{
	char exe[32];
	struct stat st;
	snprintf(exe, sizeof(exe), "/proc/%u/exe", p->pid);
	if (stat(exe, &st)) {
		fprintf(stderr, "seqtrace-loader: go %u: %s: %s\n", p->pid, exe, strerror(errno));
		return false;
	}
	for (int i = 0; i < nspecs; i++) {
		struct go_spec *s = &specs[i];
		if (s->dev != st.st_dev || s->ino != st.st_ino || is_parent_probe(s->which) != parents)
			continue;
		if (p->nlinks >= ST_GO_MAX_PROBES) {
			fprintf(stderr, "seqtrace-loader: go %u: more than %d uprobes\n", p->pid, ST_GO_MAX_PROBES);
			return false;
		}
		/* the magic link resolves to the binary's inode, in whatever mount namespace it lives */
		if (!uprobe_attach(program(s->which), (pid_t)p->pid, exe, (unsigned long)s->off, false, &p->links[p->nlinks])) {
			int err = errno;
			fprintf(stderr, "seqtrace-loader: uprobe %s at %llu of %s: %s%s\n", probe_names[s->which], s->off, exe,
				strerror(err), err == EACCES ? UPROBE_EACCES_HINT : "");
			return false;
		}
		p->nlinks++;
	}
	if (parents)
		p->parents = true;
	return true;
}

static void detach(struct go_process *p)
{
	uprobes_detach(p->links, p->nlinks);
	p->nlinks = 0;
	p->parents = false;
}

/* go PID TLS_OFF GOID_OFF PCONN_CONN TCPCONN_ITAB TCPCONN_FD NETFD_SYSFD G_M M_CURG */
bool go_process_command(const char *line, __u32 *pid_out)
{
	long pid;
	long long tls;
	unsigned long long goid, pconn, itab, tfd, sysfd, gm, mcurg;
	if (sscanf(line, "go %ld %lld %llu %llu %llu %llu %llu %llu %llu", &pid, &tls, &goid, &pconn, &itab, &tfd, &sysfd,
		   &gm, &mcurg) != 9 ||
	    pid <= 0 || pid > INT_MAX || goid > 65536) {
		fprintf(stderr, "seqtrace-loader: bad go command \"%s\" (accepted: go PID TLS_OFF GOID_OFF PCONN_CONN "
				"TCPCONN_ITAB TCPCONN_FD NETFD_SYSFD G_M M_CURG)\n", line);
		return false;
	}
	__u32 key = (__u32)pid;
	*pid_out = key;
	/* PCONN_CONN != 0: the binary links net/http's client, so it counts as calling out from the
	 * start (its data events carry goids, go.bpf.h go_goid) */
	struct st_go_proc v = { .tls_off = tls, .goid_off = goid, .pconn_conn = pconn, .tcpconn_itab = itab,
			     .tcpconn_fd = tfd, .netfd_sysfd = sysfd, .g_m = gm, .m_curg = mcurg,
			     .flags = pconn ? ST_GO_CALLS_OUT : 0 };
	if (bpf_map_update_elem(progs.procs_fd, &key, &v, BPF_ANY)) {
		fprintf(stderr, "seqtrace-loader: go %ld: %s\n", pid, strerror(errno));
		return false;
	}
	struct go_process *p = NULL;
	for (int i = 0; i < nprocs; i++)
		if (procs[i].pid == key)
			p = &procs[i];
	if (p) {
		detach(p); /* the same pid again (a re-exec): start over with its binary now */
	} else {
		if (!grow_array((void **)&procs, &cap_procs, nprocs + 1, sizeof(*procs))) {
			fprintf(stderr, "seqtrace-loader: go %ld: out of memory\n", pid);
			return false;
		}
		p = &procs[nprocs++];
		*p = (struct go_process){ .pid = key };
	}
	/* PCONN_CONN != 0: the binary links net/http's client, so a handler may fan calls out to
	 * goroutines from its very first request */
	if (!attach(p, false) || (pconn && !attach(p, true))) {
		detach(p);
		*p = procs[--nprocs];
		bpf_map_delete_elem(progs.procs_fd, &key);
		return false;
	}
	return true;
}

void go_poll(void)
{
	for (int i = 0; i < nprocs;) {
		struct go_process *p = &procs[i];
		struct st_go_proc v;
		if (bpf_map_lookup_elem(progs.procs_fd, &p->pid, &v)) { /* exited, or `del` */
			detach(p);
			*p = procs[--nprocs];
			continue;
		}
		if (!p->parents && (v.flags & ST_GO_CALLS_OUT) && !attach(p, true))
			p->parents = true; /* said once on stderr; the process stays traced without parents */
		i++;
	}
}

bool go_waiting_to_call_out(void)
{
	for (int i = 0; i < nprocs; i++)
		if (!procs[i].parents)
			return true;
	return false;
}

void go_probes_free(void)
{
	for (int i = 0; i < nprocs; i++)
		detach(&procs[i]);
	free(procs);
	free(specs);
	procs = NULL;
	specs = NULL;
	nprocs = nspecs = 0;
}
