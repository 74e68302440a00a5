// Package tcpproxy proxies TCP sessions: one endpoint is chosen per client
// connection and bytes flow both ways, with half-close, until both sides end.
//
// Both directions are copied between the raw *net.TCPConn values, so the Go
// runtime moves the bytes with splice(2) on Linux and they never enter user
// space.
package tcpproxy

import (
	"context"
	"net"
	"sync/atomic"
	"time"

	"github.com/sluice-lb/sluice/dataplane/conntrack"
	"github.com/sluice-lb/sluice/dataplane/upstream"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// Director chooses the endpoint of each session. Pick runs once per
// connection attempt on the accept path and must not block. On success the
// endpoint has been Acquire()d; the proxy calls Release once.
type Director interface {
	Pick(client net.Addr) (ep *upstream.Endpoint, connectTimeout time.Duration, err error)
}

// Config is one listener's settings. It is replaced whole by SetConfig.
type Config struct {
	Listener string
	Director Director
	// Attempts is how many endpoints a session tries to connect to before
	// giving up. Default 3.
	Attempts int
}

// Server serves the sessions of one TCP listener.
type Server struct {
	cfg     atomic.Pointer[Config]
	onClose func(*conntrack.ConnInfo)
	closing atomic.Bool
}

// NewServer returns a server that reports each ended session to onClose,
// which must not block.
func NewServer(cfg *Config, onClose func(*conntrack.ConnInfo)) *Server {
	s := &Server{onClose: onClose}
	s.cfg.Store(cfg)
	return s
}

// SetConfig replaces the configuration for sessions accepted from now on.
func (s *Server) SetConfig(cfg *Config) { s.cfg.Store(cfg) }

// MarkClosing tells the server its listener is being removed, so sessions
// that end now are recorded as closed by the listener.
func (s *Server) MarkClosing() { s.closing.Store(true) }

// ServeConn proxies one client connection until both directions end. It
// blocks; closing client from another goroutine ends it.
func (s *Server) ServeConn(client *net.TCPConn) {
	cfg := s.cfg.Load()
	info := conntrack.ConnInfo{Listener: cfg.Listener, Client: client.RemoteAddr().String(), Start: time.Now()}
	defer func() {
		client.Close()
		info.Duration = time.Since(info.Start)
		if s.closing.Load() {
			info.Reason = sluicev1.CloseReason_CLOSE_REASON_LISTENER_CLOSED
		}
		if s.onClose != nil {
			s.onClose(&info)
		}
	}()

	ep, backend := s.connect(cfg, client.RemoteAddr())
	if backend == nil {
		info.Reason = sluicev1.CloseReason_CLOSE_REASON_NO_ENDPOINT
		return
	}
	defer ep.Release()
	defer ep.Close(backend)
	info.Cluster, info.Endpoint = ep.Cluster, ep.Name

	// Each direction ends with a half-close of its destination; the session
	// ends when both have. An error (not EOF) in either closes both sockets
	// so the other direction unblocks. Whichever side sent its EOF first
	// closed the session.
	const byClient, byServer = 1, 2
	var first atomic.Int32
	var upN int64
	var upErr error
	upDone := make(chan struct{})
	go func() {
		defer close(upDone)
		upN, upErr = backend.ReadFrom(client) // client -> endpoint
		if upErr == nil {
			first.CompareAndSwap(0, byClient)
			backend.CloseWrite()
		} else {
			client.Close()
			backend.Close()
		}
	}()
	downN, downErr := client.ReadFrom(backend) // endpoint -> client
	if downErr == nil {
		first.CompareAndSwap(0, byServer)
		client.CloseWrite()
	} else {
		client.Close()
		backend.Close()
	}
	<-upDone
	info.BytesIn, info.BytesOut = uint64(upN), uint64(downN)

	switch {
	case ep.Draining():
		info.Reason = sluicev1.CloseReason_CLOSE_REASON_DRAINED
	case upErr != nil || downErr != nil:
		info.Reason = sluicev1.CloseReason_CLOSE_REASON_IO_ERROR
	case first.Load() == byServer:
		info.Reason = sluicev1.CloseReason_CLOSE_REASON_SERVER_CLOSED
	default:
		info.Reason = sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED
	}
}

// connect picks endpoints and dials them until one answers. Each attempt
// picks from the configuration current at that moment, so an endpoint that
// an apply retired (ErrClosed) is replaced by one of the new snapshot.
func (s *Server) connect(cfg *Config, client net.Addr) (*upstream.Endpoint, *net.TCPConn) {
	attempts := cfg.Attempts
	if attempts <= 0 {
		attempts = 3
	}
	for i := range attempts {
		if i > 0 {
			cfg = s.cfg.Load()
		}
		ep, timeout, err := cfg.Director.Pick(client)
		if err != nil {
			return nil, nil
		}
		c, err := ep.DialSession(context.Background(), timeout)
		if err == nil {
			return ep, c
		}
		ep.Release()
	}
	return nil, nil
}
