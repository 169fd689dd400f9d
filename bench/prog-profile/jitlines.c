// SPDX-License-Identifier: Apache-2.0
/*
 * jitlines ID: the source line of every JIT address of loaded BPF program ID, from its
 * jited_line_info and line_info (bpf_obj_get_info_by_fd) and its BTF strings. One line each,
 * "ADDRESS LINE SOURCE", sorted by address, ADDRESS absolute (as in perf samples). For
 * bench/prog-profile.sh: bpftool here is built without a disassembler and refuses `dump jited`.
 */
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: jitlines PROG_ID\n");
		return 2;
	}
	int fd = bpf_prog_get_fd_by_id(atoi(argv[1]));
	if (fd < 0) {
		perror("jitlines: program");
		return 1;
	}
	struct bpf_prog_info info = {};
	__u32 len = sizeof(info);
	if (bpf_obj_get_info_by_fd(fd, &info, &len)) {
		perror("jitlines: info");
		return 1;
	}
	__u32 n = info.nr_jited_line_info < info.nr_line_info ? info.nr_jited_line_info : info.nr_line_info;
	__u32 rec = info.line_info_rec_size, btf_id = info.btf_id;
	struct bpf_line_info *li = calloc(info.nr_line_info, rec);
	__u64 *addr = calloc(info.nr_jited_line_info, sizeof(*addr));
	if (!li || !addr)
		return 1;
	info = (struct bpf_prog_info){
		.nr_line_info = n, .line_info_rec_size = rec, .line_info = (__u64)(unsigned long)li,
		.nr_jited_line_info = n, .jited_line_info_rec_size = sizeof(*addr), .jited_line_info = (__u64)(unsigned long)addr,
	};
	len = sizeof(info);
	if (bpf_obj_get_info_by_fd(fd, &info, &len)) {
		perror("jitlines: line info");
		return 1;
	}
	struct btf *btf = btf__load_from_kernel_by_id(btf_id);
	if (!btf) {
		fprintf(stderr, "jitlines: program %s has no BTF (built without -g?)\n", argv[1]);
		return 1;
	}
	for (__u32 i = 0; i < n; i++) {
		const char *src = btf__name_by_offset(btf, li[i].line_off);
		const char *file = btf__name_by_offset(btf, li[i].file_name_off);
		const char *base = file ? strrchr(file, '/') : NULL;
		/* the file too: the programs' lines come from seqtrace.bpf.c and its headers */
		printf("%llx %s:%u %s\n", (unsigned long long)addr[i], base ? base + 1 : file ? file : "?",
		       BPF_LINE_INFO_LINE_NUM(li[i].line_col), src ? src : "");
	}
	return 0;
}
