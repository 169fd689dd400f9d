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
 * Their removal waits for grace periods: uprobes_detach does it off the main loop.
 */
#include <errno.h>
#include <limits.h>
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

void tls_probes_init(const struct tls_programs *p)
{
	progs = *p;
}

static void detach(struct tls_process *p)
{
	uprobes_detach(p->links, p->nlinks);
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
	free(procs);
	procs = NULL;
	nprocs = cap_procs = 0;
}
