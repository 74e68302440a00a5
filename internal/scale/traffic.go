package scale

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-lb/sluice/internal/loopback"
)

// backendResponse is what every backend answers, to every request.
const backendResponse = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n"

// Backend is an HTTP/1.1 server on loopback that answers every request
// with 200 over keep-alive connections. Health checks (connect, close) and
// TCP sessions carrying HTTP reach it as well.
type Backend struct {
	Addr string
	ln   net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	open map[net.Conn]bool
}

// StartBackend listens on a fresh port of 127.0.0.1.
func StartBackend() (*Backend, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &Backend{Addr: ln.Addr().String(), ln: ln, open: map[net.Conn]bool{}}
	b.wg.Add(1)
	go b.serve()
	return b, nil
}

func (b *Backend) serve() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.mu.Lock()
		b.open[c] = true
		b.mu.Unlock()
		b.wg.Add(1)
		go b.handle(c)
	}
}

func (b *Backend) handle(c net.Conn) {
	defer b.wg.Done()
	defer func() {
		b.mu.Lock()
		delete(b.open, c)
		b.mu.Unlock()
		c.Close()
	}()
	loopback.AnswerHeads(c, []byte(backendResponse), make([]byte, 4096))
}

// Close stops the backend and closes its connections.
func (b *Backend) Close() {
	b.ln.Close()
	b.mu.Lock()
	for c := range b.open {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// Counts are the requests a traffic run made through one listener.
type Counts struct {
	OK, Failed atomic.Int64
	// FirstErr is the first failure, for the report.
	mu       sync.Mutex
	FirstErr error
}

func (c *Counts) fail(err error) {
	c.Failed.Add(1)
	c.mu.Lock()
	if c.FirstErr == nil {
		c.FirstErr = err
	}
	c.mu.Unlock()
}

// Err is the first failure, nil if none.
func (c *Counts) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.FirstErr
}

func (c *Counts) String() string {
	s := fmt.Sprintf("%d ok, %d failed", c.OK.Load(), c.Failed.Load())
	if err := c.Err(); err != nil {
		s += " (first: " + err.Error() + ")"
	}
	return s
}

// Traffic is steady load through a node's listeners: Workers connections
// per listener, each sending one request every Every and reconnecting
// after PerConn requests, so that applies meet requests on fresh
// connections as well as on old ones. Every request that does not come
// back as a 200 with the backend's body is a failure. Over the TCP
// listener the same requests are carried by TCP sessions.
type Traffic struct {
	HTTP, TCP Counts

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// TrafficSpec says how much traffic Start sends.
type TrafficSpec struct {
	Workers int           // connections per listener; default 4
	Every   time.Duration // between two requests of one connection; default 2ms
	PerConn int           // requests per connection; default 50
}

// StartTraffic sends traffic to the listeners httpAddr and tcpAddr (either
// may be empty) until Stop.
func StartTraffic(httpAddr, tcpAddr string, s TrafficSpec) *Traffic {
	if s.Workers <= 0 {
		s.Workers = 4
	}
	if s.Every <= 0 {
		s.Every = 2 * time.Millisecond
	}
	if s.PerConn <= 0 {
		s.PerConn = 50
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &Traffic{cancel: cancel}
	for _, l := range []struct {
		addr string
		c    *Counts
	}{{httpAddr, &t.HTTP}, {tcpAddr, &t.TCP}} {
		if l.addr == "" {
			continue
		}
		for range s.Workers {
			t.wg.Add(1)
			go func() {
				defer t.wg.Done()
				worker(ctx, l.addr, s, l.c)
			}()
		}
	}
	return t
}

// Stop ends the traffic and waits for the requests under way.
func (t *Traffic) Stop() {
	t.cancel()
	t.wg.Wait()
}

var request = []byte("GET /scale HTTP/1.1\r\nHost: scale.test\r\n\r\n")

// worker sends requests over one connection at a time until ctx ends.
func worker(ctx context.Context, addr string, s TrafficSpec, counts *Counts) {
	tick := time.NewTicker(s.Every)
	defer tick.Stop()
	for ctx.Err() == nil {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			counts.fail(fmt.Errorf("connect: %w", err))
			select {
			case <-ctx.Done():
			case <-tick.C:
			}
			continue
		}
		br := bufio.NewReader(c)
		for range s.PerConn {
			select {
			case <-ctx.Done():
			case <-tick.C:
			}
			if ctx.Err() != nil {
				break
			}
			closed, err := roundTrip(c, br)
			if err != nil {
				counts.fail(err)
				break
			}
			counts.OK.Add(1)
			if closed {
				break
			}
		}
		c.Close()
	}
}

// roundTrip sends one request over c and reads its response; closed says
// the response announced the end of the connection (Connection: close),
// which is no failure.
func roundTrip(c net.Conn, br *bufio.Reader) (closed bool, err error) {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(request); err != nil {
		return false, fmt.Errorf("write: %w", err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return false, fmt.Errorf("read: %w", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	switch {
	case err != nil:
		return false, fmt.Errorf("body: %w", err)
	case resp.StatusCode != 200 || string(body) != "ok\n":
		return false, fmt.Errorf("status %d, body %q", resp.StatusCode, body)
	}
	return resp.Close, nil
}
