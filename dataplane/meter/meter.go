// Package meter holds a node's counters per listener and per cluster: the
// numbers Prometheus scrapes from the node's /metrics and the access log
// is written from.
//
// Everything on the request path is an atomic add on memory the meter owns:
// no lock, no allocation, no map lookup. The proxies fill one Exchange per
// HTTP request or TCP session and hand it to Listener.Done when it ends.
//
// A meter outlives snapshots: the node gives a listener or cluster that an
// apply keeps (same name) the meter it had, and a new name a new meter, so
// counters survive applies and restart from zero for what is new.
package meter

import (
	"net/netip"
	"sync/atomic"
	"time"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// Class is the class of an HTTP status as metrics label it.
type Class uint8

// The status classes, and Other for a request that got no response.
const (
	Class1xx Class = iota
	Class2xx
	Class3xx
	Class4xx
	Class5xx
	ClassOther
	NumClasses
)

var classNames = [NumClasses]string{"1xx", "2xx", "3xx", "4xx", "5xx", "other"}

// String is the class's label value: "2xx", …, "other".
func (c Class) String() string { return classNames[c] }

// ClassOf is the class of status; 0 (no response) and anything outside
// 100–599 are Other.
func ClassOf(status int) Class {
	if status < 100 || status > 599 {
		return ClassOther
	}
	return Class(status/100 - 1)
}

// Latency is the three durations of an exchange, as histograms.
type Latency struct {
	// Connect is the time to open a new connection to an endpoint (TCP
	// connect, PROXY header, TLS handshake); exchanges on a pooled
	// connection observe nothing here.
	Connect Histogram
	// FirstByte runs from the request sent to the endpoint to its
	// response head read (HTTP); TCP sessions observe nothing here.
	FirstByte Histogram
	// Total is the whole request, from its head read to its response
	// sent, or the whole TCP session.
	Total Histogram
}

func (l *Latency) observe(x *Exchange) {
	if x.Connect > 0 {
		l.Connect.Observe(x.Connect)
	}
	if x.FirstByte > 0 {
		l.FirstByte.Observe(x.FirstByte)
	}
	l.Total.Observe(x.Total)
}

// Listener counts what one listener served.
type Listener struct {
	name string
	log  Log

	active            atomic.Int64
	conns             atomic.Uint64
	requests          [NumClasses]atomic.Uint64
	bytesIn, bytesOut atomic.Uint64
	full              atomic.Uint64 // see FullCount
	Latency
}

// Log receives the exchanges of the listeners it is given to that it
// sampled, on the exchange's goroutine: neither method may block, and Log
// must copy what it keeps.
type Log interface {
	// Sample decides, as an exchange begins, whether it is logged.
	Sample() bool
	// Log takes x, an exchange of the listener named listener that
	// Sample chose.
	Log(listener string, x *Exchange)
}

// NewListener returns the meter of the listener name; every exchange it
// counts goes to log as well, unless log is nil.
func NewListener(name string, log Log) *Listener {
	return &Listener{name: name, log: log}
}

// Name is the listener's name.
func (l *Listener) Name() string { return l.name }

// FullCount counts the times the listener held its max_connections and
// left new connections waiting in the kernel's accept queue; the node's
// gate for the listener counts in it. Kept with the other counters, it
// goes on while the listener drains after a snapshot removed it, and
// under its name in the listener added back.
func (l *Listener) FullCount() *atomic.Uint64 { return &l.full }

// Sample reports whether the exchange beginning now is to be logged, so
// that a proxy copies what the log needs only then (Exchange.Logged).
func (l *Listener) Sample() bool { return l.log != nil && l.log.Sample() }

// Opened counts a client connection in; Closed counts it out.
func (l *Listener) Opened() {
	l.active.Add(1)
	l.conns.Add(1)
}

// Closed counts out a connection Opened counted in.
func (l *Listener) Closed() { l.active.Add(-1) }

// Refused counts a client connection the node closed before it served it
// (its PROXY header could not be taken) among the listener's connections,
// and hands x, its record, to the log when sampled, as a TCP session
// with x.Cause. It served nothing, so it counts in no other counter and
// no latency.
func (l *Listener) Refused(x *Exchange) {
	l.conns.Add(1)
	x.Proto = ProtoTCP
	if x.Logged = l.Sample(); x.Logged {
		l.log.Log(l.name, x)
	}
}

// Transferred counts bytes of an exchange that moves them for long (a TCP
// session, a tunnel) as they move: in from the client, out to it. Done
// must then be told them (Exchange.CountedIn, CountedOut).
func (l *Listener) Transferred(in, out uint64) {
	l.bytesIn.Add(in)
	l.bytesOut.Add(out)
}

// Done counts x, an HTTP request (x.Proto not "TCP") or a TCP session that
// ended, in the listener's counters and those of its cluster, and hands it
// to the listener's log. Of its bytes, those the proxy counted as they
// moved (x.CountedIn, x.CountedOut) are not counted again.
func (l *Listener) Done(x *Exchange) {
	c := ClassOf(x.Status)
	if x.Proto != ProtoTCP {
		l.requests[c].Add(1)
	}
	l.bytesIn.Add(x.BytesIn - x.CountedIn)
	l.bytesOut.Add(x.BytesOut - x.CountedOut)
	l.observe(x)
	if cl := x.Cluster; cl != nil {
		cl.requests[c].Add(1)
		if x.Retries > 0 {
			cl.retries.Add(uint64(x.Retries))
		}
		cl.observe(x)
	}
	if x.Logged {
		l.log.Log(l.name, x)
	}
}

// ListenerCounts is a point-in-time read of a Listener.
type ListenerCounts struct {
	Active            int64
	Connections       uint64
	Requests          [NumClasses]uint64
	BytesIn, BytesOut uint64
}

// Counts reads the listener's counters.
func (l *Listener) Counts() ListenerCounts {
	out := ListenerCounts{
		Active: l.active.Load(), Connections: l.conns.Load(),
		BytesIn: l.bytesIn.Load(), BytesOut: l.bytesOut.Load(),
	}
	for i := range out.Requests {
		out.Requests[i] = l.requests[i].Load()
	}
	return out
}

// Cluster counts what the endpoints of one cluster were given.
type Cluster struct {
	name string

	requests          [NumClasses]atomic.Uint64
	bytesIn, bytesOut atomic.Uint64
	connectErrors     atomic.Uint64
	retries           atomic.Uint64
	healthTransitions atomic.Uint64
	Latency
}

// NewCluster returns the meter of the cluster name.
func NewCluster(name string) *Cluster { return &Cluster{name: name} }

// Name is the cluster's name.
func (c *Cluster) Name() string { return c.name }

// Transferred counts bytes received from (in) and sent to (out) an
// endpoint of the cluster.
func (c *Cluster) Transferred(in, out uint64) {
	c.bytesIn.Add(in)
	c.bytesOut.Add(out)
}

// ConnectFailed counts a connect to an endpoint of the cluster that failed.
func (c *Cluster) ConnectFailed() { c.connectErrors.Add(1) }

// HealthChanged counts a change of an endpoint's health-check state.
func (c *Cluster) HealthChanged() { c.healthTransitions.Add(1) }

// ClusterCounts is a point-in-time read of a Cluster.
type ClusterCounts struct {
	Requests               [NumClasses]uint64
	BytesIn, BytesOut      uint64
	ConnectErrors, Retries uint64
	HealthTransitions      uint64
}

// Counts reads the cluster's counters.
func (c *Cluster) Counts() ClusterCounts {
	out := ClusterCounts{
		BytesIn: c.bytesIn.Load(), BytesOut: c.bytesOut.Load(),
		ConnectErrors: c.connectErrors.Load(), Retries: c.retries.Load(),
		HealthTransitions: c.healthTransitions.Load(),
	}
	for i := range out.Requests {
		out.Requests[i] = c.requests[i].Load()
	}
	return out
}

// Protocols of an Exchange.
const (
	ProtoHTTP10 = "HTTP/1.0"
	ProtoHTTP11 = "HTTP/1.1"
	ProtoHTTP2  = "HTTP/2.0"
	ProtoTCP    = "TCP"
)

// Exchange is one HTTP request or TCP session as it ended. The proxies keep
// one in their per-connection or per-request state and fill it in place;
// the byte slices point into their buffers and are valid only during
// Listener.Done.
type Exchange struct {
	Start  time.Time
	Client netip.AddrPort
	// Peer is the connection's peer when it is not Client: a trusted
	// proxy whose forwarding headers named the client. Zero otherwise.
	Peer  netip.AddrPort
	Proto string // one of the Proto constants
	// Method, Host and Path are the request's (HTTP); Path is the
	// request-target as received.
	Method, Host, Path []byte
	// RequestID is the request's id (httpproxy.Config.RequestID); nil
	// when its listener gives none, or the request was refused before it
	// got one.
	RequestID []byte
	// Status is the status the client got; 0 when it got none.
	Status int
	// Cluster and Endpoint are those the request or session went to; nil
	// and "" when none was picked.
	Cluster  *Cluster
	Endpoint string
	// Rule names the rule that decided where the request or session went,
	// or that answered it; "" when no rule decided.
	Rule string
	// BytesIn counts bytes from the client, BytesOut bytes to it.
	BytesIn, BytesOut uint64
	// CountedIn and CountedOut are the bytes of BytesIn and BytesOut the
	// listener counted already, as they moved (Listener.Transferred).
	CountedIn, CountedOut uint64
	// Connect, FirstByte and Total are as in Latency; 0 when not measured.
	Connect, FirstByte, Total time.Duration
	// Retries counts connects that failed and were tried again elsewhere.
	Retries uint32
	// Cause says why the client connection ended, when it ended with this
	// exchange; UNSPECIFIED otherwise.
	Cause sluicev1.CloseReason
	// Detail says in words why the node refused the connection, where
	// Cause alone does not (a PROXY header's fault); empty otherwise.
	Detail string
	// Logged is set when Listener.Sample said the exchange is logged.
	Logged bool
	// grpcStatus is the gRPC status code a gRPC call ended with, plus
	// one; 0: not a gRPC call, or one that ended without a status.
	grpcStatus uint8
}

// SetGRPCStatus records the gRPC status code a gRPC call ended with: the
// endpoint's grpc-status, or the one the proxy answered with. One outside
// 0 to 254 (gRPC's are 0 to 16) records none.
func (x *Exchange) SetGRPCStatus(code int) {
	if code < 0 || code > 254 {
		x.grpcStatus = 0
		return
	}
	x.grpcStatus = uint8(code + 1)
}

// GRPCStatus returns the gRPC status code recorded by SetGRPCStatus, and
// whether one was.
func (x *Exchange) GRPCStatus() (code int, ok bool) {
	return int(x.grpcStatus) - 1, x.grpcStatus != 0
}

// KeepRequestID sets x.RequestID, when the exchange is logged, to a copy
// of id at the end of buf, the buffer that holds x's other copies (the
// request's slices go stale once its body is read), and returns buf.
func (x *Exchange) KeepRequestID(buf, id []byte) []byte {
	if !x.Logged || id == nil {
		return buf
	}
	n := len(buf)
	buf = append(buf, id...)
	x.RequestID = buf[n:]
	return buf
}
