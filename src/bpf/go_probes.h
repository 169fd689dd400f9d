/* SPDX-License-Identifier: Apache-2.0 */
/* The loader's Go commands and per-process uprobes (go_probes.c). */
#ifndef SEQTRACE_GO_PROBES_H
#define SEQTRACE_GO_PROBES_H
#include <stdbool.h>
#include <linux/types.h>

enum { GO_PROBE_NEWPROC1_RET, GO_PROBE_NEWPROC_NOP5, GO_PROBE_ROUNDTRIP, GO_PROBE_EXECUTE };

struct go_programs {
	struct bpf_program *newproc1_ret, *newproc_nop5, *roundtrip, *execute;
	int procs_fd; /* the go_procs map */
};

void go_probes_init(const struct go_programs *p);
/* `uprobe WHICH FILE_OFFSET PATH`: a probe of PATH's binary, attached to each of its Go processes. */
bool go_uprobe_command(const char *line);
/* `go PID ...`: the process's offsets into go_procs, its binary's probes attached to it. */
bool go_process_command(const char *line, __u32 *pid_out);
/* Attaches the goroutine-start probe to processes that began calling out; forgets gone ones. */
void go_poll(void);
/* Whether a followed process waits for its first outgoing connection (the kernel's sock_state
 * program sets ST_GO_CALLS_OUT then): the loader attaches sock_state only while one does. */
bool go_waiting_to_call_out(void);
void go_probes_free(void);

#endif
