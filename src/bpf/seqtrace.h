/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The byte layout of what the kernel side reports, shared by the eBPF programs
 * (seqtrace.bpf.c) and the loader (loader.c). Only the event layout and sizes live
 * here. Every field has a fixed width and explicit padding so that TypeScript
 * (src/agent/capture/decode.ts) decodes it by offset; `loader --print-layout` prints
 * the offsets and a test compares them with decode.ts.
 *
 * All integers are little-endian host order (x86_64), ports included.
 */
#ifndef SEQTRACE_H
#define SEQTRACE_H

/* Sizes, in one place. */
#define ST_CAPTURE_MAX 4096     /* largest capture_bytes; a power of two (verifier masks) */
#define ST_CAPTURE_DEFAULT 1024
#define ST_TAIL_BYTES 32        /* last bytes of a message kept when the head does not reach its end */
#define ST_MAX_IOV 1024         /* iovec entries walked per message: all (UIO_MAXIOV, the kernel's limit) */
#define ST_IOV_PART 16          /* of which one global function walks at a time (the verifier's limit) */
#define ST_MAX_MMSG 16          /* messages of one sendmmsg/recvmmsg reported (syscall mode) */
#define ST_BATCH_MAX 16384      /* largest per-CPU batch of events; a power of two (verifier masks) */
#define ST_GO_MAX_PROBES 32     /* uprobes of one Go binary (newproc1 RETs, round trip, ...) */
#define ST_TLS_CONNS 16384      /* OpenSSL connections (SSL *) whose socket the kernel knows at once (LRU) */
#define ST_COMM_LEN 16          /* a process name as the kernel keeps it (TASK_COMM_LEN, NUL included) */

/* Bits of a pid in the kernel's `traced` map (ST_PID_BITS per pid, ST_PIDS_PER_WORD pids in each
 * u64 word; the loader maps it). */
#define ST_PID_TRACED 1 /* its sends and receives are captured */
#define ST_PID_GO 2     /* a Go process with offsets in go_procs */
#define ST_PID_TLS 4    /* OpenSSL's probes are on it (tls.bpf.h): its threads may be inside a call */
#define ST_PID_ALL (ST_PID_TRACED | ST_PID_GO | ST_PID_TLS)
#define ST_PID_BITS 4
#define ST_PIDS_PER_WORD (64 / ST_PID_BITS)
#define ST_PID_SHIFT(pid) (ST_PID_BITS * ((pid) % ST_PIDS_PER_WORD))

/* First byte of every event and frame. */
enum st_kind {
	ST_EV_DATA = 1,  /* bytes moved on a TCP socket of a traced process */
	ST_EV_CLOSE = 2, /* a socket seen before was destroyed: closed by its process, done by TCP (a Unix
			  * socket: its process read the end of the stream, on_unix) */
	ST_EV_EXEC = 3,  /* a process called exec (every process: user space decides what to trace) */
	ST_EV_EXIT = 4,  /* the last thread of a process exited */
	ST_EV_STATS = 5, /* counters (written by the loader, not the kernel) */
	ST_EV_READY = 6, /* loader: programs attached (written once) */
	ST_EV_ACK = 7,   /* loader: one stdin command handled */
	ST_EV_THREAD = 8, /* a traced process created a thread (same tgid) */
	ST_EV_GOROUTINE = 9, /* a goroutine of a Go process started another (go.bpf.h) */
	ST_EV_BATCH = 10, /* kernel -> loader only: several events of one CPU (never on stdout) */
	ST_EV_DATA_REC = 11, /* kernel -> loader only: a data event, compact (the loader expands it) */
	ST_EV_THREAD_EXIT = 12, /* a thread of a traced process exited, not its last (st_thread_event) */
	ST_EV_SHUTDOWN = 13, /* a socket seen before sent its FIN: it sends nothing more (st_close_event) */
};

enum st_dir { ST_DIR_SEND = 1, ST_DIR_RECV = 2 };

enum st_flags {
	ST_F_NO_PAYLOAD = 1, /* sendfile/splice/unknown syscall: counted, nothing copied */
	ST_F_TRUNCATED = 2,  /* the user buffer could not be read completely */
	/* st_data_rec only (kernel -> loader): what follows its header */
	ST_R_TUPLE = 4, /* a tuple (st_tuple4; st_tuple6 with ST_R_V6; st_tuple_unix with ST_R_UNIX) */
	ST_R_V6 = 8,    /* family 6 */
	ST_R_GOID = 16, /* a u64 goroutine id */
	ST_R_UNIX = 32, /* the tuple is an st_tuple_unix (with ST_R_TUPLE) */
	/* record and stdout: the plaintext of an OpenSSL call (tls.bpf.h), not the socket's bytes:
	 * sock_id is the socket's id | ST_TLS_ID and seq the TCP sequence number just past the TLS
	 * record it rode in (docs/kernel.md "TLS"), the same number at both ends */
	ST_F_TLS = 64,
};

/* Set in the sock_id of a TLS connection's plaintext events: one socket, two byte streams (its
 * ciphertext is muted in the kernel). Cookies count from 1 and invented ids are 2^52 + a count,
 * so neither reaches this bit, and id | ST_TLS_ID stays below 2^53. */
#define ST_TLS_ID (1ULL << 51)

/* st_data_event.family of a Unix stream socket (AF_UNIX); 4 and 6 are TCP's */
#define ST_FAMILY_UNIX 1

/* Counters in the per-CPU `stats` array, summed by the loader. */
enum st_stat {
	ST_STAT_EVENTS = 0,    /* events written to the ring buffer */
	ST_STAT_DROPS = 1,     /* events the ring buffer had no room for */
	ST_STAT_TRUNCATED = 2, /* data events whose copy failed part-way */
	ST_STAT_BATCHES = 3,   /* ring buffer records holding a batch of events */
	ST_STAT_MAX = 4,
};

/* A Unix stream socket's event (family ST_FAMILY_UNIX): `seq` counts the bytes this end moved in
 * that direction since the capture first saw the socket (no TCP sequence numbers: the agent
 * pairs the two ends itself, docs/kernel.md "Unix sockets"), ports and src_addr are 0,
 * dst_addr's first 8 bytes hold the peer's socket cookie (0 until the capture saw the peer),
 * and path_len bytes of the socket's path (the listener's: `@` + name for an abstract one)
 * follow the head. */
struct st_data_event {
	__u8 kind;   /* ST_EV_DATA */
	__u8 dir;    /* st_dir */
	__u8 family; /* 4, 6 or ST_FAMILY_UNIX */
	__u8 flags;  /* st_flags */
	__u32 pid;   /* tgid */
	__u32 tid;
	__u32 seq;   /* TCP sequence number of the first byte moved (ST_F_TLS: past its TLS record) */
	__u64 ts_ns; /* CLOCK_MONOTONIC */
	__u64 sock_id; /* socket cookie, or an invented id from 2^52 (sockets.bpf.h): below 2^53 */
	__u64 goid;  /* 0 until Go uprobes fill it */
	__u32 len;   /* bytes moved by this call (or this message of a *mmsg call) */
	__u16 head_len;
	__u16 tail_len;
	__u16 src_port; /* src = this process's end */
	__u16 dst_port;
	__u16 path_len; /* Unix: bytes of path after the head; else 0 */
	__u16 _pad0;
	__u8 src_addr[16]; /* IPv4: first 4 bytes */
	__u8 dst_addr[16]; /* Unix: the peer's cookie (u64) */
	__u8 tail[ST_TAIL_BYTES];
	__u8 head[]; /* head_len bytes follow, then path_len bytes; the event is sent with only those */
};

struct st_close_event {
	__u8 kind; /* ST_EV_CLOSE or ST_EV_SHUTDOWN */
	__u8 _pad0[3];
	__u32 pid; /* the process that last moved bytes on it */
	__u64 ts_ns;
	__u64 sock_id;
};

/* st_proc_event.flags of an exec: the process was not traced, and the kernel traces it from
 * this exec until user space decides (`add` keeps it, `del` ends it, with the children it
 * forked meanwhile): what it sends in its first milliseconds is not lost. */
#define ST_PROC_PROVISIONAL 1

struct st_proc_event {
	__u8 kind; /* ST_EV_EXEC or ST_EV_EXIT */
	__u8 flags; /* exec: ST_PROC_PROVISIONAL */
	__u8 _pad0[2];
	__u32 pid;
	__u32 ppid; /* exec: parent tgid; exit: 0 */
	__u32 _pad1;
	__u64 ts_ns;
	/* exec: the new image's name (comm), which user space still has when the process is gone
	 * before it looks (a short client, a busy agent); exit: empty */
	char comm[ST_COMM_LEN];
	/* On stdout an exec frame may go on after these 40 bytes: `NAME=value\0` for each
	 * --exec-env variable of the new image's environment (the loader adds them: output.c). */
};

/* A thread of a traced process started another thread of it: user space lets the new thread
 * inherit the thread group its creator is serving (a handler fanning calls out to threads).
 * ST_EV_THREAD_EXIT: thread `tid` ended (ptid 0); user space tells a thread started for one
 * request, gone when that request ends, from a pool worker that outlives it. */
struct st_thread_event {
	__u8 kind; /* ST_EV_THREAD or ST_EV_THREAD_EXIT */
	__u8 _pad0[3];
	__u32 pid;  /* tgid of both threads */
	__u32 tid;  /* the new thread, or the one that ended */
	__u32 ptid; /* the thread that created it (0 for ST_EV_THREAD_EXIT) */
	__u64 ts_ns;
};

/* A goroutine of a traced Go process started another (runtime.newproc1): user space lets the
 * child inherit the thread group its creator serves, as for threads. Reported before the child
 * can run (newproc1 returns before the new g is scheduled). */
struct st_goroutine_event {
	__u8 kind; /* ST_EV_GOROUTINE */
	__u8 _pad0[3];
	__u32 pid;
	__u32 tid;   /* the thread that ran newproc1 */
	__u32 _pad1;
	__u64 goid;  /* the new goroutine */
	__u64 pgoid; /* the goroutine that started it */
	__u64 ts_ns;
};

/* Value of the provisional map (seqtrace.bpf.c): the pid whose exec began the entry and, in
 * that root's own entry, how many children it forked while undecided. Read by the loader's
 * `add` and `del`. */
struct st_provisional {
	__u32 root;
	__u32 children;
};
#define ST_PROVISIONAL_MAX 4096 /* processes undecided at once; more: execs not traced provisionally */
#define ST_MUTED_MAX 16384 /* sockets muted at once (LRU: the oldest are captured again) */

/* Value of the go_procs map (go.bpf.h), written by the loader's `go` command. */
struct st_go_proc {
	__s64 tls_off;      /* g = *(fsbase + tls_off) */
	__u64 goid_off;     /* goid = *(g + goid_off) */
	__u64 pconn_conn;   /* persistConn.conn (net.Conn interface: itab, data); 0: no round-trip probe */
	__u64 tcpconn_itab; /* itab address of *net.TCPConn in net.Conn */
	__u64 tcpconn_fd;   /* TCPConn -> conn.fd (*netFD) */
	__u64 netfd_sysfd;  /* netFD -> pfd.Sysfd */
	__u64 g_m;          /* g.m (*m) */
	__u64 m_curg;       /* m.curg (*g) */
	__u64 flags;        /* st_go_flags */
};

enum st_go_flags {
	/* The process can call out: its binary links net/http's client (set by the loader's `go`),
	 * or it opened a TCP connection or made a round trip (set by the kernel; the loader then
	 * attaches the goroutine-start probe). Only then do its data events carry goids. */
	ST_GO_CALLS_OUT = 1,
};

/* Kernel -> loader only (the loader unpacks it; decode.ts never sees it): the events one CPU
 * collected, one after the other, each starting at a multiple of 8: st_data_rec (its size
 * from its fields: st_data_rec_size) or a close, exec, exit, thread or goroutine event (size
 * by kind). Events of one batch are in the order (and ts_ns order) they happened on that CPU. */
struct st_batch_event {
	__u8 kind; /* ST_EV_BATCH */
	__u8 _pad0[3];
	__u32 count; /* records */
	__u32 bytes; /* of records, after this header */
	__u32 cpu;   /* the CPU whose batch it is */
};

/*
 * Kernel -> loader only: a data event as the kernel writes it; the loader expands it into an
 * st_data_event (the only data layout on stdout). Its header (40 bytes) is followed, each part
 * padded to a multiple of 8, by: head_len head bytes; tail_len tail bytes; the goroutine id
 * (ST_R_GOID, when not 0); the 4-tuple (ST_R_TUPLE). The tuple is left out when this CPU's
 * batch sent it before for this socket: the kernel keeps the last sockets of each CPU in a
 * small cache (seqtrace.bpf.c, `sock_cache`) and sends the tuple whenever the socket is not in it
 * (a miss fills the slot). The loader keeps the same cache per CPU, filled by the batched
 * records that carry a tuple, in the CPU's order; a record without one takes it from there.
 * A record sent outside a batch (nested, or batching off) always carries its tuple and leaves
 * the cache alone. A lost batch empties that CPU's cache in the kernel; a record whose socket
 * the loader's cache does not hold is dropped, counted, and every CPU's cache emptied
 * (`tuple_gen`): never a wrong tuple.
 */
struct st_data_rec {
	__u8 kind;  /* ST_EV_DATA_REC */
	__u8 flags; /* st_flags, ST_R_* */
	__u16 head_len;
	__u32 len;
	__u32 tid;  /* tid then pid: the u64 pid_tgid as the kernel gives it */
	__u32 pid;
	__u64 ts_ns;
	__u64 sock_id;
	__u32 seq;
	__u8 dir;
	__u8 tail_len;
	__u16 _pad0;
};

struct st_tuple4 {
	__u16 src_port;
	__u16 dst_port;
	__u8 src_addr[4];
	__u8 dst_addr[4];
	__u32 _pad0;
};

struct st_tuple6 {
	__u16 src_port;
	__u16 dst_port;
	__u32 _pad0;
	__u8 src_addr[16];
	__u8 dst_addr[16];
};

/* A Unix stream socket's "tuple": the peer's socket cookie (0 when the capture has not seen the
 * peer yet: not traced, or not used since tracing began) and the socket's path. */
#define ST_UNIX_PATH 112 /* sun_path's 108 bytes, rounded up */
struct st_tuple_unix {
	__u64 peer_id;
	__u16 path_len;
	__u8 _pad0[6];
	__u8 path[ST_UNIX_PATH];
};

#define ST_ALIGN8(n) (((n) + 7) & ~7U)

/* Bytes of an st_data_rec with its head, tail, goid and tuple. */
static inline __u32 st_data_rec_size(const struct st_data_rec *r)
{
	__u32 n = sizeof(*r) + ST_ALIGN8(r->head_len) + ST_ALIGN8(r->tail_len);
	if (r->flags & ST_R_GOID)
		n += 8;
	if (r->flags & ST_R_TUPLE)
		n += r->flags & ST_R_UNIX ? sizeof(struct st_tuple_unix)
		     : r->flags & ST_R_V6 ? sizeof(struct st_tuple6) : sizeof(struct st_tuple4);
	return n;
}

/* The per-CPU cache of recent sockets (kernel and loader alike): ST_SOCK_CACHE slots, a socket
 * (by cookie) in slot st_sock_slot(cookie). */
#define ST_SOCK_CACHE 256 /* a power of two */
static inline __u32 st_sock_slot(__u64 id)
{
	return (id ^ (id >> 8)) & (ST_SOCK_CACHE - 1);
}
/* The largest st_data_rec with capture_bytes of head. */
#define ST_DATA_REC_MAX(capture)                                                                              \
	(sizeof(struct st_data_rec) + ST_ALIGN8(capture) + ST_TAIL_BYTES + 8 + sizeof(struct st_tuple_unix))

struct st_stats_event {
	__u8 kind; /* ST_EV_STATS */
	__u8 _pad0[7];
	__u64 events;
	__u64 drops;
	__u64 truncated;
	__u64 loader_cpu_ns; /* the loader's own CPU time (user+system) so far */
	__u64 late; /* events the loader got after it had written later ones (should stay 0; output.c) */
};

struct st_ready_event {
	__u8 kind; /* ST_EV_READY */
	__u8 mode; /* 1 socket, 2 syscall */
	__u16 capture_bytes;
	__u32 ringbuf_bytes;
};

struct st_ack_event {
	__u8 kind; /* ST_EV_ACK */
	__u8 ok;   /* 1 done, 0 refused */
	__u8 _pad0[2];
	__u32 pid; /* the pid of the command */
};

#define ST_MODE_SOCKET 1
#define ST_MODE_SYSCALL 2

#endif
