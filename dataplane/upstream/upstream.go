// Package upstream holds the dataplane's view of one endpoint: its address,
// the connections open to it, its idle pool and its in-flight counter.
//
// An *Endpoint outlives snapshots: the runtime compiler reuses the same
// *Endpoint for a cluster/name/address that survives an apply, so counters
// (in-flight work for LEAST_CONN and max_conn) and pooled connections carry
// over, and removing an endpoint can find and close every connection to it.
package upstream

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// ErrClosed is returned by Dial once the endpoint was shut down.
var ErrClosed = errors.New("upstream: endpoint shut down")

// Endpoint is one backend server as seen by every listener of a node.
type Endpoint struct {
	Cluster string
	Name    string
	Addr    string

	inflight atomic.Int64

	mu     sync.Mutex
	conns  map[net.Conn]struct{} // every open connection to the endpoint
	idle   []net.Conn            // pooled HTTP connections, newest last
	closed bool
}

// New returns an endpoint with no connections.
func New(cluster, name, addr string) *Endpoint {
	return &Endpoint{Cluster: cluster, Name: name, Addr: addr, conns: make(map[net.Conn]struct{})}
}

// Key identifies an endpoint across snapshots.
func (e *Endpoint) Key() string { return e.Cluster + "/" + e.Name + "@" + e.Addr }

// Inflight is the number of requests (HTTP) or sessions (TCP) now using the
// endpoint.
func (e *Endpoint) Inflight() int64 { return e.inflight.Load() }

// Acquire counts one request or session in; Release counts it out.
func (e *Endpoint) Acquire() { e.inflight.Add(1) }

// Release undoes one Acquire.
func (e *Endpoint) Release() { e.inflight.Add(-1) }

// Dial opens a new tracked TCP connection to the endpoint. The caller must
// close it with Close (not conn.Close) so the endpoint forgets it.
func (e *Endpoint) Dial(ctx context.Context, timeout time.Duration) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, "tcp", e.Addr)
	if err != nil {
		return nil, err
	}
	tc := c.(*net.TCPConn)
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		tc.Close()
		return nil, ErrClosed
	}
	e.conns[tc] = struct{}{}
	e.mu.Unlock()
	return tc, nil
}

// Close closes a connection obtained from Dial and forgets it.
func (e *Endpoint) Close(c net.Conn) {
	e.mu.Lock()
	delete(e.conns, c)
	e.mu.Unlock()
	c.Close()
}

// GetIdle returns a pooled connection, or nil when the pool is empty. The
// newest connection is returned first: it is the least likely to have been
// closed by the server's keep-alive timeout.
func (e *Endpoint) GetIdle() net.Conn {
	e.mu.Lock()
	n := len(e.idle)
	if n == 0 {
		e.mu.Unlock()
		return nil
	}
	c := e.idle[n-1]
	e.idle[n-1] = nil
	e.idle = e.idle[:n-1]
	e.mu.Unlock()
	return c
}

// MaxIdle bounds the idle pool of one endpoint.
const MaxIdle = 256

// PutIdle returns a reusable connection to the pool. It closes the
// connection instead when the pool is full or the endpoint is shut down.
func (e *Endpoint) PutIdle(c net.Conn) {
	e.mu.Lock()
	if e.closed || len(e.idle) >= MaxIdle {
		delete(e.conns, c)
		e.mu.Unlock()
		c.Close()
		return
	}
	e.idle = append(e.idle, c)
	e.mu.Unlock()
}

// Conns is the number of open connections to the endpoint, idle ones included.
func (e *Endpoint) Conns() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.conns)
}

// CloseIdle closes the pooled connections, leaving busy ones alone.
func (e *Endpoint) CloseIdle() {
	e.mu.Lock()
	idle := e.idle
	e.idle = nil
	for _, c := range idle {
		delete(e.conns, c)
	}
	e.mu.Unlock()
	for _, c := range idle {
		c.Close()
	}
}

// Shutdown refuses new connections and closes every open one, busy or idle.
// Proxy loops using a closed connection see an error and end their session.
func (e *Endpoint) Shutdown() {
	e.mu.Lock()
	e.closed = true
	conns := e.conns
	e.conns = make(map[net.Conn]struct{})
	e.idle = nil
	e.mu.Unlock()
	for c := range conns {
		c.Close()
	}
}

// IsShutdown reports whether Shutdown was called.
func (e *Endpoint) IsShutdown() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closed
}
