package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync/atomic"
	"time"
)

// Background resolution of endpoint names, after HAProxy's
// "resolvers ... hold valid": an endpoint whose host is a DNS name looks it
// up every refresh interval on its own goroutine and dials the address it
// found last, so connecting never waits on DNS and goes on working while DNS
// is down.
//
// Which address: the first valid one of the answer, unless the address in
// use is still in the answer, in which case it is kept. Round-robin DNS
// that reorders its answer does not move the endpoint; a record that drops
// the address does. An endpoint is one server, so it uses one address;
// spreading over several is the job of several endpoints.
//
// When a lookup fails or answers no address, the last address is kept and
// a warning is logged once per streak of failures; the first success after
// it is logged too. Connections already open are never touched by a change
// of address: they end as they would have.

// DefaultRefresh is how often a name is looked up when the cluster does not
// say (its dns_refresh).
const DefaultRefresh = 30 * time.Second

// lookupTimeout bounds one background lookup.
const lookupTimeout = 10 * time.Second

// LookupFunc returns the addresses of host. It must return once ctx is done.
type LookupFunc func(ctx context.Context, host string) ([]netip.Addr, error)

// DefaultLookup looks host up with the system's resolver (A and AAAA).
func DefaultLookup(ctx context.Context, host string) ([]netip.Addr, error) {
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

// ErrNoAddress is the error of a lookup that answered no address.
var ErrNoAddress = errors.New("upstream: name has no address")

// target is what dial connects to.
type target struct {
	ap   netip.AddrPort
	dial string // ap as host:port, made once rather than on every dial
}

// resolver is the state of one endpoint's background resolution. Only the
// goroutine of resolveLoop looks the name up on schedule; dial reads the
// result through Endpoint.resolved.
type resolver struct {
	lookup  LookupFunc
	log     *slog.Logger
	refresh atomic.Int64       // a time.Duration
	kick    chan struct{}      // refresh changed; buffered 1
	first   chan struct{}      // closed when the first lookup is over, or on stop
	cancel  context.CancelFunc // stops the goroutine and its lookup
	done    chan struct{}      // closed when the goroutine has ended
}

// StartResolver keeps the endpoint's host resolved: it is looked up at once
// and then about every refresh (DefaultRefresh when refresh <= 0), on a
// goroutine of its own, with lookup (DefaultLookup when nil); log (nil: no
// logging) gets a warning when a streak of failed lookups begins. Dial and
// DialSession then connect to the address found last. Until the first
// lookup is over, they wait for it; if it failed, they look the name up
// themselves, within their timeout.
//
// StartResolver does nothing when the host is an IP address or the
// endpoint is draining. When the resolver already runs, it only changes its
// refresh interval (the next lookup is then refresh from now); so it can be
// called for every endpoint on every apply. Drain, Shutdown and StopResolver stop it.
func (e *Endpoint) StartResolver(refresh time.Duration, lookup LookupFunc, log *slog.Logger) {
	if e.host == "" || e.isIP {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return
	}
	if r := e.res.Load(); r != nil {
		r.setRefresh(refresh)
		return
	}
	if lookup == nil {
		lookup = DefaultLookup
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &resolver{
		lookup: lookup,
		log:    log.With("cluster", e.Cluster, "endpoint", e.Name, "host", e.host),
		kick:   make(chan struct{}, 1),
		first:  make(chan struct{}),
		cancel: cancel,
		done:   make(chan struct{}),
	}
	r.refresh.Store(int64(orDefault(refresh)))
	e.res.Store(r)
	go e.resolveLoop(ctx, r)
}

// StopResolver stops the background resolution and waits for its goroutine
// to end. The address found last stays in use. It does nothing when no
// resolver runs.
func (e *Endpoint) StopResolver() {
	e.mu.Lock()
	r := e.res.Swap(nil)
	e.mu.Unlock()
	if r == nil {
		return
	}
	r.cancel()
	<-r.done
}

// Resolved is the address Dial connects to: the endpoint's own when its
// host is an IP address, else the one its name resolved to last. ok is
// false while a name was never resolved.
func (e *Endpoint) Resolved() (addr netip.AddrPort, ok bool) {
	if t := e.resolved.Load(); t != nil {
		return t.ap, true
	}
	return netip.AddrPort{}, false
}

func orDefault(d time.Duration) time.Duration {
	if d <= 0 {
		return DefaultRefresh
	}
	return d
}

func (r *resolver) setRefresh(d time.Duration) {
	d = orDefault(d)
	if time.Duration(r.refresh.Swap(int64(d))) == d {
		return
	}
	select {
	case r.kick <- struct{}{}:
	default: // a kick is pending already
	}
}

// interval is the time to the next lookup: refresh, shortened by up to an
// eighth at random so that endpoints created together do not query DNS in
// lockstep forever.
func (r *resolver) interval() time.Duration {
	d := time.Duration(r.refresh.Load())
	return d - rand.N(d/8+1)
}

func (e *Endpoint) resolveLoop(ctx context.Context, r *resolver) {
	defer close(r.done)
	first := r.first
	defer func() {
		if first != nil {
			close(first) // stopped before the first lookup ended: release dials
		}
	}()
	t := time.NewTimer(0)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
			if first == nil { // else the first lookup is due at once anyway
				t.Reset(r.interval())
			}
			continue
		case <-t.C:
		}
		failing = e.lookupOnce(ctx, r, failing)
		if first != nil {
			close(first)
			first = nil
		}
		t.Reset(r.interval())
	}
}

// lookupOnce looks the name up and installs the answer. failing says
// whether the lookups before failed; it returns whether this one did.
func (e *Endpoint) lookupOnce(ctx context.Context, r *resolver, failing bool) bool {
	lctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	addrs, err := r.lookup(lctx, e.host)
	cancel()
	if ctx.Err() != nil {
		return failing // stopped; the answer no longer matters
	}
	old := e.resolved.Load()
	var t *target
	if err == nil {
		if t = e.choose(addrs, old); t == nil {
			err = ErrNoAddress
		}
	}
	if err != nil {
		if !failing {
			last := "none"
			if old != nil {
				last = old.dial
			}
			r.log.Warn("endpoint name not resolved; dialing the last address", "last", last, "error", err)
		}
		return true
	}
	if t != old {
		e.resolved.Store(t)
		if old == nil {
			r.log.Debug("endpoint name resolved", "address", t.dial)
		} else {
			r.log.Info("endpoint address changed", "from", old.dial, "to", t.dial)
		}
	}
	if failing {
		r.log.Info("endpoint name resolved again", "address", t.dial)
	}
	return false
}

// choose picks the address to use from a lookup's answer: cur (the one in
// use, may be nil) when it is still in the answer, else the first valid
// one. It returns nil when the answer has no valid address.
func (e *Endpoint) choose(addrs []netip.Addr, cur *target) *target {
	var first netip.Addr
	for _, a := range addrs {
		if !a.IsValid() {
			continue
		}
		a = a.Unmap()
		if cur != nil && a == cur.ap.Addr() {
			return cur
		}
		if !first.IsValid() {
			first = a
		}
	}
	if !first.IsValid() {
		return nil
	}
	ap := netip.AddrPortFrom(first, e.port)
	return &target{ap, ap.String()}
}

// resolveNow is dial's way to an address while the name was never
// resolved: wait for the resolver's first lookup, and when that failed,
// look the name up once more. ctx bounds both.
func (e *Endpoint) resolveNow(ctx context.Context, r *resolver) (*target, error) {
	select {
	case <-r.first:
	case <-ctx.Done():
		return nil, fmt.Errorf("upstream: resolve %s: %w", e.host, ctx.Err())
	}
	if t := e.resolved.Load(); t != nil {
		return t, nil
	}
	addrs, err := r.lookup(ctx, e.host)
	if err != nil {
		return nil, fmt.Errorf("upstream: resolve %s: %w", e.host, err)
	}
	t := e.choose(addrs, nil)
	if t == nil {
		return nil, fmt.Errorf("upstream: resolve %s: %w", e.host, ErrNoAddress)
	}
	if !e.resolved.CompareAndSwap(nil, t) {
		t = e.resolved.Load() // the resolver got there first; agree with it
	}
	return t, nil
}
