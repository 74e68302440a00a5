// Command netpollorder is the smallest case of what scripts/netpoll-fifo.sh
// changes in the Go runtime, for the Go project: a proxy with one goroutine
// per connection that reads a request, sends it to its own backend
// connection, reads the answer and sends it back. At GOMAXPROCS=1, under a
// closed loop of clients, its tail latency depends on the order in which
// the runtime runs the goroutines one network poll readied.
//
// The backend is the same program with -serve: it answers every read with
// the same answer, which the proxy reads by its length, so neither parses
// anything. Built both ways, the proxy is run in turn in front of the same
// backend:
//
//	go build -o /tmp/stock ./bench/netpollorder
//	make overlay && go build -overlay bin/_overlay/overlay.json -o /tmp/fifo ./bench/netpollorder
//	GOMAXPROCS=1 /tmp/stock -serve 127.0.0.1:18081 &
//	GOMAXPROCS=1 /tmp/stock -listen 127.0.0.1:18080 -backend 127.0.0.1:18081 &   # then /tmp/fifo
//	wrk -t1 -c50 -d5s --latency http://127.0.0.1:18080/
//
// Each read of wrk's must hold one whole request, as a request of wrk's
// does. BENCHMARKS.md ("p99") has what it measured.
package main

import (
	"flag"
	"io"
	"log"
	"net"
)

// answer is what the backend sends for every request.
var answer = []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

func main() {
	listen := flag.String("listen", "127.0.0.1:18080", "address the proxy listens on")
	backend := flag.String("backend", "127.0.0.1:18081", "the backend's address")
	serve := flag.String("serve", "", "be the backend, on this address")
	flag.Parse()
	addr, handle := *listen, func(c net.Conn) { proxy(c, *backend) }
	if *serve != "" {
		addr, handle = *serve, respond
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go handle(c)
	}
}

// respond answers every read of c with answer.
func respond(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := c.Read(buf); err != nil {
			return
		}
		if _, err := c.Write(answer); err != nil {
			return
		}
	}
}

// proxy relays c's requests to a connection of its own to backend, one
// exchange at a time.
func proxy(c net.Conn, backend string) {
	defer c.Close()
	b, err := net.Dial("tcp", backend)
	if err != nil {
		return
	}
	defer b.Close()
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		if _, err := b.Write(buf[:n]); err != nil {
			return
		}
		if _, err := io.ReadFull(b, buf[:len(answer)]); err != nil {
			return
		}
		if _, err := c.Write(buf[:len(answer)]); err != nil {
			return
		}
	}
}
