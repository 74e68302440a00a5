// Package health runs active health checks against endpoints, in the manner
// of HAProxy's
//
//	server ... check inter 2s fastinter 500ms downinter 5s fall 3 rise 2
//	option httpchk GET /health
//	http-check expect status 200-399
//	spread-checks 10
//
// A Checker keeps one timer per checked endpoint, and a goroutine only while
// one of its checks runs: a node checking 100k endpoints holds 100k timers,
// not 100k parked goroutines and their stacks. The state of an endpoint is
// kept by address key across snapshots, so an endpoint that survives an
// apply keeps its state, and a change of check settings does not send a
// down endpoint back into rotation.
package health

import (
	"github.com/sluice-lb/sluice/snapshot"

	"context"
	"crypto/tls"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// State is what checks know of an endpoint.
type State uint8

const (
	// Unknown: no check has concluded yet. Pickers treat it as up, so a
	// node that just started does not fail over to backups before it
	// knows better (DESIGN problem 4).
	Unknown State = iota
	Up
	Down
)

func (s State) String() string {
	switch s {
	case Up:
		return "UP"
	case Down:
		return "DOWN"
	}
	return "UNKNOWN"
}

// Spec says how to check one endpoint. It is a comparable value: Reconcile
// compares specs with != to know which checks to restart, so every field
// is a value type (no slice or map; the one pointer, TLS, compares by
// identity, and its owner keeps it while it does not change).
//
// A field left at zero takes the default its comment gives: a Spec that
// sets only Key, Addr, Interval, Timeout, Fall and Rise is a TCP check
// with exact waits.
type Spec struct {
	// Key identifies the endpoint across snapshots (cluster/name@address).
	Key  string
	Addr string

	// Interval between two checks while the endpoint is up or unknown and
	// its last check agreed (HAProxy's "inter"). Default DefaultInterval.
	Interval time.Duration
	// Timeout of one check: of the connect for a TCP check, of the whole
	// exchange for an HTTP check. Default Interval.
	Timeout time.Duration
	// Fall is how many failed checks in a row take an endpoint down, Rise
	// how many passed checks in a row bring a down endpoint back up.
	// Values below 1 mean 1.
	Fall int
	Rise int

	// FastInterval between two checks while the endpoint changes state:
	// its last check went against its state, but fewer than Fall (or
	// Rise) times in a row (HAProxy's "fastinter"). Default Interval.
	FastInterval time.Duration
	// DownInterval between two checks while the endpoint is down and its
	// last check failed too (HAProxy's "downinter"). Default Interval.
	DownInterval time.Duration
	// Jitter spreads checks over time so a fleet does not check in
	// lockstep (HAProxy's "spread-checks"): every wait is multiplied by a
	// random factor in [1-Jitter, 1+Jitter]. 0 means exact waits; values
	// are clamped to [0, 0.5] (NaN is 0, but a NaN spec never equals
	// itself, so Reconcile would restart its check every time). Whatever
	// Jitter, the first check of a probe (a new endpoint, or changed
	// settings) waits a random time in [0, max(Jitter, 0.1) × the
	// interval of the endpoint's state], or longer when one Reconcile or
	// Update starts many probes at once (see firstWait).
	Jitter float64

	// HTTPPath, when not empty, makes the check an HTTP/1.1 request
	// instead of a TCP connect ("option httpchk"):
	//
	//	HTTPMethod HTTPPath HTTP/1.1\r\n
	//	Host: HTTPHost\r\n
	//	User-Agent: sluice-health\r\n
	//	Connection: close\r\n
	//	\r\n
	//
	// over a fresh connection. The endpoint passes iff it answers, within
	// Timeout and 4 KiB, a status line "HTTP/1.x NNN ..." whose NNN is in
	// Expect. Only the status line is read. A method, path or host that
	// cannot be sent as is (spaces, controls, non-ASCII) fails every
	// check; validate them before. The three fields and Expect mean
	// nothing to a TCP check.
	HTTPPath string
	// HTTPMethod of the request. Default GET.
	HTTPMethod string
	// HTTPHost is the Host header. Default Addr.
	HTTPHost string
	// Expect is the set of statuses that pass ("http-check expect
	// status"), from snapshot.ParseStatusSpec. The zero snapshot.StatusSpec is
	// snapshot.DefaultExpect, 200-399.
	Expect snapshot.StatusSpec

	// TLS, when set, is the configuration of the endpoint's cluster
	// (upstream.ClientConfig makes it the endpoint's): a TCP check then
	// passes only once the TLS handshake completes, certificate verified,
	// and an HTTP check speaks HTTPS. A certificate that does not verify
	// fails the check with the reason ("TLS: x509: certificate signed by
	// unknown authority"). Timeout covers the handshake too.
	TLS *tls.Config
	// SendProxy, 1 or 2, makes every check start its connection with a
	// PROXY header of that version saying the node speaks for itself (v1
	// "PROXY UNKNOWN", v2 LOCAL), as HAProxy's checks do for a server
	// with send-proxy: an endpoint that expects a header refuses a
	// connection without one. 0: no header.
	SendProxy int
	// HTTP2 makes an HTTP check speak HTTP/2, for the endpoints of a
	// cluster with http2, which may speak nothing else: the same request
	// as one stream (h2 in ALPN over TLS, h2c with prior knowledge in
	// clear), passing iff the response's status is in Expect. A TCP check
	// is unchanged.
	HTTP2 bool
}

// DefaultInterval is the Interval of a Spec that sets none, as HAProxy's.
const DefaultInterval = 2 * time.Second

const (
	// minSpread is the least share of an interval over which the first
	// checks of a fleet are spread, even with no jitter.
	minSpread = 0.1
	maxJitter = 0.5
)

// withDefaults returns s with every zero or out-of-range field replaced by
// what it means.
func (s Spec) withDefaults() Spec {
	if s.Interval <= 0 {
		s.Interval = DefaultInterval
	}
	if s.FastInterval <= 0 {
		s.FastInterval = s.Interval
	}
	if s.DownInterval <= 0 {
		s.DownInterval = s.Interval
	}
	if s.Timeout <= 0 {
		s.Timeout = s.Interval
	}
	switch {
	case !(s.Jitter > 0): // also NaN
		s.Jitter = 0
	case s.Jitter > maxJitter:
		s.Jitter = maxJitter
	}
	s.Fall = max(s.Fall, 1)
	s.Rise = max(s.Rise, 1)
	return s
}

// nextInterval is the wait after a check that left the endpoint in state
// with ok passed or fail failed checks in a row: downinter while down and
// failing, fastinter while going down or coming back up, inter otherwise.
func (s *Spec) nextInterval(state State, ok, fail int) time.Duration {
	switch {
	case state == Down && ok == 0:
		return s.DownInterval
	case state == Down, fail > 0:
		return s.FastInterval
	}
	return s.Interval
}

// jittered returns d multiplied by a random factor in [1-jitter, 1+jitter].
func jittered(d time.Duration, jitter float64) time.Duration {
	if jitter <= 0 {
		return d
	}
	return time.Duration(float64(d) * (1 + jitter*(2*rand.Float64()-1)))
}

// firstGap is the least average time between the first checks of the
// probes one Reconcile or Update starts, unless their interval is too
// short to fit them all: a node applying a snapshot with 10k checked
// endpoints spreads their first checks over their interval, as HAProxy
// spreads the first checks of a farm, rather than connecting 10k times in a
// tenth of it while it should be serving.
const firstGap = time.Millisecond

// firstWait returns a random wait before the first check of a probe, one
// of batch started together, so that the endpoints of a node that just
// started or applied a snapshot are not all checked at once: in [0,
// max(jitter, minSpread) × d], or up to [0, d] when batch × firstGap is
// longer than that.
func firstWait(d time.Duration, jitter float64, batch int) time.Duration {
	window := time.Duration(float64(d) * max(jitter, minSpread))
	window = max(window, min(d, time.Duration(batch)*firstGap))
	return time.Duration(rand.Int64N(int64(window) + 1))
}

// Checker runs the checks of every endpoint of a node and calls onChange,
// from the goroutine of the check, after any endpoint goes down or comes
// back up. onChange must not block for long.
type Checker struct {
	onChange func(key string)
	now      func() time.Time
	changes  atomic.Uint64 // see Changes
	dialAddr func(key, addr string) string
	// armed, when a test sets it, is told every wait a probe arms its
	// timer with, just before: tests check the waits the Checker asks
	// for, which a busy machine does not change, rather than only time
	// the checks, which it delays.
	armed func(d time.Duration)

	mu      sync.Mutex
	running map[string]*probe
	states  map[string]*Status
}

// Status is what checks know of one endpoint, for operators.
type Status struct {
	State State
	// Since is when State last changed; for Unknown, when checking began.
	Since time.Time
	// Detail is why the last check failed ("connection refused", "timeout
	// after 1s", "status 500", "bad response: ..."), kept while the
	// endpoint is down; empty once a check passed and it is not down.
	Detail string
}

// probe is the checking of one endpoint: a timer that runs the next check
// on a goroutine of its own, which arms the timer again when it is done.
// The checks of a probe run one at a time, so ok, fail and pr are only
// touched by the check running.
type probe struct {
	c    *Checker
	spec Spec // as given, compared by Reconcile
	s    Spec // with defaults

	ok, fail int
	pr       prober // made by the first check

	mu      sync.Mutex
	timer   *time.Timer
	stopped bool
	cancel  context.CancelFunc // of the check running, if any
	running sync.WaitGroup     // the check running, if any
}

// NewChecker returns a Checker that runs nothing until Reconcile.
func NewChecker(onChange func(key string)) *Checker {
	return &Checker{onChange: onChange, now: time.Now, running: map[string]*probe{}, states: map[string]*Status{}}
}

// DialVia makes every check connect to f(key, addr) instead of the
// Spec's Addr: the node passes the address its traffic uses, so that an
// endpoint named by DNS is checked where requests go, and stays up while
// DNS is down if it answers there (last known address). The Host of HTTP
// checks stays Addr's. Call it before the first Reconcile.
func (c *Checker) DialVia(f func(key, addr string) string) { c.dialAddr = f }

// State returns the state of the endpoint with the given key; Unknown for an
// endpoint that is not checked.
func (c *Checker) State(key string) State {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.states[key]; st != nil {
		return st.State
	}
	return Unknown
}

// Status returns what checks know of the endpoint with the given key, and
// false for an endpoint that is not checked.
func (c *Checker) Status(key string) (Status, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.states[key]; st != nil {
		return *st, true
	}
	return Status{}, false
}

// Changes counts the state changes of every endpoint so far, Unknown to Up
// included (which onChange is not told of): a reporter that saw one value
// has nothing new to show until it grows.
func (c *Checker) Changes() uint64 { return c.changes.Load() }

// Reconcile makes the set of running checks equal to specs: new endpoints
// start being checked, removed ones stop, and changed settings restart the
// endpoint's check while keeping its state.
func (c *Checker) Reconcile(specs []Spec) {
	want := make(map[string]bool, len(specs))
	for _, s := range specs {
		want[s.Key] = true
	}
	var remove []string
	c.mu.Lock()
	for key := range c.running {
		if !want[key] {
			remove = append(remove, key)
		}
	}
	c.mu.Unlock()
	c.Update(specs, remove)
}

// Update changes some checks and leaves the others alone: the endpoints of
// specs are checked as they say from now on (started if new, restarted
// keeping their state if their settings changed, untouched otherwise), and
// the endpoints whose keys are in remove are no longer checked and
// forgotten. A key in both is checked. A node applying a snapshot that
// changed a few of its 10k clusters updates the checks of those few.
// Update returns once the checks it stopped have ended.
func (c *Checker) Update(specs []Spec, remove []string) {
	var stop, start []*probe
	var kept map[string]bool // keys both in specs and in remove
	if len(specs) > 0 && len(remove) > 0 {
		kept = make(map[string]bool, len(specs))
		for _, s := range specs {
			kept[s.Key] = true
		}
	}
	now := c.now()
	c.mu.Lock()
	for _, key := range remove {
		if kept[key] {
			continue
		}
		if p, ok := c.running[key]; ok {
			stop = append(stop, p)
			delete(c.running, key)
		}
		delete(c.states, key)
	}
	for _, s := range specs {
		if p, ok := c.running[s.Key]; ok {
			if p.spec == s {
				continue
			}
			stop = append(stop, p)
		}
		if c.states[s.Key] == nil {
			c.states[s.Key] = &Status{State: Unknown, Since: now}
		}
		p := &probe{c: c, spec: s, s: s.withDefaults()}
		c.running[s.Key] = p
		start = append(start, p)
	}
	for _, p := range start {
		first := p.s.Interval
		if c.states[p.s.Key].State == Down {
			first = p.s.DownInterval
		}
		d := firstWait(first, p.s.Jitter, len(start))
		if c.armed != nil {
			c.armed(d)
		}
		p.mu.Lock()
		p.timer = time.AfterFunc(d, p.check)
		p.mu.Unlock()
	}
	c.mu.Unlock()
	for _, p := range stop {
		p.stop()
	}
}

// Stop ends every check.
func (c *Checker) Stop() { c.Reconcile(nil) }

// stop ends the probe's checks, and waits for the one running, if any, to
// end.
func (p *probe) stop() {
	p.mu.Lock()
	p.stopped = true
	if p.timer != nil {
		p.timer.Stop()
	}
	if p.cancel != nil {
		p.cancel()
	}
	p.mu.Unlock()
	p.running.Wait()
}

// check runs one check of the probe, on the goroutine of its timer, and
// arms the timer for the next.
func (p *probe) check() {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p.cancel = cancel
	p.running.Add(1)
	p.mu.Unlock()
	defer p.running.Done()

	c, s := p.c, &p.s
	if p.pr == nil {
		target := func() string { return s.Addr }
		if c.dialAddr != nil {
			target = func() string { return c.dialAddr(s.Key, s.Addr) }
		}
		p.pr = newProber(*s, target)
	}
	err := p.pr.check(ctx)
	if ctx.Err() != nil {
		return // a check cut short says nothing of the endpoint
	}
	if err == nil {
		p.ok, p.fail = p.ok+1, 0
	} else {
		p.ok, p.fail = 0, p.fail+1
	}
	now := c.now()
	c.mu.Lock()
	st := c.states[s.Key]
	current := c.running[s.Key] == p && st != nil
	var cur, next State
	if current {
		cur = st.State
		next = cur
		switch {
		case p.ok >= s.Rise, cur == Unknown && p.ok > 0:
			// Like HAProxy, an endpoint starts as up: its first
			// successful check confirms it without waiting for rise.
			next = Up
		case p.fail >= s.Fall:
			next = Down
		}
		if next != cur {
			st.State, st.Since = next, now
			c.changes.Add(1)
		}
		switch {
		case err != nil:
			st.Detail = err.Error()
		case next != Down:
			st.Detail = ""
		}
	}
	c.mu.Unlock()
	// Only going down or coming back from down changes what pickers
	// may choose; UNKNOWN -> UP does not, so it rebuilds nothing
	// (a rebuild restarts the round-robin sequence).
	if current && (next == Down) != (cur == Down) && c.onChange != nil {
		c.onChange(s.Key)
	}
	p.mu.Lock()
	p.cancel = nil
	if !p.stopped {
		d := jittered(s.nextInterval(next, p.ok, p.fail), s.Jitter)
		if c.armed != nil {
			c.armed(d)
		}
		p.timer.Reset(d)
	}
	p.mu.Unlock()
}
