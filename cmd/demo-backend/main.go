// Command demo-backend is the tiny HTTP server `make run` starts behind
// Sluice: it answers every request with its own name, so you can see which
// backend served you.
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9001", "address to serve on")
	name := flag.String("name", "", "name to answer with (default: the listen address)")
	flag.Parse()
	if *name == "" {
		*name = *listen
	}
	body := []byte("hello from " + *name + "\n")
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Backend", *name)
		w.Write(body)
	})
	fmt.Printf("demo-backend %s listening on %s\n", *name, *listen)
	srv := &http.Server{Addr: *listen, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.ListenAndServe())
}
