// A Go service without net/http's client, for the capture test of when goroutine starts are
// probed: GET /spawn starts two goroutines and waits for them; GET /dial opens a plain TCP
// connection to its own listener (not HTTP) and closes it. Prints {"pid":..,"port":..} and
// serves until stdin closes.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
)

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	mux := http.NewServeMux()
	mux.HandleFunc("/spawn", func(w http.ResponseWriter, r *http.Request) {
		var wg sync.WaitGroup
		for i := 0; i < 2; i++ {
			wg.Add(1)
			go wg.Done()
		}
		wg.Wait()
		fmt.Fprintln(w, "spawned")
	})
	mux.HandleFunc("/dial", func(w http.ResponseWriter, r *http.Request) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err == nil {
			c.Close()
		}
		fmt.Fprintln(w, "dialled", err == nil)
	})
	go http.Serve(ln, mux)
	b, _ := json.Marshal(map[string]int{"pid": os.Getpid(), "port": port})
	fmt.Println(string(b))
	io.Copy(io.Discard, os.Stdin)
}
