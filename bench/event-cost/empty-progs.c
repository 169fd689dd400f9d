// Attaches empty programs to tp sock_send_length and sock_recv_length and waits to be killed
// (bench/dispatch-floor.sh, as a LOADER of capture-cost-toggle.sh ATTACH=1, which passes it
// loader options: ignored).
//   empty-progs OBJECT one|two [ignored...]
// two: a program on each tracepoint (as seqtrace's loader); one: the same program on both, so
// that a send and a receive share the program, its recursion counter and its code.
// Prints "ready" once both are attached.
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <bpf/libbpf.h>

int main(int argc, char **argv)
{
	if (argc < 3 || (strcmp(argv[2], "one") && strcmp(argv[2], "two"))) {
		fprintf(stderr, "usage: empty-progs OBJECT one|two\n");
		return 2;
	}
	struct bpf_object *obj = bpf_object__open_file(argv[1], NULL);
	if (!obj) {
		perror("empty-progs: open");
		return 1;
	}
	if (bpf_object__load(obj)) {
		perror("empty-progs: load");
		return 1;
	}
	struct bpf_program *a = bpf_object__find_program_by_name(obj, "empty_a");
	struct bpf_program *b = strcmp(argv[2], "one") ? bpf_object__find_program_by_name(obj, "empty_b") : a;
	if (!bpf_program__attach_raw_tracepoint(a, "sock_send_length") ||
	    !bpf_program__attach_raw_tracepoint(b, "sock_recv_length")) {
		perror("empty-progs: attach");
		return 1;
	}
	printf("ready %s\n", argv[2]);
	fflush(stdout);
	pause(); // the links go with the process
	return 0;
}
