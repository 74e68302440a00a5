package node

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-lb/sluice/dataplane/conntrack"
	"github.com/sluice-lb/sluice/dataplane/h2proxy"
	"github.com/sluice-lb/sluice/dataplane/httpproxy"
	"github.com/sluice-lb/sluice/dataplane/meter"
	"github.com/sluice-lb/sluice/dataplane/proxyproto"
	"github.com/sluice-lb/sluice/dataplane/tcpproxy"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"github.com/sluice-lb/sluice/snapshot"
)

// listener is a bound socket. It outlives snapshots as long as its address
// stays the same: an apply swaps only the config of its proxy, so the
// socket and open connections are untouched. A change of protocol on the
// same address starts a new generation on the same socket, which takes the
// new connections, and ends those of the old one, which speak the old
// protocol, as the listener's removal would (Node.endGeneration).
type listener struct {
	address string
	name    string // as the snapshot applied last names it; guarded by Node.mu
	ln      *net.TCPListener
	gen     atomic.Pointer[generation]
	done    chan struct{}
	log     *slog.Logger
	rb      *rebalancer       // TCP rebalance, when on; set by Apply only
	up      *h2proxy.Upstream // the node's HTTP/2 engine's endpoint connections
	// accept reads PROXY headers in front of new connections; nil: none
	// are read. Set by Apply.
	accept atomic.Pointer[proxyAccept]
	// keepAlive is the TCP keep-alive of new connections (tcp_keepalive);
	// nil: none. Set by Apply.
	keepAlive atomic.Pointer[net.KeepAliveConfig]
	// gate holds the accept loop at max_connections (set by Apply), and
	// node at the node's cap over all listeners (nil: none).
	gate connGate
	node *connGate
	// quit is closed by stopAccepting: it ends a wait for a slot.
	quit     chan struct{}
	quitOnce sync.Once
}

// generation is a listener's proxy for one protocol and the connections it
// serves.
type generation struct {
	protocol sluicev1.Protocol
	address  string // its listener's
	// name and meter are its listener's, as the snapshot that configured
	// it last named it; graceEnds is set once no listener serves new
	// connections with it (Node.endGeneration). Guarded by Node.mu.
	name      string
	meter     *meter.Listener
	graceEnds time.Time
	conns     conntrack.Set
	http      *httpproxy.Server // set for HTTP
	h2        *h2proxy.Server   // set for HTTP: its HTTP/2 connections
	tcp       *tcpproxy.Server  // set for TCP
}

// bind opens the listener's socket, with SO_REUSEPORT (reusePort). Its
// connections get no TCP keep-alive probes (Go's default would probe every
// 15s, and cost four system calls per connection) but those the listener's
// tcp_keepalive asks for.
func bind(address string) (*net.TCPListener, error) {
	lc := net.ListenConfig{KeepAlive: -1, Control: reusePort}
	ln, err := lc.Listen(context.Background(), "tcp", address)
	if err != nil {
		return nil, err
	}
	return ln.(*net.TCPListener), nil
}

// configure gives the listener its config for snapshot ls: http for an
// HTTP listener (from httpConfig), else a TCP config that routes as rt
// says. It returns the generation that ls replaced, if the protocol
// changed, for the caller to retire once every listener is configured.
// A TCP listener's rebalance works on the sessions to its default cluster.
func (l *listener) configure(ls *sluicev1.Listener, rt *routing, http *httpproxy.Config, m *meter.Listener, onConn func(*conntrack.ConnInfo)) (replaced *generation) {
	l.setRebalance(ls, rt.def)
	l.name = ls.GetName()
	cur := l.gen.Load()
	if cur != nil && cur.protocol != ls.GetProtocol() {
		replaced, cur = cur, nil
	}
	switch ls.GetProtocol() {
	case sluicev1.Protocol_PROTOCOL_HTTP:
		h2 := h2Config(ls)
		if cur != nil {
			cur.name, cur.meter = ls.GetName(), m
			cur.http.SetConfig(http)
			cur.h2.SetConfig(h2)
			return nil
		}
		g := &generation{protocol: ls.GetProtocol(), address: l.address, name: ls.GetName(), meter: m, http: httpproxy.NewServer(http, onConn)}
		g.h2 = h2proxy.NewServer(g.http, l.up, h2)
		g.http.SetHTTP2(g.h2)
		l.gen.Store(g)
	case sluicev1.Protocol_PROTOCOL_TCP:
		cfg := &tcpproxy.Config{
			Listener:    ls.GetName(),
			Director:    rt.tcpDirector(),
			Retries:     rt.def.retries(), // each endpoint carries its own cluster's (SetRetries)
			Inspect:     rt.inspectTimeout(ls),
			Meter:       m,
			IdleTimeout: durationOr(ls.GetTcp().GetIdleTimeout().AsDuration(), tcpproxy.DefaultIdleTimeout),
		}
		if cur != nil {
			cur.name, cur.meter = ls.GetName(), m
			cur.tcp.SetConfig(cfg)
			return nil
		}
		l.gen.Store(&generation{protocol: ls.GetProtocol(), address: l.address, name: ls.GetName(), meter: m, tcp: tcpproxy.NewServer(cfg, onConn)})
	}
	return replaced
}

// httpConfig is the proxy configuration of HTTP listener ls routing as rt
// says. Apply checks it with Validate before it binds anything: the proxy
// would quietly leave out what it cannot use.
func httpConfig(ls *sluicev1.Listener, rt *routing) *httpproxy.Config {
	h := ls.GetHttp()
	cfg := &httpproxy.Config{
		Listener:                 ls.GetName(),
		Director:                 rt.httpDirector(),
		RequestHeaderTimeout:     h.GetRequestHeaderTimeout().AsDuration(),
		IdleTimeout:              h.GetIdleTimeout().AsDuration(),
		ResponseTimeout:          h.GetResponseTimeout().AsDuration(),
		MaxConnectionAge:         h.GetMaxConnectionAge().AsDuration(),
		MaxRequestsPerConnection: int(h.GetMaxRequestsPerConnection()),
		Retries:                  rt.def.retries(), // each endpoint carries its own cluster's (SetRetries)
		MaxHeaderBytes:           int(h.GetMaxHeaderBytes()),
		MaxHeaderCount:           int(h.GetMaxHeaderCount()),
		MaxURILength:             int(h.GetMaxUriLength()),
		NormalizePath:            h.GetNormalizePath(),
		MergeSlashes:             h.GetMergeSlashes(),
		MaxRequestBodyBytes:      int64(min(h.GetMaxRequestBodyBytes(), math.MaxInt64)),
		TunnelIdleTimeout:        h.GetTunnelIdleTimeout().AsDuration(),
		H2C:                      snapshot.H2C(ls),
		Translate:                rt.http2(),
	}
	forwardingConfig(h.GetForwarding(), cfg)
	if id := h.GetRequestId(); id != nil {
		cfg.RequestID = cmp.Or(id.GetHeader(), DefaultRequestIDHeader)
		cfg.RequestIDInResponse = id.GetInResponse()
	}
	if pages := h.GetErrorPages(); len(pages) > 0 {
		cfg.ErrorPages = make(map[int]httpproxy.ErrorPage, len(pages))
		for _, p := range pages {
			cfg.ErrorPages[int(p.GetStatus())] = httpproxy.ErrorPage{
				ContentType:  p.GetContentType(),
				Body:         []byte(p.GetBody()),
				Redirect:     p.GetRedirect(),
				RedirectCode: int(p.GetRedirectCode()),
			}
		}
	}
	return cfg
}

// serve accepts connections until the socket is closed (stopAccepting),
// no more at once than max_connections and the node's cap allow.
//
// The listener's slot is taken before the accept, so that at its cap new
// connections wait in the kernel's accept queue. The node's is taken after
// it: the node's slots are shared by every listener, and a loop whose
// accept waits for a client must not hold one that a connection to
// another listener waits for. At the node's cap, each listener's loop so
// holds at most one accepted connection, unserved and unread as it would
// be in the queue, until a slot frees.
func (l *listener) serve() {
	defer close(l.done)
	var backoff time.Duration
	for {
		if !l.gate.enter(l.quit, l.listenerFull) {
			return
		}
		c, err := l.ln.AcceptTCP()
		if err != nil {
			l.gate.leave()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors or similar: wait and retry
			// rather than spin or give up the socket.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.log.Warn("accept failed", "address", l.address, "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if l.node != nil && !l.node.enter(l.quit, l.nodeFull) {
			c.Close()
			l.gate.leave()
			return
		}
		l.dispatch(c)
	}
}

// leave gives back the slots serve took for a connection.
func (l *listener) leave() {
	l.gate.leave()
	if l.node != nil {
		l.node.leave()
	}
}

// listenerFull and nodeFull warn, at most once a minute for each gate,
// that the gate holds the accept loop and new connections wait in the
// kernel's accept queue.
func (l *listener) listenerFull(max int, times uint64) {
	l.log.Warn("listener at max_connections; new connections wait in the kernel's accept queue",
		"address", l.address, "max_connections", max, "times_full", times)
}

func (l *listener) nodeFull(max int, times uint64) {
	l.log.Warn("node at --max-connections; new connections wait in the kernel's accept queue",
		"address", l.address, "max_connections", max, "times_full", times)
}

// dispatch hands c to the current generation. A generation retired between
// the load and the add refuses c; the next load sees its successor.
func (l *listener) dispatch(c *net.TCPConn) {
	for {
		g := l.gen.Load()
		if g.conns.Add(c) {
			pa, ka := l.accept.Load(), l.keepAlive.Load()
			ended := func() {
				g.conns.Remove(c)
				l.leave()
			}
			// Paced while many connections set up: a burst waits in
			// the kernel's accept queue, not as goroutines.
			if g.tcp != nil {
				g.tcp.Go(func() { g.handle(c, pa, ka, nil, ended, l.log) })
			} else {
				g.http.Go(func(setUp func()) { g.handle(c, pa, ka, setUp, ended, l.log) })
			}
			return
		}
		if l.gen.Load() == g {
			c.Close() // the whole listener is closing
			l.leave()
			return
		}
	}
}

// handle serves c, on behalf of the client its PROXY header names when pa
// (the listener's proxy_protocol) is set, with the keep-alive probes ka
// asks for (nil: none); setUp is the HTTP server's Go's (nil for a TCP
// listener). ended runs once c has ended: it leaves the generation's set
// and gives back its slots of the listener's and the node's gates.
//
// A connection may outlive this goroutine: an HTTP one idle between
// requests, a TCP session whose directions wait for bytes, park without
// one (httpproxy.Server.ServeConnAsync, tcpproxy.Server.ServeConnAsync),
// and it leaves the generation's set when it ends, on whichever goroutine
// ends it.
func (g *generation) handle(c *net.TCPConn, pa *proxyAccept, ka *net.KeepAliveConfig, setUp, ended func(), log *slog.Logger) {
	remove := true
	defer func() {
		// A panic is a bug, but one connection must not take the node
		// down: log it with its stack and close only this connection.
		if p := recover(); p != nil {
			log.Error("panic serving a connection; closing it", "client", c.RemoteAddr().String(), "panic", p, "stack", string(debug.Stack()))
			c.Close()
		}
		if remove {
			ended()
		}
	}()
	if ka != nil {
		c.SetKeepAliveConfig(*ka) // a socket that refuses is served without
	}
	client, _ := proxyproto.Addrs(c)
	var dest netip.AddrPort // zero: c's local address
	if pa != nil {
		var ok bool
		if client, dest, ok = pa.client(c); !ok {
			return
		}
	}
	remove = false
	if g.http != nil {
		g.http.ServeConnAsync(c, client, dest, setUp, ended)
	} else {
		g.tcp.ServeConnAsync(c, client, dest, ended)
	}
}

// retire closes every connection of the generation. Parked HTTP
// connections are ended by their server first, so that they are recorded
// as closed.
func (g *generation) retire() {
	if g.tcp != nil {
		g.tcp.MarkClosing()
	}
	if g.http != nil {
		g.http.Close()
	}
	g.conns.CloseAll()
}

// stopAccepting closes the socket and waits for the accept loop to end,
// also when it waits for a slot of the listener's gate or the node's.
func (l *listener) stopAccepting() {
	l.quitOnce.Do(func() { close(l.quit) })
	l.ln.Close()
	<-l.done
}

// close stops accepting, closes every open connection and waits for the
// accept loop to end.
func (l *listener) close() {
	l.stopAccepting()
	l.gen.Load().retire()
}

// keepAliveConfig is the socket setting of keep-alive probes ka asks for (a
// listener's or a cluster's tcp_keepalive); nil for none. Fields ka
// leaves unset keep the system's settings.
func keepAliveConfig(ka *sluicev1.TcpKeepalive) *net.KeepAliveConfig {
	if ka == nil {
		return nil
	}
	cfg := &net.KeepAliveConfig{Enable: true, Idle: -1, Interval: -1, Count: -1}
	if d := ka.GetIdle(); d != nil {
		cfg.Idle = d.AsDuration()
	}
	if d := ka.GetInterval(); d != nil {
		cfg.Interval = d.AsDuration()
	}
	if n := ka.GetProbes(); n > 0 {
		cfg.Count = int(n)
	}
	return cfg
}
