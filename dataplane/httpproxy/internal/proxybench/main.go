// Command proxybench runs the httpproxy engine alone in front of fixed
// backends, for load tests with wrk and the idle-memory measurement of
// ../shared/bench/peers.sh (run it with GOMAXPROCS=1 to compare with
// single-threaded peers):
//
//	GOMAXPROCS=1 go run ./dataplane/httpproxy/internal/proxybench \
//	    -listen 127.0.0.1:19310 -backends 127.0.0.1:19301,127.0.0.1:19302
package main

import (
	"flag"
	"log"
	"net"
	"net/http"
	_ "net/http/pprof"
	"net/netip"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sluice-lb/sluice/dataplane/httpproxy"
	"github.com/sluice-lb/sluice/dataplane/upstream"
)

// roundRobin picks the endpoints in turn.
type roundRobin struct {
	eps []*upstream.Endpoint
	n   atomic.Uint64
}

func (d *roundRobin) Pick(*httpproxy.Request) (*upstream.Endpoint, time.Duration, error) {
	ep := d.eps[(d.n.Add(1)-1)%uint64(len(d.eps))]
	ep.Acquire()
	return ep, time.Second, nil
}

func main() {
	listen := flag.String("listen", "127.0.0.1:19310", "address to serve on")
	backends := flag.String("backends", "127.0.0.1:19301,127.0.0.1:19302", "comma-separated backend addresses")
	pprofAddr := flag.String("pprof", "", "serve net/http/pprof on this address (off the proxy's hot path)")
	memProfileRate := flag.Int("memprofilerate", 0, "runtime.MemProfileRate (1 records every allocation), 0 keeps the default")
	flag.Parse()
	if *memProfileRate > 0 {
		runtime.MemProfileRate = *memProfileRate
	}
	if *pprofAddr != "" {
		go func() { log.Println(http.ListenAndServe(*pprofAddr, nil)) }()
	}

	d := &roundRobin{}
	for i, addr := range strings.Split(*backends, ",") {
		d.eps = append(d.eps, upstream.New("bench", "b"+string(rune('1'+i)), addr))
	}
	srv := httpproxy.NewServer(&httpproxy.Config{Listener: "bench", Director: d}, nil)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("proxybench: %s -> %s", ln.Addr(), *backends)
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		// As the node serves a listener: paced while many connections
		// set up, and idle ones parked.
		srv.Go(func(setUp func()) {
			srv.ServeConnAsync(c, c.RemoteAddr().(*net.TCPAddr).AddrPort(), netip.AddrPort{}, setUp, nil)
		})
	}
}
