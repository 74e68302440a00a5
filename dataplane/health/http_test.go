package health

import (
	"github.com/sluice-lb/sluice/snapshot"

	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// checkOnce runs one check of s, as a probe would, and says how long it
// took.
func checkOnce(t *testing.T, s Spec) (bool, time.Duration) {
	t.Helper()
	start := time.Now()
	err := newProber(s.withDefaults(), addrOf(s)).check(t.Context())
	return err == nil, time.Since(start)
}

func mustStatus(t *testing.T, s string) snapshot.StatusSpec {
	t.Helper()
	spec, err := snapshot.ParseStatusSpec(s)
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

func TestHTTPCheckStatus(t *testing.T) {
	for _, tt := range []struct {
		answer, expect string
		want           bool
	}{
		{"HTTP/1.1 200 OK", "", true},
		{"HTTP/1.1 500 Internal Server Error", "", false},
		{"HTTP/1.1 500 Internal Server Error", "500", true},
		{"HTTP/1.1 200 OK", "500", false},
		{"HTTP/1.0 302 Found", "", true},
		{"HTTP/1.1 399 Whatever", "", true},
		{"HTTP/1.1 400 Bad Request", "", false},
		{"HTTP/1.1 404 Not Found", "200-299,404", true},
		{"HTTP/1.1 204", "200,204", true}, // no reason phrase, no space
		{"HTTP/1.1 204 ", "200", false},
		{"HTTP/1.1 503 Service Unavailable", "200-499", false},
	} {
		t.Run(tt.answer+" expect "+tt.expect, func(t *testing.T) {
			srv := serve(t, answer(tt.answer))
			up, _ := checkOnce(t, Spec{Addr: srv.addr, HTTPPath: "/health", Timeout: testTimeout, Expect: mustStatus(t, tt.expect)})
			if up != tt.want {
				t.Errorf("check up = %v, want %v", up, tt.want)
			}
		})
	}
}

// TestHTTPCheckRequest: the request on the wire, byte for byte.
func TestHTTPCheckRequest(t *testing.T) {
	for _, tt := range []struct {
		name               string
		method, path, host string
		wantLine, wantHost string
	}{
		{"defaults", "", "/health", "", "GET /health HTTP/1.1", ""},
		{"configured", "HEAD", "/status?full=1&x=%20", "api.example.test", "HEAD /status?full=1&x=%20 HTTP/1.1", "api.example.test"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			heads := make(chan string, 1)
			srv := serve(t, func(c net.Conn, _ int) {
				heads <- readHead(c)
				io.WriteString(c, "HTTP/1.1 200 OK\r\n\r\n")
			})
			host := tt.wantHost
			if host == "" {
				host = srv.addr
			}
			up, _ := checkOnce(t, Spec{Addr: srv.addr, HTTPMethod: tt.method, HTTPPath: tt.path, HTTPHost: tt.host, Timeout: testTimeout})
			if !up {
				t.Errorf("check failed against a 200")
			}
			want := tt.wantLine + "\r\nHost: " + host + "\r\nUser-Agent: sluice-health\r\nConnection: close\r\n\r\n"
			if got := <-heads; got != want {
				t.Errorf("request\n%q\nwant\n%q", got, want)
			}
		})
	}
}

// TestHTTPCheckBadAnswers: whatever the server does short of a good status
// line, the check fails, within the timeout, and without waiting for it
// when the answer is already hopeless. A hopeless answer gets a timeout of
// a minute, so that failing within seconds tells it was not waited out
// however busy the machine; the others fail at their short timeout, and
// the bound above it only tells a check that took far longer.
func TestHTTPCheckBadAnswers(t *testing.T) {
	const (
		timeout     = 300 * time.Millisecond // of the checks that must wait it
		fastTimeout = time.Minute            // of the checks that must not
		fastBound   = 10 * time.Second
		slack       = 3 * time.Second // past timeout, for a busy machine
	)
	// hold reads until the client closes, clearing the deadline readHead
	// set: the check, not the server giving up, must end the exchange.
	hold := func(c net.Conn) {
		c.SetReadDeadline(time.Time{})
		io.Copy(io.Discard, c)
	}
	for _, tt := range []struct {
		name   string
		handle func(net.Conn, int)
		// fast: the check must fail well before its timeout.
		fast bool
	}{
		{"closes at once", func(net.Conn, int) {}, true},
		{"closes after the request", func(c net.Conn, _ int) { readHead(c) }, true},
		{"never answers", func(c net.Conn, _ int) { readHead(c); hold(c) }, false},
		{"trickles a good answer", func(c net.Conn, _ int) {
			readHead(c)
			for _, b := range []byte("HTTP/1.1 200 OK\r\n\r\n") {
				if _, err := c.Write([]byte{b}); err != nil {
					return
				}
				time.Sleep(timeout / 5)
			}
		}, false},
		{"garbage line", func(c net.Conn, _ int) { io.WriteString(c, "SSH-2.0-OpenSSH_9.6\r\n"); hold(c) }, true},
		{"garbage without line end", func(c net.Conn, _ int) { io.WriteString(c, "220 smtp.example ESMTP"); hold(c) }, true},
		{"binary", func(c net.Conn, _ int) { c.Write([]byte{0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, '\n'}); hold(c) }, true},
		{"HTTP/2", func(c net.Conn, _ int) { readHead(c); io.WriteString(c, "HTTP/2 200\r\n\r\n"); hold(c) }, true},
		{"bad code", func(c net.Conn, _ int) { readHead(c); io.WriteString(c, "HTTP/1.1 2OO OK\r\n\r\n"); hold(c) }, true},
		{"code out of range", func(c net.Conn, _ int) { readHead(c); io.WriteString(c, "HTTP/1.1 099 Low\r\n\r\n"); hold(c) }, true},
		{"control in reason", func(c net.Conn, _ int) { readHead(c); io.WriteString(c, "HTTP/1.1 200 O\x00K\r\n\r\n"); hold(c) }, true},
		{"good line, no line end, closed", func(c net.Conn, _ int) { readHead(c); io.WriteString(c, "HTTP/1.1 200 OK") }, true},
		{"endless line", func(c net.Conn, _ int) {
			readHead(c)
			io.WriteString(c, "HTTP/1.1 200 OK"+strings.Repeat("k", 2*maxStatusLine))
			hold(c)
		}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := serve(t, tt.handle)
			s := Spec{Addr: srv.addr, HTTPPath: "/", Timeout: timeout}
			if tt.fast {
				s.Timeout = fastTimeout
			}
			up, took := checkOnce(t, s)
			if up {
				t.Errorf("check passed")
			}
			if tt.fast && took > fastBound {
				t.Errorf("check took %v to fail, want well under the timeout %v", took, s.Timeout)
			}
			if !tt.fast && took > timeout+slack {
				t.Errorf("check took %v, want about the timeout %v at most", took, timeout)
			}
		})
	}
}

// TestHTTPCheckRefusesBrokenRequest: a request that cannot be sent as
// configured fails the check without connecting at all.
func TestHTTPCheckRefusesBrokenRequest(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	for _, s := range []Spec{
		{HTTPPath: "/a b"},
		{HTTPPath: "/\r\nX-Injected: 1"},
		{HTTPPath: "/", HTTPMethod: "GE T"},
		{HTTPPath: "/", HTTPHost: "a\r\nX-Injected: 1"},
		{HTTPPath: "/", HTTPHost: "h\u00e9"},
	} {
		s.Addr, s.Timeout = addr, testTimeout
		if up, _ := checkOnce(t, s); up {
			t.Errorf("%+v: check passed", s)
		}
	}
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(50 * time.Millisecond))
	if c, err := ln.Accept(); err == nil {
		c.Close()
		t.Errorf("a broken request connected to the endpoint")
	}
}

// TestStopEndsHTTPCheck: stopping a probe whose check waits on a silent
// server returns at once, not at the check's timeout.
func TestStopEndsHTTPCheck(t *testing.T) {
	srv := serve(t, func(c net.Conn, _ int) { readHead(c); io.Copy(io.Discard, c) })
	c := NewChecker(nil)
	spec := Spec{Key: "c/e@" + srv.addr, Addr: srv.addr, HTTPPath: "/", Interval: time.Millisecond, Timeout: time.Hour, Fall: 1, Rise: 1}
	c.Reconcile([]Spec{spec})
	srv.waitAccepts(t, 1)
	// Stop waiting for the check's timeout would hang for an hour: give
	// it, busy machine or not, far more than it needs to return at once.
	stopped := make(chan struct{})
	go func() {
		c.Stop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(testTimeout):
		t.Errorf("Stop still running after %v with a check in flight", testTimeout)
	}
}

func TestParseStatusLine(t *testing.T) {
	for _, tt := range []struct {
		line string
		code int // 0: invalid
	}{
		{"HTTP/1.1 200 OK", 200},
		{"HTTP/1.0 503 Service Unavailable", 503},
		{"HTTP/1.1 204", 204},
		{"HTTP/1.1 404 ", 404},
		{"HTTP/1.1 200 caf\xc3\xa9\tok", 200},
		{"HTTP/1.9 100 Continue", 100},
		{"HTTP/1.1 599 Custom", 599},
		{"", 0},
		{"HTTP/1.1", 0},
		{"HTTP/1.1 20", 0},
		{"HTTP/1.1 2000 OK", 0},
		{"HTTP/1.1 600 Beyond", 0},
		{"HTTP/1.1 099 Below", 0},
		{"HTTP/1.1  200 OK", 0},
		{"HTTP/1.1 +20 OK", 0},
		{"HTTP/1.1\t200 OK", 0},
		{"HTTP/1.1 200\tOK", 0},
		{"HTTP/1.1 200 O\rK", 0},
		{"HTTP/1.1 200 O\x7fK", 0},
		{"HTTP/2.0 200 OK", 0},
		{"HTTP/1.x 200 OK", 0},
		{"http/1.1 200 OK", 0},
		{" HTTP/1.1 200 OK", 0},
	} {
		code, ok := parseStatusLine([]byte(tt.line))
		if ok != (tt.code != 0) || code != tt.code {
			t.Errorf("parseStatusLine(%q) = %d, %v; want %d", tt.line, code, ok, tt.code)
		}
	}
}

func TestReadStatusLine(t *testing.T) {
	long := "HTTP/1.1 200 " + strings.Repeat("k", maxStatusLine)
	for _, tt := range []struct {
		in, want string
		ok       bool
	}{
		{"HTTP/1.1 200 OK\r\nServer: x\r\n\r\n", "HTTP/1.1 200 OK", true},
		{"HTTP/1.1 200 OK\nServer: x\n\n", "HTTP/1.1 200 OK", true}, // bare LF, RFC 9112 2.2
		{"HTTP/1.1 200 OK\r\r\n", "HTTP/1.1 200 OK\r", true},        // and then parseStatusLine refuses it
		{"HTTP/1.1 200 OK", "", false},
		{"", "", false},
		{"HTTX", "", false},
		{long[:maxStatusLine-2] + "\r\n", long[:maxStatusLine-2], true},
		{long[:maxStatusLine] + "\r\n", "", false},
	} {
		buf := make([]byte, maxStatusLine)
		// One byte at a time, so that every partial read is seen.
		line, err := readStatusLine(iotest.OneByteReader(strings.NewReader(tt.in)), buf)
		if ok := err == nil; ok != tt.ok || ok && string(line) != tt.want {
			t.Errorf("readStatusLine(%.40q) = %.40q, %v; want %.40q, %v", tt.in, line, ok, tt.want, tt.ok)
		}
	}
	// Not HTTP: gives up after the first byte that cannot start a status
	// line, without reading on.
	r := &countingReader{r: strings.NewReader("SSH-2.0-OpenSSH_9.6\r\n")}
	if _, err := readStatusLine(iotest.OneByteReader(r), make([]byte, maxStatusLine)); err != errNotHTTP || r.n != 1 {
		t.Errorf("read %d bytes of an SSH banner, want to stop after 1", r.n)
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func FuzzStatusLine(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\n", "HTTP/1.0 503 Service Unavailable\n", "HTTP/1.1 204\r\n",
		"HTTP/1.1 099 x\r\n", "HTTP/1.1 600 x\r\n", "HTTP/2 200\r\n", "SSH-2.0\r\n", "", "\n",
		"HTTP/1.1 200 O\x00K\r\n", "HTTP/1.1 200 OK",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if code, ok := parseStatusLine(in); ok && (code < 100 || code > 599) {
			t.Errorf("parseStatusLine(%q) accepted code %d", in, code)
		}
		buf := make([]byte, 64) // small, so that the fuzzer fills it
		line, err := readStatusLine(bytes.NewReader(in), buf)
		if err != nil {
			return
		}
		if bytes.IndexByte(line, '\n') >= 0 || len(line) >= len(buf) || !bytes.HasPrefix(in, line) {
			t.Errorf("readStatusLine(%q) = %q", in, line)
		}
		if code, ok := parseStatusLine(line); ok && (code < 100 || code > 599 || !bytes.HasPrefix(line, []byte(httpPrefix))) {
			t.Errorf("parseStatusLine(%q) accepted code %d", line, code)
		}
	})
}

// BenchmarkHTTPCheck measures one whole check over loopback. Its
// allocations include the in-process server's (a 4 KiB bufio.Reader per
// request) and the dial's; the check itself reuses its read buffer.
func BenchmarkHTTPCheck(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				readHead(c)
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
			}()
		}
	}()
	spec := Spec{Addr: ln.Addr().String(), HTTPPath: "/health", Timeout: time.Second}
	p := newProber(spec.withDefaults(), addrOf(spec))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := p.check(ctx); err != nil {
			b.Fatalf("check failed: %v", err)
		}
	}
}

func BenchmarkParseStatusLine(b *testing.B) {
	line := []byte("HTTP/1.1 200 OK")
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := parseStatusLine(line); !ok {
			b.Fatal("refused")
		}
	}
}

// TestCheckFailureDetail: a failed check says why in the words an operator
// would use, which Status.Detail and sluicectl stats then show.
func TestCheckFailureDetail(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusing := ln.Addr().String()
	ln.Close()
	hold := func(c net.Conn, _ int) { readHead(c); io.Copy(io.Discard, c) }
	for _, tt := range []struct {
		name   string
		handle func(net.Conn, int) // nil: nothing listens
		spec   Spec
		want   string // the detail, or its start when it ends with "*"
	}{
		{"refused", nil, Spec{}, "connection refused"},
		{"refused, HTTP", nil, Spec{HTTPPath: "/"}, "connection refused"},
		{"timeout", hold, Spec{HTTPPath: "/", Timeout: 200 * time.Millisecond}, "timeout after 200ms"},
		{"status", answer("HTTP/1.1 500 Internal Server Error"), Spec{HTTPPath: "/"}, "status 500"},
		{"status not expected", answer("HTTP/1.1 200 OK"), Spec{HTTPPath: "/", Expect: mustStatus(t, "204")}, "status 200"},
		{"closed", func(c net.Conn, _ int) { readHead(c) }, Spec{HTTPPath: "/"}, "connection closed before the status line"},
		{"not HTTP", func(c net.Conn, _ int) { io.WriteString(c, "SSH-2.0-OpenSSH_9.6\r\n"); hold(c, 0) }, Spec{HTTPPath: "/"}, `bad response: "S*`},
		{"bad status line", func(c net.Conn, _ int) { readHead(c); io.WriteString(c, "HTTP/1.1 2OO OK\r\n\r\n"); hold(c, 0) },
			Spec{HTTPPath: "/"}, `bad response: "HTTP/1.1 2OO OK"`},
		{"binary quoted", func(c net.Conn, _ int) { readHead(c); io.WriteString(c, "HTTP/1.1 200 O\x00K\r\n"); hold(c, 0) },
			Spec{HTTPPath: "/"}, `bad response: "HTTP/1.1 200 O\x00K"`},
		{"endless line", func(c net.Conn, _ int) {
			readHead(c)
			io.WriteString(c, "HTTP/1.1 200 OK"+strings.Repeat("k", 2*maxStatusLine))
			hold(c, 0)
		}, Spec{HTTPPath: "/"}, `bad response: "HTTP/1.1 200 OKkkkkkkkkkkkkkkkkk"... (status line longer than 4 KiB)`},
		{"unsendable", nil, Spec{HTTPPath: "/a b"}, "bad check: method, path or host cannot be sent"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.spec
			s.Addr = refusing
			if tt.handle != nil {
				s.Addr = serve(t, tt.handle).addr
			}
			if s.Timeout == 0 {
				s.Timeout = testTimeout
			}
			err := newProber(s.withDefaults(), addrOf(s)).check(t.Context())
			if err == nil {
				t.Fatal("check passed")
			}
			got := err.Error()
			if prefix, ok := strings.CutSuffix(tt.want, "*"); ok {
				if !strings.HasPrefix(got, prefix) {
					t.Errorf("detail %q, want it to start with %q", got, prefix)
				}
			} else if got != tt.want {
				t.Errorf("detail %q, want %q", got, tt.want)
			}
		})
	}
}

// addrOf is the target of a check that connects to its Spec's Addr.
func addrOf(s Spec) func() string { return func() string { return s.Addr } }
