package health

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

const testTimeout = 5 * time.Second

func waitState(t *testing.T, c *Checker, key string, want State) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for c.State(key) != want {
		if time.Now().After(deadline) {
			t.Fatalf("state of %s = %v, want %v", key, c.State(key), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCheckerFallAndRise(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	changes := make(chan struct{}, 16)
	c := NewChecker(func(string) { changes <- struct{}{} })
	defer c.Stop()
	// A refused connect fails at once; the timeout is long only so that a
	// busy machine does not fail a connect that would pass, and flap.
	spec := Spec{Key: "c/e@" + addr, Addr: addr, Interval: 20 * time.Millisecond, Timeout: time.Second, Fall: 3, Rise: 2}
	c.Reconcile([]Spec{spec})
	waitState(t, c, spec.Key, Up)

	// Taken before the close, so before the first failed check arms its
	// wait for the second: the three take two intervals after it at least.
	start := time.Now()
	ln.Close()
	waitState(t, c, spec.Key, Down)
	if took := time.Since(start); took < 2*spec.Interval {
		t.Errorf("went down after %v, before fall=3 checks could fail", took)
	}

	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("could not rebind %s: %v", addr, err)
	}
	defer ln.Close()
	waitState(t, c, spec.Key, Up)
	// onChange is called just after the state shows.
	for i := range 2 {
		select {
		case <-changes:
		case <-time.After(5 * time.Second):
			t.Fatalf("onChange called %d times, want 2 (down, up)", i)
		}
	}
	if len(changes) != 0 {
		t.Errorf("onChange called %d times, want 2 (down, up; unknown -> up changes no picker)", 2+len(changes))
	}
}

func TestCheckerKeepsStateAcrossReconcile(t *testing.T) {
	// Nothing listens on this address: the endpoint goes down.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	c := NewChecker(nil)
	defer c.Stop()
	spec := Spec{Key: "c/e@" + addr, Addr: addr, Interval: 10 * time.Millisecond, Timeout: 50 * time.Millisecond, Fall: 1, Rise: 5}
	c.Reconcile([]Spec{spec})
	waitState(t, c, spec.Key, Down)

	spec.Interval = time.Hour // changed settings restart the check...
	c.Reconcile([]Spec{spec})
	if got := c.State(spec.Key); got != Down {
		t.Errorf("after reconcile state = %v, want DOWN kept", got)
	}
	c.Reconcile(nil) // ...and removal forgets it.
	if got := c.State(spec.Key); got != Unknown {
		t.Errorf("after removal state = %v, want UNKNOWN", got)
	}
}

// TestCheckerStatus: Status tells since when an endpoint is in its state
// and why its last check failed; Changes counts every change of state,
// UNKNOWN -> UP included.
func TestCheckerStatus(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	c := NewChecker(nil)
	defer c.Stop()
	spec := Spec{Key: "c/e@" + addr, Addr: addr, Interval: 20 * time.Millisecond, Timeout: time.Second, Fall: 2, Rise: 1}
	if _, ok := c.Status(spec.Key); ok {
		t.Fatal("Status of an endpoint never checked is known")
	}
	before := time.Now()
	c.Reconcile([]Spec{spec})
	if st, ok := c.Status(spec.Key); !ok || st.State != Unknown || st.Since.Before(before) || st.Detail != "" {
		t.Errorf("status once checking begins = %+v, %v; want UNKNOWN since the Reconcile, no detail", st, ok)
	}
	waitState(t, c, spec.Key, Up)
	up, _ := c.Status(spec.Key)
	if up.Detail != "" || up.Since.Before(before) {
		t.Errorf("status up = %+v, want since after %v, no detail", up, before)
	}
	if got := c.Changes(); got != 1 {
		t.Errorf("Changes = %d after UNKNOWN -> UP, want 1", got)
	}

	ln.Close()
	waitState(t, c, spec.Key, Down)
	down, _ := c.Status(spec.Key)
	if down.Detail != "connection refused" || !down.Since.After(up.Since) {
		t.Errorf("status down = %+v, want detail %q and since after %v", down, "connection refused", up.Since)
	}
	if got := c.Changes(); got != 2 {
		t.Errorf("Changes = %d after UP -> DOWN, want 2", got)
	}
	// Further failures keep the state, its since and its detail.
	time.Sleep(5 * spec.Interval)
	if again, _ := c.Status(spec.Key); again != down {
		t.Errorf("status while staying down = %+v, want %+v", again, down)
	}

	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("could not rebind %s: %v", addr, err)
	}
	defer ln.Close()
	waitState(t, c, spec.Key, Up)
	if back, _ := c.Status(spec.Key); back.Detail != "" || !back.Since.After(down.Since) {
		t.Errorf("status back up = %+v, want no detail, since after %v", back, down.Since)
	}
	if got := c.Changes(); got != 3 {
		t.Errorf("Changes = %d after DOWN -> UP, want 3", got)
	}
	c.Reconcile(nil)
	if _, ok := c.Status(spec.Key); ok {
		t.Error("Status still known once the endpoint is no longer checked")
	}
}

// server is a loopback TCP server that hands every connection to handle
// and records when it accepted each one.
type server struct {
	addr string

	mu      sync.Mutex
	accepts []time.Time
	conns   map[net.Conn]bool
	closed  bool
	arrived chan int // the number of accepts so far, after each accept
}

// serve starts a server; handle gets the connection and its index in the
// order of accepts, and the connection is closed when handle returns or the
// test ends.
func serve(t *testing.T, handle func(c net.Conn, i int)) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{addr: ln.Addr().String(), conns: map[net.Conn]bool{}, arrived: make(chan int, 1024)}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			if s.closed {
				s.mu.Unlock()
				c.Close()
				return
			}
			i := len(s.accepts)
			s.accepts = append(s.accepts, time.Now())
			s.conns[c] = true
			s.mu.Unlock()
			select {
			case s.arrived <- i + 1:
			default:
			}
			wg.Go(func() {
				defer c.Close()
				handle(c, i)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		s.closed = true
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		wg.Wait()
	})
	return s
}

// waitAccepts waits until the server has accepted n connections and
// returns their times.
func (s *server) waitAccepts(t *testing.T, n int) []time.Time {
	t.Helper()
	timeout := time.After(testTimeout)
	for {
		s.mu.Lock()
		if len(s.accepts) >= n {
			at := append([]time.Time(nil), s.accepts[:n]...)
			s.mu.Unlock()
			return at
		}
		s.mu.Unlock()
		select {
		case <-s.arrived:
		case <-timeout:
			t.Fatalf("%d checks arrived in %v, want %d", len(s.accepts), testTimeout, n)
		}
	}
}

// readHead reads a request head, up to its blank line, and returns it.
func readHead(c net.Conn) string {
	c.SetReadDeadline(time.Now().Add(testTimeout))
	r := bufio.NewReader(io.LimitReader(c, 64<<10))
	var head strings.Builder
	for {
		line, err := r.ReadString('\n')
		head.WriteString(line)
		if err != nil || line == "\r\n" {
			return head.String()
		}
	}
}

// answer returns a handler that reads the request and answers with the
// status line of plan[i] (the last one once plan runs out).
func answer(plan ...string) func(net.Conn, int) {
	return func(c net.Conn, i int) {
		readHead(c)
		io.WriteString(c, plan[min(i, len(plan)-1)]+"\r\nContent-Length: 0\r\n\r\n")
	}
}

// armedWaits records the waits the probes of a Checker arm their timers
// with, in order.
type armedWaits struct {
	mu    sync.Mutex
	waits []time.Duration
}

// recordWaits makes c record its waits; call it before the first Reconcile.
func recordWaits(c *Checker) *armedWaits {
	w := &armedWaits{}
	c.armed = func(d time.Duration) {
		w.mu.Lock()
		w.waits = append(w.waits, d)
		w.mu.Unlock()
	}
	return w
}

// first returns the first n waits recorded. With one probe, wait 0 is that
// of its first check and wait i+1 the one armed once check i ended, so that
// every wait before check n is recorded once check n arrived.
func (w *armedWaits) first(t *testing.T, n int) []time.Duration {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.waits) < n {
		t.Fatalf("%d waits armed, want %d", len(w.waits), n)
	}
	return append([]time.Duration(nil), w.waits[:n]...)
}

// TestCheckIntervals: checks come every Interval while up, every
// FastInterval once a check went against the state (falling and rising),
// and every DownInterval once down. The test checks the waits the Checker
// arms, which a busy machine does not change, and that the checks really
// came no sooner: only a lower bound, since a busy machine may run a timer
// late but never early.
func TestCheckIntervals(t *testing.T) {
	const ok, bad = "HTTP/1.1 200 OK", "HTTP/1.1 500 Internal Server Error"
	srv := serve(t, answer(ok, ok, bad, bad, bad, bad, bad, ok, ok, ok))
	changes := make(chan string, 16)
	c := NewChecker(func(key string) { changes <- key })
	defer c.Stop()
	armed := recordWaits(c)
	spec := Spec{
		Key: "c/e@" + srv.addr, Addr: srv.addr, HTTPPath: "/",
		Interval: 100 * time.Millisecond, FastInterval: 10 * time.Millisecond, DownInterval: 250 * time.Millisecond,
		Timeout: time.Second, Fall: 3, Rise: 2,
	}
	c.Reconcile([]Spec{spec})
	at := srv.waitAccepts(t, 10)
	waits := armed.first(t, 10)
	// The wait after check i depends on the state that check left.
	const inter, fast, down = "inter", "fast", "down"
	want := []string{
		inter, // 200: UNKNOWN -> UP
		inter, // 200: UP
		fast,  // 500: falling 1/3
		fast,  // 500: falling 2/3
		down,  // 500: DOWN
		down,  // 500: DOWN
		down,  // 500: DOWN
		fast,  // 200: rising 1/2
		inter, // 200: UP
	}
	wantWait := map[string]time.Duration{inter: spec.Interval, fast: spec.FastInterval, down: spec.DownInterval}
	for i, kind := range want {
		if w := waits[i+1]; w != wantWait[kind] {
			t.Errorf("after check %d: wait %v, want a %s wait (inter %v, fast %v, down %v)",
				i, w, kind, spec.Interval, spec.FastInterval, spec.DownInterval)
		}
		// Check i was accepted before it ended and its wait was armed, and
		// check i+1 after that wait fired.
		if gap := at[i+1].Sub(at[i]); gap < waits[i+1] {
			t.Errorf("check %d -> %d: %v apart, less than the %v wait armed between them", i, i+1, gap, waits[i+1])
		}
	}
	waitState(t, c, spec.Key, Up)
	if len(changes) != 2 {
		t.Errorf("onChange called %d times, want 2 (down, up)", len(changes))
	}
}

// TestTimeoutLongerThanInterval: a check may take longer than the
// interval, up to its timeout, and pass; the next check waits the interval
// from its end, so the endpoint never has two checks at once.
func TestTimeoutLongerThanInterval(t *testing.T) {
	held, release := make(chan struct{}), make(chan struct{})
	srv := serve(t, func(c net.Conn, i int) {
		readHead(c)
		if i == 0 {
			close(held)
			<-release
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	})
	c := NewChecker(nil)
	defer c.Stop()
	var once sync.Once
	releaseOnce := func() { once.Do(func() { close(release) }) }
	defer releaseOnce() // before Stop, which waits for the held check
	armed := recordWaits(c)
	spec := Spec{Key: "c/e@" + srv.addr, Addr: srv.addr, HTTPPath: "/", Interval: 100 * time.Millisecond, Timeout: time.Hour}
	c.Reconcile([]Spec{spec})
	<-held
	// Ten intervals: a checker that started checks by the clock would
	// have sent more. (A fast machine's proof; a slow one cannot fail it.)
	time.Sleep(10 * spec.Interval)
	srv.mu.Lock()
	n := len(srv.accepts)
	srv.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d checks while the first was held, want 1", n)
	}
	if c.State(spec.Key) != Unknown {
		t.Fatalf("state %v while the first check is held, want %v", c.State(spec.Key), Unknown)
	}
	ended := time.Now()
	releaseOnce()
	waitState(t, c, spec.Key, Up)
	at := srv.waitAccepts(t, 2)
	if w := armed.first(t, 2)[1]; w != spec.Interval {
		t.Errorf("wait after the held check %v, want the interval %v", w, spec.Interval)
	}
	if gap := at[1].Sub(ended); gap < spec.Interval {
		t.Errorf("second check %v after the first ended, want at least the interval %v", gap, spec.Interval)
	}
}

func TestNextInterval(t *testing.T) {
	s := Spec{Interval: 1, FastInterval: 2, DownInterval: 3, Fall: 3, Rise: 2}
	for _, tt := range []struct {
		state    State
		ok, fail int
		want     time.Duration
	}{
		{Unknown, 1, 0, 1},
		{Unknown, 0, 1, 2}, // a new endpoint failing goes down fast
		{Up, 5, 0, 1},
		{Up, 0, 1, 2},
		{Up, 0, 2, 2},
		{Down, 0, 3, 3},
		{Down, 0, 9, 3},
		{Down, 1, 0, 2},
	} {
		if got := s.nextInterval(tt.state, tt.ok, tt.fail); got != tt.want {
			t.Errorf("%v ok=%d fail=%d: interval %d, want %d", tt.state, tt.ok, tt.fail, got, tt.want)
		}
	}
}

func TestSpecDefaults(t *testing.T) {
	got := Spec{Jitter: 0.9}.withDefaults()
	want := Spec{Interval: DefaultInterval, FastInterval: DefaultInterval, DownInterval: DefaultInterval,
		Timeout: DefaultInterval, Fall: 1, Rise: 1, Jitter: 0.5}
	if got != want {
		t.Errorf("defaults %+v, want %+v", got, want)
	}
	for _, j := range []float64{-1, math.NaN(), math.Inf(-1)} {
		if got := (Spec{Jitter: j}).withDefaults().Jitter; got != 0 {
			t.Errorf("jitter %v -> %v, want 0", j, got)
		}
	}
	s := Spec{Interval: time.Second, FastInterval: time.Millisecond, DownInterval: time.Minute, Timeout: 2 * time.Second, Jitter: 0.2}
	if got := s.withDefaults(); got.FastInterval != s.FastInterval || got.DownInterval != s.DownInterval || got.Timeout != s.Timeout || got.Jitter != s.Jitter {
		t.Errorf("set fields changed: %+v -> %+v", s, got)
	}
}

// TestJitterBounds: waits spread over the whole of [1-j, 1+j] and never
// leave it; the first wait spreads over max(j, 0.1) of the interval.
func TestJitterBounds(t *testing.T) {
	const d = 100 * time.Millisecond
	if got := jittered(d, 0); got != d {
		t.Errorf("no jitter: wait %v, want %v", got, d)
	}
	for _, tt := range []struct {
		jitter, spread float64
	}{{0, 0.1}, {0.05, 0.1}, {0.3, 0.3}, {0.5, 0.5}} {
		lo, hi := time.Duration(float64(d)*(1-tt.jitter)), time.Duration(float64(d)*(1+tt.jitter))
		first := time.Duration(float64(d) * tt.spread)
		minW, maxW, maxF := time.Duration(math.MaxInt64), time.Duration(0), time.Duration(0)
		for range 2000 {
			w, f := jittered(d, tt.jitter), firstWait(d, tt.jitter, 1)
			if w < lo || w > hi {
				t.Fatalf("jitter %v: wait %v outside [%v, %v]", tt.jitter, w, lo, hi)
			}
			if f < 0 || f > first {
				t.Fatalf("jitter %v: first wait %v outside [0, %v]", tt.jitter, f, first)
			}
			minW, maxW, maxF = min(minW, w), max(maxW, w), max(maxF, f)
		}
		// With 2000 draws, each end of the range is reached to within 5%
		// of its width but with a chance of 0.95^2000.
		if margin := (hi - lo) / 20; tt.jitter > 0 && (minW > lo+margin || maxW < hi-margin) {
			t.Errorf("jitter %v: waits in [%v, %v], want spread over [%v, %v]", tt.jitter, minW, maxW, lo, hi)
		}
		if maxF < first*95/100 {
			t.Errorf("jitter %v: first waits at most %v, want spread up to %v", tt.jitter, maxF, first)
		}
	}
}

// TestJitterSpreadsChecks: with Jitter 0.5 the waits between the checks of
// a running probe are between 0.5 and 1.5 intervals, and some are well
// under one interval, which exact waits never are. As in
// TestCheckIntervals, the test checks the waits the Checker arms, and that
// the checks came no sooner.
func TestJitterSpreadsChecks(t *testing.T) {
	srv := serve(t, func(net.Conn, int) {})
	c := NewChecker(nil)
	defer c.Stop()
	armed := recordWaits(c)
	spec := Spec{Key: "c/e@" + srv.addr, Addr: srv.addr, Interval: 40 * time.Millisecond, Timeout: time.Second, Fall: 1, Rise: 1, Jitter: 0.5}
	c.Reconcile([]Spec{spec})
	at := srv.waitAccepts(t, 21)
	waits := armed.first(t, 21)
	var short int
	for i := 1; i < len(at); i++ {
		w := waits[i] // armed once check i-1 ended
		if w < spec.Interval/2 || w > spec.Interval*3/2 {
			t.Errorf("wait before check %d: %v, outside [%v, %v]", i, w, spec.Interval/2, spec.Interval*3/2)
		}
		if w < spec.Interval*85/100 {
			short++
		}
		if gap := at[i].Sub(at[i-1]); gap < w {
			t.Errorf("checks %d and %d %v apart, less than the %v wait armed between them", i-1, i, gap, w)
		}
	}
	// Each wait is under 0.85 intervals with a chance of 0.35: all 20 miss
	// with a chance of 2e-4.
	if short == 0 {
		t.Errorf("no wait under 0.85 interval in %v: waits are not jittered", waits[1:])
	}
}

// With DialVia, checks connect where the node's traffic goes (an endpoint
// named by DNS: its last resolved address), not to the name in Addr: a
// name that does not resolve now does not mark an endpoint down that
// answers at its known address. HTTP checks keep the name as Host.
func TestCheckerDialVia(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	hosts := make(chan string, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil || line == "\r\n" {
						break
					}
					if h, ok := strings.CutPrefix(line, "Host: "); ok {
						select {
						case hosts <- strings.TrimSpace(h):
						default:
						}
					}
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
			}()
		}
	}()
	const name = "backend.invalid:8080" // .invalid never resolves (RFC 6761)
	c := NewChecker(func(string) {})
	defer c.Stop()
	var asked sync.Map
	c.DialVia(func(key, addr string) string {
		asked.Store(key, addr)
		return ln.Addr().String()
	})
	tcp := Spec{Key: "c/tcp@" + name, Addr: name, Interval: 20 * time.Millisecond, Timeout: time.Second, Fall: 1, Rise: 1}
	http := tcp
	http.Key, http.HTTPPath = "c/http@"+name, "/healthz"
	c.Reconcile([]Spec{tcp, http})
	waitState(t, c, tcp.Key, Up)
	waitState(t, c, http.Key, Up)
	if a, _ := asked.Load(tcp.Key); a != name {
		t.Errorf("DialVia was asked for %v, want key and Addr %q", a, name)
	}
	if h := <-hosts; h != name {
		t.Errorf("HTTP check sent Host %q, want the endpoint's name %q", h, name)
	}
}

// TestCheckerUpdate: Update changes the checks it names and leaves the
// others running with their state; a removed key is forgotten, a key both
// removed and given stays checked.
func TestCheckerUpdate(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	c := NewChecker(nil)
	defer c.Stop()
	spec := func(name string) Spec {
		return Spec{Key: "c/" + name + "@" + addr, Addr: addr, Interval: 10 * time.Millisecond, Timeout: time.Second, Fall: 1, Rise: 1}
	}
	a, b, d := spec("a"), spec("b"), spec("d")
	c.Update([]Spec{a, b}, nil)
	waitState(t, c, a.Key, Up)
	waitState(t, c, b.Key, Up)
	c.mu.Lock()
	before := c.running[a.Key]
	c.mu.Unlock()

	c.Update([]Spec{d}, []string{b.Key, d.Key})
	waitState(t, c, d.Key, Up)
	if c.State(b.Key) != Unknown {
		t.Errorf("removed %s still known as %v", b.Key, c.State(b.Key))
	}
	c.mu.Lock()
	same, running := c.running[a.Key] == before, len(c.running)
	c.mu.Unlock()
	if !same || c.State(a.Key) != Up {
		t.Errorf("the check of %s, named by neither specs nor remove, was restarted or lost its state", a.Key)
	}
	if running != 2 {
		t.Errorf("%d checks running, want 2 (a, d)", running)
	}
}

// TestFirstWaitSpreadsBatches: the first checks of many probes started at
// once spread over up to their whole interval, no more than about one per
// firstGap on average; one probe alone keeps its quick first check.
func TestFirstWaitSpreadsBatches(t *testing.T) {
	const d = 5 * time.Second
	for _, tt := range []struct {
		batch int
		want  time.Duration // the window
	}{{1, d / 10}, {100, d / 10}, {2000, 2 * time.Second}, {100000, d}} {
		var most time.Duration
		for range 2000 {
			w := firstWait(d, 0.1, tt.batch)
			if w < 0 || w > tt.want {
				t.Fatalf("batch %d: first wait %v outside [0, %v]", tt.batch, w, tt.want)
			}
			most = max(most, w)
		}
		if most < tt.want*95/100 {
			t.Errorf("batch %d: first waits up to %v, want spread up to %v", tt.batch, most, tt.want)
		}
	}
}

// TestCheckerHoldsNoGoroutines: an idle check is a timer, not a parked
// goroutine, so that a node checking 100k endpoints does not hold 100k
// goroutine stacks.
func TestCheckerHoldsNoGoroutines(t *testing.T) {
	c := NewChecker(nil)
	defer c.Stop()
	before := runtime.NumGoroutine()
	var specs []Spec
	for i := range 1000 {
		specs = append(specs, Spec{Key: fmt.Sprintf("c/e%d@127.0.0.1:9", i), Addr: "127.0.0.1:9", Interval: time.Hour})
	}
	c.Reconcile(specs)
	if got := runtime.NumGoroutine() - before; got > 100 {
		t.Errorf("%d more goroutines while 1000 checks wait for their first, want about none", got)
	}
}
