// Command proxybench runs the tcpproxy engine alone in front of fixed
// backends, for load tests with wrk, profiles, and the idle-memory
// measurement of ../shared/bench/peers.sh (run it with GOMAXPROCS=1 to compare
// with single-threaded peers):
//
//	GOMAXPROCS=1 go run ./dataplane/tcpproxy/internal/proxybench \
//	    -listen 127.0.0.1:19311 -backends 127.0.0.1:19101,127.0.0.1:19102 -pprof 127.0.0.1:19312
//
// With -pprof it also serves /debug/vars (expvar: the runtime's memory
// statistics and the number of goroutines).
package main

import (
	"expvar"
	"flag"
	"log"
	"net"
	"net/http"
	_ "net/http/pprof"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sluice-lb/sluice/dataplane/tcpproxy"
	"github.com/sluice-lb/sluice/dataplane/upstream"
)

// roundRobin picks the endpoints in turn.
type roundRobin struct {
	eps []*upstream.Endpoint
	n   atomic.Uint64
}

func (d *roundRobin) Pick(net.Addr, *tcpproxy.Attempt) (*upstream.Endpoint, time.Duration, error) {
	ep := d.eps[(d.n.Add(1)-1)%uint64(len(d.eps))]
	ep.Acquire()
	return ep, time.Second, nil
}

func main() {
	listen := flag.String("listen", "127.0.0.1:19311", "address to serve on")
	backends := flag.String("backends", "127.0.0.1:19101,127.0.0.1:19102", "comma-separated backend addresses")
	pprofAddr := flag.String("pprof", "", "serve net/http/pprof and expvar on this address (off the proxy's hot path)")
	flag.Parse()
	if *pprofAddr != "" {
		expvar.Publish("goroutines", expvar.Func(func() any { return runtime.NumGoroutine() }))
		go func() { log.Println(http.ListenAndServe(*pprofAddr, nil)) }()
	}

	d := &roundRobin{}
	for i, addr := range strings.Split(*backends, ",") {
		d.eps = append(d.eps, upstream.New("bench", "b"+strconv.Itoa(i+1), addr))
	}
	srv := tcpproxy.NewServer(&tcpproxy.Config{Listener: "bench", Director: d}, nil)
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
		srv.Go(func() {
			srv.ServeConnAsync(c.(*net.TCPConn), c.RemoteAddr().(*net.TCPAddr).AddrPort(), netip.AddrPort{}, func() {})
		})
	}
}
