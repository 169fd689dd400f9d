/* SPDX-License-Identifier: Apache-2.0 */
/* The loader's `tls` command: OpenSSL's uprobes attached per process (tls_probes.c). */
#ifndef SEQTRACE_TLS_PROBES_H
#define SEQTRACE_TLS_PROBES_H
#include <stdbool.h>
#include <linux/types.h>

struct tls_programs {
	struct bpf_program *write, *write_ex, *read, *read_ex, *handshake, *ret; /* tls.bpf.h */
	bool (*traced)(__u32 pid); /* the loader's traced bit of a pid */
};

void tls_probes_init(const struct tls_programs *p);
/* `tls PID PATH`: the probes attached to that process, on the libssl at PATH. */
bool tls_process_command(const char *line, __u32 *pid_out);
/* Detaches the probes of processes no longer traced (gone, or `del`). */
void tls_poll(void);
void tls_probes_free(void);

#endif
