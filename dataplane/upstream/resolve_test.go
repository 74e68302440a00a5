package upstream

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/internal/poll"
	"github.com/sluice-lb/sluice/internal/syncbuf"
)

const defaultTestTimeout = 5 * time.Second

var (
	ip1 = netip.MustParseAddr("127.0.0.1")
	ip2 = netip.MustParseAddr("127.0.0.2")
)

// twoBackends starts a server on 127.0.0.1 and one on 127.0.0.2, on the
// same port, so that one name:port can point at either. Each writes its last
// address byte ("1" or "2") to every connection, then reads it to the end.
func twoBackends(t *testing.T) (port uint16) {
	t.Helper()
	for range 20 {
		a, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port = uint16(a.Addr().(*net.TCPAddr).Port)
		b, err := net.Listen("tcp", netip.AddrPortFrom(ip2, port).String())
		if err != nil {
			a.Close()
			continue // port taken on 127.0.0.2, or no such address
		}
		serve(t, a, "1")
		serve(t, b, "2")
		return port
	}
	t.Skip("cannot listen on 127.0.0.1 and 127.0.0.2 with one port")
	return 0
}

func serve(t *testing.T, ln net.Listener, name string) {
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				c.Write([]byte(name))
				io.Copy(io.Discard, c)
				c.Close()
			}()
		}
	}()
}

// fakeDNS answers lookups with what the test set last. While gate is
// non-nil, lookups wait for it to close.
type fakeDNS struct {
	mu    sync.Mutex
	addrs []netip.Addr
	err   error
	gate  chan struct{}
	calls int
	hosts []string
}

func newFakeDNS(addrs ...netip.Addr) *fakeDNS { return &fakeDNS{addrs: addrs} }

func (f *fakeDNS) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	f.mu.Lock()
	gate := f.gate
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.hosts = append(f.hosts, host)
	return slices.Clone(f.addrs), f.err
}

func (f *fakeDNS) set(err error, addrs ...netip.Addr) {
	f.mu.Lock()
	f.addrs, f.err = addrs, err
	f.mu.Unlock()
}

func (f *fakeDNS) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// waitFor polls cond until it holds, failing the test after
// defaultTestTimeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	poll.Until(t, defaultTestTimeout, time.Millisecond, what, cond)
}

// waitLookups waits until n more lookups than now have completed; as the
// resolver looks up one at a time, all but the last were fully handled.
func waitLookups(t *testing.T, f *fakeDNS, n int) {
	t.Helper()
	waitTotal(t, f, f.count()+n)
}

// waitTotal waits until n lookups in all have completed.
func waitTotal(t *testing.T, f *fakeDNS, n int) {
	t.Helper()
	waitFor(t, strconv.Itoa(n)+" lookups", func() bool { return f.count() >= n })
}

// answeredBy dials ep and returns the connection and which backend wrote
// to it.
func answeredBy(t *testing.T, ep *Endpoint) (net.Conn, string) {
	t.Helper()
	c, err := ep.Dial(context.Background(), time.Second)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c, readName(t, c)
}

func readName(t *testing.T, c net.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(defaultTestTimeout))
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read backend name: %v", err)
	}
	c.SetReadDeadline(time.Time{})
	return string(b)
}

func resolvedTo(ep *Endpoint, ip netip.Addr) func() bool {
	return func() bool {
		ap, ok := ep.Resolved()
		return ok && ap.Addr() == ip
	}
}

func TestResolverDialsResolvedAddress(t *testing.T) {
	port := twoBackends(t)
	dns := newFakeDNS(ip2)
	ep := New("c", "e", "db.test:"+strconv.Itoa(int(port)))
	defer ep.Shutdown()
	if _, ok := ep.Resolved(); ok {
		t.Fatal("Resolved before any lookup: ok = true")
	}
	ep.StartResolver(time.Hour, dns.lookup, nil)
	if _, got := answeredBy(t, ep); got != "2" {
		t.Errorf("answered by backend %s, want 2 (the resolved address)", got)
	}
	if ap, ok := ep.Resolved(); !ok || ap != netip.AddrPortFrom(ip2, port) {
		t.Errorf("Resolved = %v, %v; want %v, true", ap, ok, netip.AddrPortFrom(ip2, port))
	}
	dns.mu.Lock()
	hosts := slices.Clone(dns.hosts)
	dns.mu.Unlock()
	if len(hosts) != 1 || hosts[0] != "db.test" {
		t.Errorf("looked up %q, want [db.test] (one lookup, shared by the resolver and the dial)", hosts)
	}
}

func TestResolverFollowsNewAddress(t *testing.T) {
	port := twoBackends(t)
	dns := newFakeDNS(ip1)
	ep := New("c", "e", "db.test:"+strconv.Itoa(int(port)))
	defer ep.Shutdown()
	ep.StartResolver(5*time.Millisecond, dns.lookup, nil)
	old, got := answeredBy(t, ep)
	if got != "1" {
		t.Fatalf("answered by backend %s, want 1", got)
	}

	// Still in a reordered answer: kept.
	dns.set(nil, ip2, ip1)
	waitLookups(t, dns, 2)
	if _, got := answeredBy(t, ep); got != "1" {
		t.Errorf("after the answer [%v %v]: answered by backend %s, want 1 (the address in use is still listed)", ip2, ip1, got)
	}

	// Gone from the answer: moved.
	dns.set(nil, ip2)
	waitFor(t, "the new address", resolvedTo(ep, ip2))
	if _, got := answeredBy(t, ep); got != "2" {
		t.Errorf("after the answer [%v]: answered by backend %s, want 2", ip2, got)
	}
	if closed(old) {
		t.Error("the connection to the old address was closed")
	}
	if _, err := old.Write([]byte("x")); err != nil {
		t.Errorf("write on the connection to the old address: %v", err)
	}
}

func TestResolverKeepsAddressOnFailure(t *testing.T) {
	port := twoBackends(t)
	dns := newFakeDNS(ip2)
	var logs syncbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ep := New("c", "e", "db.test:"+strconv.Itoa(int(port)))
	defer ep.Shutdown()
	ep.StartResolver(2*time.Millisecond, dns.lookup, log)
	waitFor(t, "the first address", resolvedTo(ep, ip2))

	warnings := func() int { return strings.Count(logs.String(), "level=WARN") }
	dns.set(errors.New("SERVFAIL"))
	waitLookups(t, dns, 3)
	dns.set(nil) // an empty answer is a failure too
	waitLookups(t, dns, 3)
	if !resolvedTo(ep, ip2)() {
		ap, ok := ep.Resolved()
		t.Errorf("after failed lookups, Resolved = %v, %v; want %v (the last address)", ap, ok, ip2)
	}
	if _, got := answeredBy(t, ep); got != "2" {
		t.Errorf("after failed lookups: answered by backend %s, want 2 (the last address)", got)
	}
	if n := warnings(); n != 1 {
		t.Errorf("%d warnings for one streak of failures, want 1; log:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "SERVFAIL") || !strings.Contains(logs.String(), "host=db.test") {
		t.Errorf("warning does not name the host and the error; log:\n%s", logs.String())
	}

	dns.set(nil, ip2)
	waitFor(t, "the recovery to be logged", func() bool { return strings.Contains(logs.String(), "resolved again") })
	dns.set(errors.New("SERVFAIL"))
	waitLookups(t, dns, 3)
	if n := warnings(); n != 2 {
		t.Errorf("%d warnings for two streaks of failures, want 2; log:\n%s", n, logs.String())
	}
}

func TestDialBeforeFirstResolution(t *testing.T) {
	port := twoBackends(t)
	addr := "db.test:" + strconv.Itoa(int(port))

	t.Run("waits for the first lookup", func(t *testing.T) {
		dns := newFakeDNS(ip2)
		dns.gate = make(chan struct{})
		ep := New("c", "e", addr)
		defer ep.Shutdown()
		ep.StartResolver(time.Hour, dns.lookup, nil)
		type result struct {
			c   net.Conn
			err error
		}
		res := make(chan result, 1)
		go func() {
			c, err := ep.Dial(context.Background(), defaultTestTimeout)
			res <- result{c, err}
		}()
		select {
		case r := <-res:
			t.Fatalf("Dial returned (%v) before the name was resolved", r.err)
		case <-time.After(20 * time.Millisecond):
		}
		close(dns.gate)
		r := <-res
		if r.err != nil {
			t.Fatalf("Dial: %v", r.err)
		}
		defer r.c.Close()
		if got := readName(t, r.c); got != "2" {
			t.Errorf("answered by backend %s, want 2", got)
		}
	})

	t.Run("looks up itself when the first lookup failed", func(t *testing.T) {
		dns := newFakeDNS()
		dns.set(errors.New("timeout"))
		ep := New("c", "e", addr)
		defer ep.Shutdown()
		ep.StartResolver(time.Hour, dns.lookup, nil) // no second background lookup
		waitTotal(t, dns, 1)
		if _, err := ep.Dial(context.Background(), time.Second); err == nil {
			t.Fatal("Dial while the name does not resolve: no error")
		}
		dns.set(nil, ip2)
		if _, got := answeredBy(t, ep); got != "2" {
			t.Errorf("answered by backend %s, want 2", got)
		}
		if !resolvedTo(ep, ip2)() {
			t.Error("the dial's own lookup was not kept for later dials")
		}
	})
}

func TestResolverStops(t *testing.T) {
	port := twoBackends(t)
	addr := "db.test:" + strconv.Itoa(int(port))
	stopped := func(t *testing.T, r *resolver) {
		t.Helper()
		select {
		case <-r.done:
		case <-time.After(defaultTestTimeout):
			t.Fatal("resolver goroutine still running")
		}
	}

	t.Run("Shutdown", func(t *testing.T) {
		dns := newFakeDNS(ip1)
		ep := New("c", "e", addr)
		ep.StartResolver(time.Millisecond, dns.lookup, nil)
		r := ep.res.Load()
		waitLookups(t, dns, 2)
		ep.Shutdown()
		stopped(t, r)
		n := dns.count()
		time.Sleep(20 * time.Millisecond)
		if dns.count() != n {
			t.Errorf("%d lookups after Shutdown", dns.count()-n)
		}
		ep.StartResolver(time.Millisecond, dns.lookup, nil)
		if ep.res.Load() != nil {
			t.Error("StartResolver after Shutdown started a resolver")
		}
	})

	t.Run("StopResolver during a lookup", func(t *testing.T) {
		dns := newFakeDNS(ip1)
		dns.gate = make(chan struct{}) // never opened: the lookup hangs
		ep := New("c", "e", addr)
		defer ep.Shutdown()
		ep.StartResolver(time.Millisecond, dns.lookup, nil)
		r := ep.res.Load()
		ep.StopResolver()
		stopped(t, r)
		// A new one can be started, and resolves.
		dns.mu.Lock()
		dns.gate = nil
		dns.mu.Unlock()
		ep.StartResolver(time.Hour, dns.lookup, nil)
		if _, got := answeredBy(t, ep); got != "1" {
			t.Errorf("after a restart: answered by backend %s, want 1", got)
		}
	})
}

func TestResolverRefreshChange(t *testing.T) {
	dns := newFakeDNS(ip1)
	ep := New("c", "e", "db.test:80")
	defer ep.Shutdown()
	ep.StartResolver(time.Hour, dns.lookup, nil)
	waitTotal(t, dns, 1)
	time.Sleep(20 * time.Millisecond)
	if n := dns.count(); n != 1 {
		t.Fatalf("%d lookups within 20ms at a refresh of 1h, want 1", n)
	}
	ep.StartResolver(time.Millisecond, dns.lookup, nil) // as on the next apply
	waitLookups(t, dns, 3)
	ep.StartResolver(time.Hour, dns.lookup, nil)
	// One lookup may still come: the 1ms timer may have fired already.
	// Every lookup from now on sets the next at the new refresh, 1h.
	n := dns.count()
	time.Sleep(50 * time.Millisecond)
	if got := dns.count(); got > n+1 {
		t.Errorf("%d lookups within 50ms after the refresh went back to 1h, want at most 1", got-n)
	}
}

func TestIPEndpointNeedsNoResolver(t *testing.T) {
	addr := listen(t)
	dns := newFakeDNS(ip2)
	ep := New("c", "e", addr)
	defer ep.Shutdown()
	if ap, ok := ep.Resolved(); !ok || ap.String() != addr {
		t.Errorf("Resolved = %v, %v; want %s, true", ap, ok, addr)
	}
	ep.StartResolver(time.Millisecond, dns.lookup, nil)
	if ep.res.Load() != nil {
		t.Error("StartResolver started a resolver for an IP address")
	}
	c, err := ep.Dial(context.Background(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if c.RemoteAddr().String() != addr {
		t.Errorf("dialed %v, want %s", c.RemoteAddr(), addr)
	}
	if dns.count() != 0 {
		t.Errorf("%d lookups for an IP address", dns.count())
	}
}
