package node

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/lb"
	"github.com/sluice-lb/sluice/dataplane/upstream"
	"github.com/sluice-lb/sluice/internal/poll"
)

// shares picks n times from the node's cluster name, releasing each pick
// at once, and returns the picks per endpoint name.
func shares(t *testing.T, n *Node, name string, picks int) map[string]int {
	t.Helper()
	c := (*n.current.Load())[name]
	got := map[string]int{}
	for range picks {
		ep, err := c.pick(lb.Request{}, noFailures{})
		if err != nil {
			t.Fatal(err)
		}
		got[ep.Name]++
		ep.Release()
	}
	return got
}

// TestSlowStart: an endpoint added to a running cluster starts at a tenth of
// its weight and reaches all of it when slow_start has passed; the
// cluster's first endpoints start at full weight.
func TestSlowStart(t *testing.T) {
	n := newNode(t)
	const doc = `
clusters:
  - name: web
    slow_start: 1s
    endpoints:
      - { name: a, address: 127.0.0.1:1 }
      - { name: b, address: 127.0.0.1:2 }
%s`
	if err := n.Apply("1", parse(t, doc, "")); err != nil {
		t.Fatal(err)
	}
	if got := shares(t, n, "web", 1000); got["a"] != 500 || got["b"] != 500 {
		t.Fatalf("first endpoints: %v, want 500/500 (no ramp at start)", got)
	}
	start := time.Now()
	if err := n.Apply("2", parse(t, doc, "      - { name: c, address: 127.0.0.1:3 }")); err != nil {
		t.Fatal(err)
	}
	got := shares(t, n, "web", 2100)
	// At 10% of its weight c gets 0.1/2.1 ≈ 5% of picks; the ramp may
	// have moved on a step or two by the time the picks ran.
	if time.Since(start) < 200*time.Millisecond && got["c"] > 2100*15/100 {
		t.Errorf("just after joining, c got %d of 2100 picks; want about 5%%", got["c"])
	}
	if got["c"] == 0 {
		t.Errorf("c got no picks while ramping; want about 5%%")
	}
	// The ramp's last step comes a little after slow_start (each step is
	// timed from the one before), later still on a busy machine: wait for
	// it rather than for a fixed time. A ramp that never ends times out.
	waitUntil(t, "slow_start to pass", func() bool { return time.Since(start) > time.Second })
	waitUntil(t, "c at its full weight", func() bool {
		got = shares(t, n, "web", 3000)
		return got["a"] == 1000 && got["b"] == 1000 && got["c"] == 1000
	})
}

// takeOnlySlot applies a cluster "web" of one endpoint with max_conn 1
// and the queue settings given (the cluster's YAML lines), and takes the
// endpoint's one slot.
func takeOnlySlot(t *testing.T, queue ...string) (*cluster, *upstream.Endpoint) {
	t.Helper()
	n := newNode(t)
	if err := n.Apply("1", parse(t, `
clusters:
  - name: web
    %s
    endpoints:
      - { name: a, address: 127.0.0.1:1, max_conn: 1 }
`, strings.Join(queue, "\n    "))); err != nil {
		t.Fatal(err)
	}
	c := (*n.current.Load())["web"]
	holder, err := c.pick(lb.Request{}, noFailures{})
	if err != nil {
		t.Fatal(err)
	}
	return c, holder
}

// TestQueue: work beyond max_conn waits for a free slot in arrival order,
// is refused at once when the queue is full, and fails when queue_timeout
// passes.
func TestQueue(t *testing.T) {
	c, holder := takeOnlySlot(t, "max_queue: 2", "queue_timeout: 300ms")

	// Two waiters queue; a third is refused at once.
	type result struct {
		ep  *upstream.Endpoint
		err error
		at  time.Time
	}
	results := make(chan result, 2)
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ep, err := c.pick(lb.Request{}, noFailures{})
			results <- result{ep, err, time.Now()}
		}()
	}
	waitUntil(t, "two waiters", func() bool { return c.queue.len() == 2 })
	if _, err := c.pick(lb.Request{}, noFailures{}); err != errQueueFull {
		t.Errorf("third waiter: err = %v, want errQueueFull", err)
	}

	// One release serves exactly one waiter.
	released := time.Now()
	holder.Release()
	r := <-results
	if r.err != nil || r.ep != holder {
		t.Fatalf("after a release: ep %v err %v, want a", r.ep, r.err)
	}
	// The other waiter times out: its slot is still taken by the first.
	r = <-results
	if r.err != errQueueTimeout {
		t.Errorf("second waiter: err = %v, want errQueueTimeout", r.err)
	}
	if waited := r.at.Sub(released); waited > 400*time.Millisecond {
		t.Errorf("second waiter gave up %v after the release; queue_timeout is 300ms", waited)
	}
	wg.Wait()
	if c.queue.len() != 0 {
		t.Errorf("queue holds %d waiters after all left", c.queue.len())
	}
}

// TestQueueLeftWhenListenerGoes: work waiting in the queue leaves it when
// its context ends (its listener was removed), and the slot freed after
// that goes to the work behind it.
func TestQueueLeftWhenListenerGoes(t *testing.T) {
	c, holder := takeOnlySlot(t, "queue_timeout: 60s")
	ctx, cancel := context.WithCancel(context.Background())
	gone := make(chan error, 1)
	go func() {
		_, err := c.pick(lb.Request{}, ctxWork{ctx})
		gone <- err
	}()
	waitUntil(t, "the first waiter", func() bool { return c.queue.len() == 1 })
	next := make(chan *upstream.Endpoint, 1)
	go func() {
		ep, _ := c.pick(lb.Request{}, noFailures{})
		next <- ep
	}()
	waitUntil(t, "the second waiter", func() bool { return c.queue.len() == 2 })

	cancel()
	select {
	case err := <-gone:
		if err != errQueueLeft {
			t.Errorf("waiter whose context ended: err = %v, want errQueueLeft", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("the waiter whose context ended is still waiting; queue_timeout is 60s")
	}
	holder.Release()
	select {
	case ep := <-next:
		if ep != holder {
			t.Errorf("second waiter got %v, want a", ep)
		}
		ep.Release()
	case <-time.After(testTimeout):
		t.Fatal("the freed slot did not reach the waiter behind")
	}
	if c.queue.len() != 0 {
		t.Errorf("queue holds %d waiters after all left", c.queue.len())
	}
}

// ctxWork is work with no failed endpoints and the given context.
type ctxWork struct{ ctx context.Context }

func (ctxWork) Failed(*upstream.Endpoint) bool { return false }
func (w ctxWork) Context() context.Context     { return w.ctx }

// TestQueueOff: queue_timeout 0s answers a full cluster at once.
func TestQueueOff(t *testing.T) {
	// A queue would answer only after its timeout, and with its timeout's
	// error; so the error alone tells, and no clock is read that a busy
	// machine could make late.
	c, _ := takeOnlySlot(t, "queue_timeout: 0s")
	if _, err := c.pick(lb.Request{}, noFailures{}); err != lb.ErrFull {
		t.Errorf("full cluster without a queue: err = %v, want lb.ErrFull", err)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	poll.Until(t, testTimeout, 5*time.Millisecond, what, cond)
}

// TestAllBackups: with every primary out, the first backup takes all the
// work; with all_backups, every backup shares it.
func TestAllBackups(t *testing.T) {
	for _, all := range []bool{false, true} {
		n := newNode(t)
		if err := n.Apply("1", parse(t, `
clusters:
  - name: web
    all_backups: %v
    endpoints:
      - { name: p, address: 127.0.0.1:1, state: DISABLED }
      - { name: b1, address: 127.0.0.1:2, backup: true }
      - { name: b2, address: 127.0.0.1:3, backup: true, weight: 0 }
      - { name: b3, address: 127.0.0.1:4, backup: true }
`, all)); err != nil {
			t.Fatal(err)
		}
		got := shares(t, n, "web", 300)
		want := map[string]int{"b1": 300}
		if all {
			want = map[string]int{"b1": 150, "b3": 150} // b2 has weight 0
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("all_backups %v: %v, want %v", all, got, want)
		}
		for _, st := range n.Endpoints() {
			if st.Name == "p" && st.Health != "DISABLED" {
				t.Errorf("status of the disabled primary: %+v, want DISABLED", st)
			}
		}
	}
}

// TestDNSEndpointResolved: an endpoint named by DNS is resolved in the
// background once applied.
func TestDNSEndpointResolved(t *testing.T) {
	n := newNode(t)
	if err := n.Apply("1", parse(t, `
clusters:
  - name: web
    dns_refresh: 1s
    endpoints: [{ name: a, address: "localhost:8080" }]
`)); err != nil {
		t.Fatal(err)
	}
	ep := (*n.current.Load())["web"].members[0].Endpoint
	waitUntil(t, "localhost to resolve", func() bool {
		a, ok := ep.Resolved()
		return ok && a.Addr().IsLoopback() && a.Port() == 8080
	})
}

// noFailures is the failures of work that has not failed anywhere.
type noFailures struct{}

func (noFailures) Failed(*upstream.Endpoint) bool { return false }
func (noFailures) Context() context.Context       { return context.Background() }
