// An open-loop HTTP/1.1 load generator for latency (bench/agent-overhead.sh, docs/agent.md):
// requests are sent at a fixed rate whatever the server does, and each one's latency is taken
// from the time it was due to be sent (not from when a connection was free), so a stall of the
// server shows in every request it delays (no coordinated omission, unlike a closed loop such
// as wrk's). wrk cannot pace its requests; wrk2 is not packaged here.
//   paced PORT RATE SECONDS CONNS
// CONNS keep-alive connections to 127.0.0.1:PORT, at most one request outstanding on each;
// request k is due at start + k / RATE and goes out on a free connection (or waits for one).
// Two latencies per request:
//  - server: from the write of the request to the kernel's receive timestamp of the answer
//    (SO_TIMESTAMPNS: on loopback taken in the server's own write, on the server's CPU). Both
//    ends are taken by the kernel as the bytes move, so what the client's CPU does meanwhile
//    (it shares its CPU with the agent on a 2-CPU machine, and a kernel without preemption
//    makes a woken client wait for the running task's system call) is not in it;
//  - client: from when the request was due to when the client had read the answer (what a
//    caller sees, its own CPU's scheduling included).
// Prints one line: requests, errors, then percentiles in microseconds:
//   n=N errors=E p50=.. p90=.. p99=.. p999=.. max=.. client_p50=.. client_p99=.. client_p999=..
// Answers are read up to the end of the headers and Content-Length bytes of body.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 256

struct conn {
	int fd;
	long req;   /* request outstanding, -1: free */
	long long sent; /* CLOCK_REALTIME ns of its write */
	char buf[4096];
	int used;
};

static long long now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static long long real_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;
	return x < y ? -1 : x > y;
}

/* Whole answers at the start of c->buf: their count; consumed bytes removed. -1 on a bad answer. */
static int answers(struct conn *c)
{
	int n = 0;
	for (;;) {
		c->buf[c->used] = 0;
		char *end = strstr(c->buf, "\r\n\r\n");
		if (!end)
			return n;
		if (strncmp(c->buf, "HTTP/1.1 200", 12))
			return -1;
		char *cl = strcasestr(c->buf, "\r\nContent-Length:");
		long body = cl && cl < end ? atol(cl + 17) : 0;
		int total = (int)(end + 4 - c->buf) + (int)body;
		if (total > c->used)
			return n;
		memmove(c->buf, c->buf + total, c->used - total);
		c->used -= total;
		n++;
	}
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: paced PORT RATE SECONDS CONNS\n");
		return 1;
	}
	int port = atoi(argv[1]);
	double rate = atof(argv[2]), secs = atof(argv[3]);
	int nconns = atoi(argv[4]);
	if (nconns < 1 || nconns > MAX_CONNS || rate <= 0 || secs <= 0) {
		fprintf(stderr, "paced: bad arguments\n");
		return 1;
	}
	long total = (long)(rate * secs);
	long long *lat = calloc(total, sizeof(*lat));  /* server */
	long long *clat = calloc(total, sizeof(*clat)); /* client */
	long long *due = calloc(total, sizeof(*due));
	static struct conn conns[MAX_CONNS];
	int ep = epoll_create1(0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(0x7f000001) };
	for (int i = 0; i < nconns; i++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
		if (connect(fd, (void *)&a, sizeof(a))) {
			perror("paced: connect");
			return 1;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one));
		conns[i] = (struct conn){ .fd = fd, .req = -1 };
		struct epoll_event ev = { .events = EPOLLIN, .data.u32 = i };
		epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
	}
	static const char req[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
	long long start = now_ns() + 1000000, period = (long long)(1e9 / rate);
	long next = 0, done = 0, errors = 0;
	long waiting[MAX_CONNS * 4]; /* due requests without a free connection (a ring) */
	long wq_head = 0, wq_tail = 0;
	while (done + errors < total) {
		long long t = now_ns();
		/* requests now due: onto a free connection, else queued (their latency runs from due) */
		while (next < total && start + next * period <= t) {
			due[next] = start + next * period;
			if (wq_tail - wq_head < (long)(sizeof(waiting) / sizeof(waiting[0])))
				waiting[wq_tail++ % (sizeof(waiting) / sizeof(waiting[0]))] = next;
			else
				errors++; /* hopelessly behind: counted */
			next++;
		}
		for (int i = 0; i < nconns && wq_head < wq_tail; i++) {
			if (conns[i].req >= 0)
				continue;
			long k = waiting[wq_head++ % (sizeof(waiting) / sizeof(waiting[0]))];
			conns[i].sent = real_ns();
			if (write(conns[i].fd, req, sizeof(req) - 1) != (ssize_t)(sizeof(req) - 1)) {
				errors++;
				continue;
			}
			conns[i].req = k;
		}
		long long wait = next < total ? start + next * period - now_ns() : 100000000;
		if (wait < 0)
			wait = 0;
		struct timespec to = { .tv_sec = wait / 1000000000, .tv_nsec = wait % 1000000000 };
		struct epoll_event evs[64];
		int n = epoll_pwait2(ep, evs, 64, &to, NULL);
		if (n < 0 && errno != EINTR) {
			perror("paced: epoll");
			return 1;
		}
		for (int e = 0; e < n; e++) {
			struct conn *c = &conns[evs[e].data.u32];
			char ctl[256];
			struct iovec iov = { .iov_base = c->buf + c->used, .iov_len = sizeof(c->buf) - 1 - c->used };
			struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof(ctl) };
			ssize_t r = recvmsg(c->fd, &mh, 0);
			long long rx = 0;
			for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
				if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SO_TIMESTAMPNS) {
					struct timespec ts;
					memcpy(&ts, CMSG_DATA(cm), sizeof(ts));
					rx = ts.tv_sec * 1000000000LL + ts.tv_nsec;
				}
			if (r <= 0) {
				fprintf(stderr, "paced: connection closed\n");
				return 1;
			}
			c->used += r;
			int got = answers(c);
			if (got < 0 || got > 1 || (got == 1 && c->req < 0)) {
				fprintf(stderr, "paced: unexpected answer\n");
				return 1;
			}
			if (got == 1) {
				clat[done] = now_ns() - due[c->req];
				lat[done++] = (rx ? rx : real_ns()) - c->sent;
				c->req = -1;
			}
		}
	}
	qsort(lat, done, sizeof(*lat), cmp);
	qsort(clat, done, sizeof(*clat), cmp);
	double us = 1e3;
#define PCT(a, p) (done ? (a)[(long)((p) * (done - 1))] / us : 0)
	printf("n=%ld errors=%ld p50=%.1f p90=%.1f p99=%.1f p999=%.1f max=%.1f client_p50=%.1f client_p99=%.1f client_p999=%.1f\n",
	       done, errors, PCT(lat, 0.5), PCT(lat, 0.9), PCT(lat, 0.99), PCT(lat, 0.999), done ? lat[done - 1] / us : 0,
	       PCT(clat, 0.5), PCT(clat, 0.99), PCT(clat, 0.999));
	return 0;
}
