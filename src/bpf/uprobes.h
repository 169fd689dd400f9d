/* SPDX-License-Identifier: Apache-2.0 */
/*
 * How the go and tls commands attach and remove their uprobes (uprobes.c): one function for the
 * three ways the kernel offers (enum uprobe_way), one thread that removes them. A uprobe_multi
 * link (BPF_LINK_CREATE, kernel 6.6+) needs CAP_BPF and CAP_PERFMON, as the rest of the loader;
 * a perf-event uprobe needs CAP_SYS_ADMIN on kernels with the fix for CVE-2025-38466 (6.16, and
 * 6.15.7, 6.12.39, 6.6.99, 6.1.146, 5.15.189, 5.10.240): with the agent's least privileges, Go
 * and TLS probes were refused (EACCES); a uprobe event in tracefs needs only that uid 0 may
 * write its file. Each way the probe is on one process (pid): its breakpoint is written into
 * that process's memory only.
 */
#ifndef SEQTRACE_UPROBES_H
#define SEQTRACE_UPROBES_H

#include <stdbool.h>
#include <sys/types.h>

struct bpf_object;
struct bpf_program;
struct bpf_link;

/* One attached probe: a uprobe_multi link's fd, or (fd < 0) libbpf's perf-event link, and the
 * tracefs event it was made from (event[0] != 0). */
struct uprobe_link {
	int fd;
	struct bpf_link *perf;
	char event[40];
};

/* How uprobes are attached (the loader's --uprobes): */
enum uprobe_way {
	UPROBE_AUTO,            /* multi where the kernel has it, else perf_or_tracefs */
	UPROBE_MULTI,           /* uprobe_multi links (kernel 6.6+) */
	UPROBE_PERF_OR_TRACEFS, /* perf-event uprobes; refused (CAP_SYS_ADMIN): a tracefs uprobe event
				 * (--uprobes perf-or-tracefs) */
	UPROBE_PERF,            /* perf-event uprobes only (--uprobes perf: tests, the refusal itself) */
	UPROBE_TRACEFS,         /* uprobe events in tracefs (/sys/kernel/tracing/uprobe_events, which
				 * root may write with no capability), a perf event on each (--uprobes tracefs) */
};

/* Before the object is loaded: the way (auto: asks the kernel whether it has uprobe_multi
 * links); for links every uprobe program of obj is loaded for them (its expected attach type).
 * Events a dead loader left in tracefs are removed. Returns the way chosen. */
enum uprobe_way uprobes_prepare(struct bpf_object *obj, enum uprobe_way want);

/* Attaches prog at file offset `off` of `path` (an ELF file) in process pid, as a return
 * probe with `ret`. false: errno says why (EACCES: see above). */
bool uprobe_attach(struct bpf_program *prog, pid_t pid, const char *path, unsigned long off, bool ret,
		   struct uprobe_link *out);

/* Removes these n probes (the array may be reused at once): by a thread of the loader's own,
 * since each removal waits for the kernel's grace periods (uprobes.c). */
void uprobes_detach(const struct uprobe_link *links, int n);

/* At the loader's exit, after the go and tls commands' frees: removes what is still queued. */
void uprobes_free(void);

/* What an EACCES from uprobe_attach means, for its message */
#define UPROBE_EACCES_HINT                                                                             \
	" (perf-event uprobes need CAP_SYS_ADMIN on this kernel, uprobe events a writable "              \
	"/sys/kernel/tracing/uprobe_events; uprobe_multi links, kernel 6.6+, need neither)"


/* The file offsets of the n functions `names` in ELF file `path` (its symbol table or dynamic
 * symbols), for uprobes, into offs (0: no such function). 0, or -errno when the file cannot be
 * read (-ENOEXEC: not ELF). One pass over the symbols for all of them. */
int elf_func_offsets(const char *path, const char *const *names, int n, long *offs);

#endif /* SEQTRACE_UPROBES_H */
