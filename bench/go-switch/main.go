// Goroutine switch cost: two goroutines pass a token over unbuffered channels, GOMAXPROCS=1,
// so every hand-off is a scheduler switch (runtime.execute) on one thread. Each stdin line
// "switch N" answers the wall and process-CPU nanoseconds per switch of N round trips (2N
// switches); "spawn N" the same per goroutine started (runtime.newproc1) and finished.
package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"
)

func cpuNs() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func main() {
	runtime.GOMAXPROCS(1)
	ping, pong := make(chan int), make(chan int)
	go func() {
		for v := range ping {
			pong <- v
		}
	}()
	fmt.Println(os.Getpid())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var what string
		var n int
		fmt.Sscan(in.Text(), &what, &n)
		t0, c0 := time.Now(), cpuNs()
		switch what {
		case "switch":
			for i := 0; i < n; i++ {
				ping <- i
				<-pong
			}
			n *= 2
		case "dial":
			// a TCP connection to itself: a process that calls out gets the goroutine-start
			// probe (go_probes.c); this one has no net/http client to say so
			if ln, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
				if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
					c.Close()
				}
				ln.Close()
			}
			n = 1
		case "spawn":
			var wg sync.WaitGroup
			for i := 0; i < n; i++ {
				wg.Add(1)
				go wg.Done()
				if i%64 == 63 {
					wg.Wait()
				}
			}
			wg.Wait()
		}
		fmt.Printf("%.1f %.1f\n", float64(time.Since(t0).Nanoseconds())/float64(n), float64(cpuNs()-c0)/float64(n))
	}
}
