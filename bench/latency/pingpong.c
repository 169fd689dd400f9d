// Two processes passing a byte back and forth over pipes at a fixed rate, for
// bench/latency-disturb.sh: context switches between two address spaces on one CPU, as the
// agent, its loader and the client make (docs/agent.md, "In the steady state").
//   pingpong SECONDS ROUND_TRIPS_PER_SECOND
// Every 1 ms the parent does ROUND_TRIPS_PER_SECOND / 1000 round trips with its child.
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 3 || atof(argv[1]) <= 0 || atol(argv[2]) < 1000) {
		fprintf(stderr, "usage: pingpong SECONDS ROUND_TRIPS_PER_SECOND (at least 1000)\n");
		return 2;
	}
	double secs = atof(argv[1]);
	long per_ms = atol(argv[2]) / 1000;
	int there[2], back[2];
	if (pipe(there) || pipe(back)) {
		perror("pipe");
		return 1;
	}
	pid_t child = fork();
	if (child == 0) {
		close(there[1]); /* the parent's end: read() returns 0 once the parent is gone */
		char c;
		while (read(there[0], &c, 1) == 1 && write(back[1], &c, 1) == 1)
			;
		_exit(0);
	}
	struct timespec tick = { 0, 1000 * 1000 };
	char c = 'x';
	for (long i = 0; i < secs * 1000; i++) {
		for (long k = 0; k < per_ms; k++)
			if (write(there[1], &c, 1) != 1 || read(back[0], &c, 1) != 1)
				return 1;
		nanosleep(&tick, NULL);
	}
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	return 0;
}
