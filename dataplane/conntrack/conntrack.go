// Package conntrack describes and tracks client connections of a node: the
// record each one leaves when it ends, and the set of open ones a listener
// closes when it is removed.
package conntrack

import (
	"net"
	"runtime"
	"sync"
	"time"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// ConnInfo is reported once per client connection when it ends.
type ConnInfo struct {
	Listener string
	Client   string
	Start    time.Time
	Duration time.Duration
	// BytesIn counts bytes from the client, BytesOut bytes to it.
	BytesIn, BytesOut uint64
	// Requests counts HTTP requests; 0 on TCP listeners.
	Requests uint64
	// Retries counts the connects to an endpoint that failed and were
	// retried on another pick (the listener's retries): for a TCP session
	// those before its endpoint answered, for an HTTP connection the sum
	// over its requests. A connect given up on, after the last retry, is
	// not counted; neither is a pick again because an apply retired the
	// endpoint. It is not in Record's wire form yet.
	Retries uint64
	// Cluster and Endpoint are those of the session (TCP) or of the last
	// request (HTTP); empty when none was chosen.
	Cluster, Endpoint string
	// Rule is the rule that decided the session (TCP), or the latest
	// request a rule decided (HTTP); empty when none did.
	Rule   string
	Reason sluicev1.CloseReason
	// Failed counts the requests the node answered itself with an error
	// (no endpoint, a failed connect or endpoint, a refusal), and
	// Failures is the set of their reasons: on a keep-alive connection,
	// Reason is how it ended after them.
	Failed   uint64
	Failures Reasons
}

// EndpointsFault reports whether work that failed for reason failed by its
// endpoint's doing: it closed or reset the connection, answered wrongly,
// or did not answer in time. An operator's shutdown or drain, the client,
// and no endpoint at all are other reasons.
func EndpointsFault(reason sluicev1.CloseReason) bool {
	switch reason {
	case sluicev1.CloseReason_CLOSE_REASON_SERVER_CLOSED, sluicev1.CloseReason_CLOSE_REASON_IO_ERROR,
		sluicev1.CloseReason_CLOSE_REASON_SERVER_TIMEOUT:
		return true
	}
	return false
}

// Fail records a request answered by the node with an error for reason.
func (ci *ConnInfo) Fail(reason sluicev1.CloseReason) {
	ci.Failed++
	ci.Failures.Add(reason)
}

// Reasons is a set of close reasons, in the 4 bytes of one: every
// CloseReason is below 32 (TestReasonsHoldsEveryReason).
type Reasons uint32

// Add puts r in the set.
func (s *Reasons) Add(r sluicev1.CloseReason) {
	if r >= 0 && r < 32 {
		*s |= 1 << r
	}
}

// List is the set's reasons in the enum's order; nil when it is empty.
func (s Reasons) List() []sluicev1.CloseReason {
	if s == 0 {
		return nil
	}
	var out []sluicev1.CloseReason
	for r := sluicev1.CloseReason(0); s != 0; r, s = r+1, s>>1 {
		if s&1 != 0 {
			out = append(out, r)
		}
	}
	return out
}

// Record converts the info to its wire form.
func (ci *ConnInfo) Record() *sluicev1.ConnRecord {
	return &sluicev1.ConnRecord{
		Listener:       ci.Listener,
		ClientAddress:  ci.Client,
		Cluster:        ci.Cluster,
		Endpoint:       ci.Endpoint,
		Start:          timestamppb.New(ci.Start),
		Duration:       durationpb.New(ci.Duration),
		BytesIn:        ci.BytesIn,
		BytesOut:       ci.BytesOut,
		Requests:       ci.Requests,
		CloseReason:    ci.Reason,
		FailedRequests: ci.Failed,
		Failures:       ci.Failures.List(),
		Rule:           ci.Rule,
	}
}

// Set is the set of open client connections of one listener.
type Set struct {
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// Add tracks c. It returns false, and leaves c alone, once CloseAll was
// called.
func (s *Set) Add(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.conns == nil {
		s.conns = make(map[net.Conn]struct{})
	}
	s.conns[c] = struct{}{}
	return true
}

// Remove forgets c.
func (s *Set) Remove(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Len is the number of tracked connections: open, or closed by CloseAll
// and not yet ended.
func (s *Set) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// CloseAll refuses new connections and closes every tracked one, each on a
// goroutine of its own: it does not wait. Closing a socket waits until no
// call uses it, and an HTTP connection serving a request from inside its
// idle read holds its socket until that request ends: at once if it dials
// or waits in its cluster's queue, within a second if it waits for its
// endpoint's answer, once its server is closed (see
// httpproxy.Server.Close). A caller such as an apply that removes a
// listener would wait for every such request, and one connection's close
// must not hold back the others'.
//
// The connections stay in the set until they end (Remove), so that Len
// tells how many have yet to.
func (s *Set) CloseAll() {
	s.mu.Lock()
	s.closed = true
	conns := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	n := 0
	for _, c := range conns {
		go c.Close()
		if n++; n%256 == 0 {
			// Let those closes run (most take microseconds) before
			// starting more: the goroutines do not pile up.
			runtime.Gosched()
		}
	}
}
