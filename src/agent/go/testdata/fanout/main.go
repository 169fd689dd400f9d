// A Go service for the capture test: GET /front fans out two calls to /down in parallel
// goroutines, then makes a third call itself, all with the standard client (keep-alive), and
// answers. /down answers at once. Prints {"pid":..,"port":..} and serves until stdin closes.
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
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	client := &http.Client{}
	get := func(path string) string {
		r, err := client.Get(base + path)
		if err != nil {
			return err.Error()
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return string(b)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/down", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "down %s\n", r.URL.RawQuery)
	})
	mux.HandleFunc("/front", func(w http.ResponseWriter, r *http.Request) {
		var wg sync.WaitGroup
		out := make([]string, 3)
		for i := 0; i < 2; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				out[i] = get(fmt.Sprintf("/down?i=%d", i+1))
			}(i)
		}
		wg.Wait()
		out[2] = get("/down?i=3")
		fmt.Fprint(w, out[0], out[1], out[2])
	})
	go http.Serve(ln, mux)
	b, _ := json.Marshal(map[string]int{"pid": os.Getpid(), "port": port})
	fmt.Println(string(b))
	io.Copy(io.Discard, os.Stdin)
}
