// SPDX-License-Identifier: GPL-2.0
// Two raw tracepoint programs that return at once: what the kernel's dispatch to the socket
// tracepoints costs before any program's first instruction (bench/dispatch-floor.sh).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("raw_tp")
int empty_a(void *ctx) { return 0; }

SEC("raw_tp")
int empty_b(void *ctx) { return 0; }
