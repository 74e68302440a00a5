// Package tcpproxy proxies TCP sessions: one endpoint is chosen per client
// connection and bytes flow both ways, with half-close, until both sides end.
//
// Both directions are copied between the raw sockets. On Linux (see
// copy_linux.go) small exchanges go through a pooled buffer, taken only
// while bytes are in hand, and a direction that moves a lot switches to
// splice(2), where the bytes never enter user space, if splicing pays
// (splice.Pays: by default, for bytes from a peer on another host). An
// endpoint that speaks TLS (its cluster's tls) cannot be spliced: its
// bytes are copied through a buffer, encrypted on the way.
//
// A listener whose rules route on the client's TLS server name (TLS
// passthrough) first reads the client's ClientHello, at most
// Config.Inspect long, and gives what it says to the Director (Attempt.TLS,
// Attempt.SNI); the bytes read go to the endpoint first, then the rest is
// spliced. Other listeners pick before reading anything.
//
// When connecting to the picked endpoint fails, the session picks again and
// tries another endpoint, Config.Retries times at most (HAProxy's "retries"
// with "option redispatch"); no byte of the client was forwarded yet. Then
// the client connection is closed.
//
// A Server knows its live sessions by endpoint, so that a TCP listener's
// rebalance can count them and close the oldest idle ones of an endpoint
// that holds more than its share (CloseIdle).
package tcpproxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/sluice-lb/sluice/dataplane/conntrack"
	"github.com/sluice-lb/sluice/dataplane/internal/pace"
	"github.com/sluice-lb/sluice/dataplane/meter"
	"github.com/sluice-lb/sluice/dataplane/proxyproto"
	"github.com/sluice-lb/sluice/dataplane/tlsinspect"
	"github.com/sluice-lb/sluice/dataplane/upstream"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// Director chooses the endpoint of each session. Pick runs once per
// connection attempt on the accept path and must not block but for a wait
// that ends when a.Context() does (the node's cluster queue). On success
// the endpoint has been Acquire()d; the proxy calls Release once, also
// when connecting to it fails.
//
// a tells which endpoints the session already failed to connect to (or that
// were retired under it): none on the first attempt. A Director should
// pick around them while it has others, since a hash policy would pick the
// same dead endpoint again, and ignore a stick-table entry that names one
// (redispatch breaks persistence). a is valid only during the call.
type Director interface {
	Pick(client net.Addr, a *Attempt) (ep *upstream.Endpoint, connectTimeout time.Duration, err error)
}

// Attempt is what a Director learns about the session beyond the
// client's address: what its first bytes said, when the listener inspects
// them, and its earlier connection attempts.
type Attempt struct {
	hello  tlsinspect.Hello
	failed upstream.Failures
	ctx    context.Context // the server's
	// routed and routedName: RoutedTo.
	routed     *meter.Cluster
	routedName string
	rule       string // DecidedBy
}

// RoutedTo tells the proxy the cluster the session goes to, by its meter
// and name, before the Director looks for one of its endpoints: a session
// it then finds none for is still the cluster's, counted in its meter and
// named in its records.
func (a *Attempt) RoutedTo(m *meter.Cluster, name string) {
	if a != nil {
		a.routed, a.routedName = m, name
	}
}

// DecidedBy tells the proxy the name of the rule that decided where the
// session goes, or that denied it, for its access log line. Forgotten
// before the next Pick.
func (a *Attempt) DecidedBy(rule string) {
	if a != nil {
		a.rule = rule
	}
}

// Context ends when the listener closes (Server.MarkClosing): a
// Director that waits for an endpoint (a cluster's queue) gives up then.
// It never ends for a nil *Attempt, or one made outside a server.
func (a *Attempt) Context() context.Context {
	if a == nil || a.ctx == nil {
		return context.Background()
	}
	return a.ctx
}

// TLS reports whether the client began with a TLS ClientHello; false when
// the listener does not inspect (Config.Inspect 0).
func (a *Attempt) TLS() bool { return a != nil && a.hello.TLS }

// SNI is the server name of the client's ClientHello; empty without one,
// or when the listener does not inspect. It is valid only during Pick.
func (a *Attempt) SNI() []byte {
	if a == nil {
		return nil
	}
	return a.hello.SNI
}

// ErrDenied is what a Director returns for a connection that a rule
// denies: it is closed at once, recorded with CLOSE_REASON_DENIED.
var ErrDenied = errors.New("tcpproxy: connection denied by a rule")

// Failed reports whether connecting to ep already failed for this session
// (or an apply retired ep after it was picked). It is false on the first
// attempt, and on a nil *Attempt.
func (a *Attempt) Failed(ep *upstream.Endpoint) bool {
	return a != nil && a.failed.Has(ep)
}

// Again reports whether the Director's Pick is one again for this session,
// after connecting to the endpoint it picked before failed or an apply
// retired it: what counts connections has counted it already.
func (a *Attempt) Again() bool { return a != nil && len(a.failed) > 0 }

// FailedExactly reports whether ep itself failed for this session, not
// only an endpoint for the same server that an apply has since made anew
// (upstream.Failures.HasExactly).
func (a *Attempt) FailedExactly(ep *upstream.Endpoint) bool {
	return a != nil && a.failed.HasExactly(ep)
}

// DefaultRetries is the retry count a caller should put in Config.Retries
// when its own configuration leaves it unset (HAProxy's default "retries
// 3"). The zero Config does not retry.
const DefaultRetries = 3

// maxRepicks bounds how often one session picks again because its endpoint
// was retired under it; those picks are not retries.
const maxRepicks = 3

// Config is one listener's settings. It is replaced whole by SetConfig.
type Config struct {
	Listener string
	Director Director
	// Retries is how many more times a session picks an endpoint and
	// connects when connecting fails (refused, connect timeout,
	// unreachable), before the client connection is closed; 0 or less: no
	// retry. Each retry is a new Pick from the configuration current then,
	// counted in ConnInfo.Retries. A pick again because an apply retired
	// the picked endpoint is not a retry and does not use this budget.
	Retries int
	// Inspect, when above 0, has each session read the client's first
	// bytes before the pick, for as long as they may be the start of a
	// TLS ClientHello and at most this long, so that the Director can
	// route on them (Attempt.TLS, Attempt.SNI). 0: the pick comes first
	// and reads nothing.
	Inspect time.Duration
	// Meter counts the listener's sessions and hands them to the access
	// log (meter.Listener); nil: not counted.
	Meter *meter.Listener
	// IdleTimeout closes a session that carried no byte either way for
	// this long, live sessions included (see timeout.go); 0: never. The
	// zero Config has none; DefaultIdleTimeout is a listener's default.
	IdleTimeout time.Duration
}

// DefaultIdleTimeout is the idle timeout a caller should put in
// Config.IdleTimeout when its own configuration leaves it unset (Envoy's
// tcp_proxy default, and HTTP tunnels' here).
const DefaultIdleTimeout = time.Hour

// Server serves the sessions of one TCP listener.
type Server struct {
	cfg      atomic.Pointer[Config]
	onClose  func(*conntrack.ConnInfo)
	closing  atomic.Bool
	sessions registry  // live sessions, for Sessions, CloseIdle and MarkClosing
	setups   pace.Gate // sessions setting up, for Go
	// ctx ends on MarkClosing (cancel, with upstream.ErrListenerClosed):
	// the dials of sessions setting up, and their waits in a Director
	// (Attempt.Context), end with it.
	ctx    context.Context
	cancel context.CancelCauseFunc
	// parkAfter is how long a busy direction waits for bytes on its
	// goroutine before it parks (copy_linux.go).
	parkAfter time.Duration
	idle      idleTimeouts
	// settle is the sessions whose bytes moved since the last settleAll,
	// which it runs within meter.SettleEvery of their moving, until
	// MarkClosing.
	settle settleList
}

// NewServer returns a server that reports each ended session to onClose,
// which must not block.
func NewServer(cfg *Config, onClose func(*conntrack.ConnInfo)) *Server {
	s := &Server{onClose: onClose, parkAfter: parkAfter}
	s.ctx, s.cancel = context.WithCancelCause(context.Background())
	s.idle.timer = time.AfterFunc(time.Hour, s.scanIdle)
	s.idle.timer.Stop()
	s.settle.init(s.settleAll)
	s.SetConfig(cfg)
	return s
}

// SetConfig replaces the configuration for sessions accepted from now on;
// its IdleTimeout holds for the live sessions too.
func (s *Server) SetConfig(cfg *Config) {
	s.cfg.Store(cfg)
	s.rearmIdle(cfg.IdleTimeout)
}

// MarkClosing tells the server its listener is closing (removed, once
// its drain ended, or the node stopping): sessions that end from now on
// are recorded as closed by the listener, and the live ones are ended, as
// are the connects of those setting up and their waits in the Director.
// (The listener closes its client connections too, but a session whose
// directions are parked would learn of that only at the next sweep; see
// poller.)
func (s *Server) MarkClosing() {
	s.closing.Store(true)
	s.idle.timer.Stop()
	s.settle.stop()
	s.cancel(upstream.ErrListenerClosed)
	s.sessions.closeAll()
}

// ServeConn proxies one client connection until both directions end. It
// blocks; closing client from another goroutine ends it.
func (s *Server) ServeConn(client *net.TCPConn) {
	peer, _ := proxyproto.Addrs(client)
	s.ServeConnFrom(client, peer, netip.AddrPort{})
}

// ServeConnFrom is ServeConn for a connection on behalf of from, the
// client a PROXY header named, to to, the destination it named (zero:
// the connection's local address): rules, balancing and the record see
// from instead of the connection's peer, and a PROXY header sent to the
// endpoint names both. Nothing may have been read from client but that
// header, which must be consumed (proxyproto.Take).
func (s *Server) ServeConnFrom(client *net.TCPConn, from, to netip.AddrPort) {
	done := make(chan struct{})
	s.ServeConnAsync(client, from, to, func() { close(done) })
	<-done
}

// ServeConnAsync is ServeConnFrom without the wait: it returns once the
// session is set up (its endpoint connected) and runs without the calling
// goroutine, and calls done exactly once when the session has ended and
// client is closed, from whichever goroutine ended it. done must not
// block.
func (s *Server) ServeConnAsync(client *net.TCPConn, from, to netip.AddrPort, done func()) {
	cfg := s.cfg.Load()
	info := conntrack.ConnInfo{Listener: cfg.Listener, Start: time.Now()}
	mx := meter.Exchange{Client: from}
	if m := cfg.Meter; m != nil {
		m.Opened()
		mx.Logged = m.Sample()
	}
	// Until the session runs, ending here (or a panic) ends the connection.
	var ss *session
	defer func() {
		if ss == nil {
			s.ended(cfg, client, &info, mx)
			done()
		}
	}()

	a := Attempt{ctx: s.ctx}
	var insp *inspectBuf // held until the bytes it read went on
	var first []byte     // what inspecting read of the client's bytes
	if cfg.Inspect > 0 {
		insp = getInspectBuf()
		first, a.hello = inspect(client, insp, cfg.Inspect)
	}
	addr := client.RemoteAddr()
	peer, local := proxyproto.Addrs(client)
	if peer != from {
		addr = net.TCPAddrFromAddrPort(from)
	}
	if to.IsValid() {
		local = to
	}
	ep, backend, err := s.connect(cfg, addr, from, local, &a, &info, &mx)
	a.hello.SNI = nil // it pointed into insp
	if backend == nil {
		putInspectBuf(insp)
		info.Reason = sluicev1.CloseReason_CLOSE_REASON_NO_ENDPOINT
		if errors.Is(err, ErrDenied) {
			info.Reason = sluicev1.CloseReason_CLOSE_REASON_DENIED
		}
		if a.routed != nil && mx.Cluster == nil {
			mx.Cluster, info.Cluster = a.routed, a.routedName
		}
		return
	}
	info.Cluster, info.Endpoint = ep.Cluster, ep.Name
	if len(first) > 0 {
		n, err := backend.Write(first)
		info.BytesIn = uint64(n)
		if err != nil {
			putInspectBuf(insp)
			ep.Transferred(0, uint64(n))
			if m := cfg.Meter; m != nil {
				m.Transferred(uint64(n), 0)
			}
			ep.Close(backend)
			ep.Release()
			mx.Cluster = ep.Meter()
			info.Reason = sluicev1.CloseReason_CLOSE_REASON_IO_ERROR
			return
		}
	}
	putInspectBuf(insp)

	ss = &session{
		srv: s, cfg: cfg, client: client, backend: backend, raw: upstream.TCPConn(backend), ep: ep, done: done,
		info: info, from: from, connect: mx.Connect, logged: mx.Logged, rule: mx.Rule,
	}
	ss.clientRC, _ = client.SyscallConn()
	ss.rawRC, _ = ss.raw.SyscallConn()
	ss.list = s.sessions.add(ep, ss)
	if len(first) > 0 { // what inspecting read went first
		ss.bytes.Up.Add(int64(info.BytesIn))
		ss.lastMoved.Store(movedUp)
		ss.moved()
	}
	ss.start()
}

// ended closes client and records its end: in the meters, the access log
// and through onClose. mx.Client is the client the record names. A client
// may see its session end a moment before it is counted, as an HTTP
// client may read its response before the exchange is counted: a session
// is counted once both halves stopped, with their bytes, and it shuts or
// closes the client's socket before that (the endpoint's end, abort). A
// connection that ends before its session runs (denied, no endpoint, none
// answered) is counted before its client is closed.
func (s *Server) ended(cfg *Config, client *net.TCPConn, info *conntrack.ConnInfo, mx meter.Exchange) {
	info.Client = mx.Client.String()
	info.Duration = time.Since(info.Start)
	if s.closing.Load() {
		info.Reason = sluicev1.CloseReason_CLOSE_REASON_LISTENER_CLOSED
	}
	if m := cfg.Meter; m != nil {
		// Counted before it stops counting as open, as HTTP exchanges
		// are: a scrape that sees no connection open sees them all.
		meterSession(m, info, &mx)
		m.Closed()
	}
	client.Close()
	if s.onClose != nil {
		s.onClose(info)
	}
}

// connect picks endpoints and dials them until one answers or the retries
// run out; a tells the Director what the client's first bytes said. On
// failure it returns the Director's error, if that is why. Each attempt
// picks from the configuration current at that moment, so an endpoint that
// an apply retired (ErrClosed) is replaced by one of the new snapshot; the
// retry budget is the cluster's of the endpoint that failed last
// (Endpoint.Retries), or cfg's when it has none. info.Retries counts the
// retries that got an endpoint to try.
//
// An endpoint that takes PROXY headers gets one saying that from connected
// to local.
//
// mx gets the time the successful connect took.
func (s *Server) connect(cfg *Config, client net.Addr, from, local netip.AddrPort, a *Attempt, info *conntrack.ConnInfo, mx *meter.Exchange) (*upstream.Endpoint, net.Conn, error) {
	var hb [proxyproto.MaxV1]byte
	failures, repicks := 0, 0 // connects that failed and were retried; retired picks
	retry := false            // this pick follows a failed connect
	for {
		if cfg.Director == nil {
			return nil, nil, nil
		}
		a.rule = ""
		ep, timeout, err := cfg.Director.Pick(client, a)
		mx.Rule, info.Rule = a.rule, a.rule
		if err != nil || ep == nil {
			return nil, nil, err
		}
		if retry {
			info.Retries++
		}
		start := time.Now()
		c, err := ep.DialWithHeader(s.ctx, timeout, true, ep.AppendProxyHeader(hb[:0], from, local))
		if err == nil {
			mx.Connect = time.Since(start)
			return ep, c, nil
		}
		ep.Release()
		switch retired := errors.Is(err, upstream.ErrClosed); {
		case s.closing.Load(): // MarkClosing ended the connect
			return nil, nil, nil
		case retired && repicks < maxRepicks:
			repicks++
			retry = false
		case !retired && failures < ep.Retries(cfg.Retries): // as many as ep's cluster asks
			failures++
			retry = true
		default:
			return nil, nil, nil
		}
		a.failed = append(a.failed, ep)
		cfg = s.cfg.Load()
	}
}

// Go runs f, which sets up a new session of this server (ServeConnAsync,
// after whatever the caller reads first), on a new goroutine; the accept
// loop calls it, and it paces the loop while many sessions are setting up
// (see package pace). f should return once the session runs;
// ServeConnAsync does.
func (s *Server) Go(f func()) { s.setups.Go(func(func()) { f() }) }
