package node

import (
	"errors"
	"log/slog"
	"net"
	"time"

	"github.com/sluice-lb/sluice/dataplane/conntrack"
	"github.com/sluice-lb/sluice/dataplane/httpproxy"
	"github.com/sluice-lb/sluice/dataplane/tcpproxy"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// listener is a bound socket and the proxy serving its connections. A
// listener outlives snapshots as long as its address and protocol stay the
// same: only the proxy's config is swapped, so its socket and open
// connections are untouched by an apply.
type listener struct {
	name     string
	protocol sluicev1.Protocol
	ln       *net.TCPListener
	conns    conntrack.Set
	http     *httpproxy.Server // set for HTTP listeners
	tcp      *tcpproxy.Server  // set for TCP listeners
	done     chan struct{}
	log      *slog.Logger
}

// listenerKey identifies a listener's socket across snapshots.
func listenerKey(l *sluicev1.Listener) string {
	return l.GetProtocol().String() + " " + l.GetAddress()
}

func bind(address string) (*net.TCPListener, error) {
	ln, err := net.Listen("tcp", address)
	if err != nil {
		return nil, err
	}
	return ln.(*net.TCPListener), nil
}

// serve accepts connections until the socket is closed.
func (l *listener) serve() {
	defer close(l.done)
	var backoff time.Duration
	for {
		c, err := l.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors or similar: wait and retry
			// rather than spin or give up the socket.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.log.Warn("accept failed", "listener", l.name, "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if !l.conns.Add(c) {
			continue
		}
		go l.handle(c)
	}
}

func (l *listener) handle(c *net.TCPConn) {
	defer l.conns.Remove(c)
	if l.http != nil {
		l.http.ServeConn(c)
	} else {
		l.tcp.ServeConn(c)
	}
}

// close stops accepting, closes every open connection and waits for the
// accept loop to end.
func (l *listener) close() {
	if l.tcp != nil {
		l.tcp.MarkClosing()
	}
	l.ln.Close()
	<-l.done
	l.conns.CloseAll()
}
