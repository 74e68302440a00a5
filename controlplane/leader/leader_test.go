package leader

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sluice-lb/sluice/internal/etcdtest"
	"github.com/sluice-lb/sluice/internal/poll"
)

const defaultTestTimeout = 20 * time.Second

func TestAlways(t *testing.T) {
	ran := false
	if err := (Always{}).Run(context.Background(), func(context.Context) { ran = true }); err != nil || !ran {
		t.Errorf("Always.Run: err %v, ran %v; want nil and true", err, ran)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := (Always{}).Run(ctx, func(context.Context) { t.Error("fn ran after ctx ended") }); err == nil {
		t.Error("Always.Run on an ended context returned nil")
	}
}

// replica is one campaigner: leading reports whether its fn runs now.
type replica struct {
	id      string
	client  *clientv3.Client
	cancel  context.CancelFunc
	done    chan error
	leading atomic.Bool
	terms   atomic.Int32
	once    sync.Once
}

func campaign(t *testing.T, srv *etcdtest.Server, id string, client *clientv3.Client) *replica {
	if client == nil {
		client = srv.Client(t)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{id: id, client: client, cancel: cancel, done: make(chan error, 1)}
	e := NewEtcd(client, EtcdOptions{Prefix: "/t/", Name: "work", ID: id, TTL: time.Second})
	go func() {
		r.done <- e.Run(ctx, func(ctx context.Context) {
			r.terms.Add(1)
			r.leading.Store(true)
			<-ctx.Done()
			r.leading.Store(false)
		})
	}()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *replica) stop(t *testing.T) {
	r.once.Do(func() {
		r.cancel()
		select {
		case <-r.done:
		case <-time.After(defaultTestTimeout):
			t.Errorf("%s: Run did not return after its context ended", r.id)
		}
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	poll.Until(t, defaultTestTimeout, 5*time.Millisecond, what, cond)
}

// leaders returns the replicas whose work runs, checking there is at most
// one.
func leaders(t *testing.T, rs ...*replica) []*replica {
	t.Helper()
	var out []*replica
	for _, r := range rs {
		if r.leading.Load() {
			out = append(out, r)
		}
	}
	if len(out) > 1 {
		t.Fatalf("%d replicas lead at once", len(out))
	}
	return out
}

// TestEtcdOneLeader: of three replicas exactly one runs the work; when it
// stops (its context ends, as when sluice-cp stops), another takes over
// at once, as the leader gives its lease back.
func TestEtcdOneLeader(t *testing.T) {
	srv := etcdtest.Start(t)
	rs := []*replica{campaign(t, srv, "a", nil), campaign(t, srv, "b", nil), campaign(t, srv, "c", nil)}
	waitFor(t, "a leader", func() bool { return len(leaders(t, rs...)) == 1 })
	// Nobody else takes over while the leader holds.
	for range 50 {
		time.Sleep(10 * time.Millisecond)
		if n := len(leaders(t, rs...)); n != 1 {
			t.Fatalf("%d leaders, want 1", n)
		}
	}
	first := leaders(t, rs...)[0]
	e := NewEtcd(first.client, EtcdOptions{Prefix: "/t/", Name: "work"})
	if id, err := e.Leader(etcdtest.Context(t, defaultTestTimeout)); err != nil || id != first.id {
		t.Errorf("Leader() = %q, %v; want %q", id, err, first.id)
	}
	start := time.Now()
	first.stop(t)
	waitFor(t, "another leader", func() bool {
		l := leaders(t, rs...)
		return len(l) == 1 && l[0] != first
	})
	t.Logf("next leader after a clean stop: %v", time.Since(start))
}

// TestEtcdLeaderLosesLease: a leader cut off from etcd (its connections
// to etcd go through a proxy that the test cuts, as a partition or a dead
// host would) has its work's context ended once its lease runs out, and
// another replica leads once etcd expires that lease.
func TestEtcdLeaderLosesLease(t *testing.T) {
	srv := etcdtest.Start(t)
	client, relay := srv.RelayedClient(t)
	a := campaign(t, srv, "a", client)
	waitFor(t, "a to lead", func() bool { return a.leading.Load() })
	b := campaign(t, srv, "b", nil)
	time.Sleep(200 * time.Millisecond)
	if b.leading.Load() {
		t.Fatal("b leads while a holds its lease")
	}
	start := time.Now()
	relay.Cut()
	waitFor(t, "a to stop leading", func() bool { return !a.leading.Load() })
	t.Logf("a stopped leading %v after it lost etcd", time.Since(start))
	waitFor(t, "b to lead", func() bool { return b.leading.Load() })
	t.Logf("b leads %v after a lost etcd", time.Since(start))
	leaders(t, a, b)
}

// TestEtcdWorkDone: fn returning while leader ends Run with nil, and the
// next campaigner gets its turn.
func TestEtcdWorkDone(t *testing.T) {
	srv := etcdtest.Start(t)
	ctx := etcdtest.Context(t, defaultTestTimeout)
	var (
		mu    sync.Mutex
		order []string
	)
	var wg sync.WaitGroup
	for _, id := range []string{"a", "b"} {
		e := NewEtcd(srv.Client(t), EtcdOptions{Prefix: "/t/", Name: "once", ID: id})
		wg.Go(func() {
			if err := e.Run(ctx, func(context.Context) {
				mu.Lock()
				order = append(order, id)
				mu.Unlock()
			}); err != nil {
				t.Errorf("%s: Run = %v, want nil", id, err)
			}
		})
	}
	wg.Wait()
	if len(order) != 2 {
		t.Errorf("work ran %v, want once on each replica, one after the other", order)
	}
}
