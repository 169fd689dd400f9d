// A Go net/http server answering a few bytes, for bench/capture-cost.sh.
// Listens on 127.0.0.1:0 and prints its port on stdout. With STATS_MS=N it then prints
// "stat UNIX_NS REQUESTS CPU_NS" every N ms (requests served and the process's CPU time so
// far), for bench/capture-cost-toggle.sh.
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(l.Addr().(*net.TCPAddr).Port)
	var served int64
	if ms, _ := strconv.Atoi(os.Getenv("STATS_MS")); ms > 0 {
		go func() {
			for range time.Tick(time.Duration(ms) * time.Millisecond) {
				var ru syscall.Rusage
				syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
				cpu := ru.Utime.Nano() + ru.Stime.Nano()
				fmt.Printf("stat %d %d %d\n", time.Now().UnixNano(), atomic.LoadInt64(&served), cpu)
			}
		}()
	}
	http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		atomic.AddInt64(&served, 1)
		w.Write([]byte("hello\n"))
	}))
}
