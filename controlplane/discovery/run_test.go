package discovery

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/sluice-lb/sluice/controlplane/store"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// flakyStore fails its next failures Gets with a plain error, as etcd does
// while it has no quorum.
type flakyStore struct {
	store.Store
	failures atomic.Int32
}

func (f *flakyStore) Get(ctx context.Context, v uint64) (*store.Version, error) {
	if f.failures.Add(-1) >= 0 {
		return nil, errors.New("etcdserver: request timed out")
	}
	return f.Store.Get(ctx, v)
}

// openBolt opens an embedded store, closed when the test ends.
func openBolt(t *testing.T) *store.Bolt {
	t.Helper()
	st, err := store.OpenBolt(t.TempDir(), store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// A version that cannot be read for a while is read again later: Run goes
// on, nodes keep the last published version meanwhile, and then get the
// new one.
func TestRunRetriesAFailedRead(t *testing.T) {
	ctx := testContext(t)
	ts := startServer(t)
	bolt := openBolt(t)
	st := &flakyStore{Store: bolt}
	put := func(snap *sluicev1.Snapshot) uint64 {
		t.Helper()
		cfg := store.Initial()
		cfg.Groups[0].Snapshot = snap
		cur, err := st.Current(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Groups[0].Version = cur.Info.GetVersion() + 1
		info, _, err := st.Put(ctx, cur.Info.GetVersion(), store.Record{Config: cfg, Group: "default"})
		if err != nil {
			t.Fatal(err)
		}
		return info.GetVersion()
	}
	snap1, snap2 := testSnapshot(1, 1, 1), testSnapshot(2, 1, 2)
	put(snap1)

	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- ts.disc.Run(runCtx, st) }()
	n := connect(ctx, t, ts.conn, "n1", "")
	r := n.next(ctx)
	if r.GetVersionInfo() != "1" || !proto.Equal(r.GetSnapshot(), snap1) {
		t.Fatalf("n1 got version %s; want 1", r.GetVersionInfo())
	}
	n.ack(r)

	// The next version cannot be read twice in a row.
	st.failures.Store(2)
	v2 := put(snap2)
	select {
	case err := <-ran:
		t.Fatalf("Run returned %v after a failed read; want it to retry", err)
	case r = <-n.resps:
	case <-time.After(10 * time.Second):
		t.Fatal("n1 was not sent version 2 within 10s of the store reading again")
	}
	if r.GetVersionInfo() != "2" || v2 != 2 || !proto.Equal(r.GetSnapshot(), snap2) {
		t.Errorf("n1 got version %s after the failed reads; want 2", r.GetVersionInfo())
	}
	if got := st.failures.Load(); got > -1 {
		t.Errorf("%d failed reads left; want both used", got+1)
	}

	stop()
	select {
	case err := <-ran:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v when stopped; want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5s of its context ending")
	}
}

// Before anything is applied, the store's groups (the catch-all default)
// place the nodes, which are sent nothing: nodes and groups agree on where
// a node is from its first connection. The first version then reaches it.
func TestRunPlacesNodesBeforeTheFirstVersion(t *testing.T) {
	ctx := testContext(t)
	ts := startServer(t)
	st := openBolt(t)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go ts.disc.Run(runCtx, st)

	n := connect(ctx, t, ts.conn, "n1", "")
	waitNode(ctx, t, ts.fleet, "n1", "placed in default", func(s *sluicev1.NodeStatus) bool {
		return s.GetGroup() == "default" && s.GetGroupProblem() == ""
	})
	n.expectNothing()
	if v, cfg := ts.disc.Config(); v != 0 || cfg != nil {
		t.Errorf("Config() = %d, %v before the first version; want 0, nil", v, cfg)
	}

	cfg := store.Initial()
	cfg.Groups[0].Snapshot, cfg.Groups[0].Version = testSnapshot(1, 1, 1), 1
	if _, _, err := st.Put(ctx, 0, store.Record{Config: cfg, Group: "default"}); err != nil {
		t.Fatal(err)
	}
	if r := n.next(ctx); r.GetVersionInfo() != "1" {
		t.Errorf("n1 got version %s; want 1", r.GetVersionInfo())
	}
}

// backStore announces what the test sends on announce instead of what its
// store stores, as an etcd store does when etcd went back.
type backStore struct {
	store.Store
	announce chan uint64
}

func (b *backStore) Watch(context.Context) <-chan uint64 { return b.announce }

// When the store went back (its etcd was restored from a backup), Run
// publishes the older version it announces, and a node that runs a newer
// one is sent it at once: the fleet runs what the store holds.
func TestRunFollowsTheStoreBack(t *testing.T) {
	ctx := testContext(t)
	ts := startServer(t)
	bolt := openBolt(t)
	snaps := []*sluicev1.Snapshot{testSnapshot(1, 1, 1), testSnapshot(2, 1, 2), testSnapshot(3, 1, 3)}
	for i, snap := range snaps {
		cfg := store.Initial()
		cfg.Groups[0].Snapshot, cfg.Groups[0].Version = snap, uint64(i+1)
		if _, _, err := bolt.Put(ctx, uint64(i), store.Record{Config: cfg, Group: "default"}); err != nil {
			t.Fatal(err)
		}
	}
	st := &backStore{Store: bolt, announce: make(chan uint64, 1)}
	// As a replica on etcd: a node ahead of what it published is held
	// back, but not one ahead only because the store went back.
	ts.disc.HoldWhenBehind(time.Minute, st)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go ts.disc.Run(runCtx, st)

	n := connect(ctx, t, ts.conn, "n1", "")
	st.announce <- 3
	r := n.next(ctx)
	if r.GetVersionInfo() != "3" {
		t.Fatalf("n1 got version %s; want 3", r.GetVersionInfo())
	}
	n.ack(r)

	st.announce <- 2
	r = n.next(ctx)
	if r.GetVersionInfo() != "2" || !proto.Equal(r.GetSnapshot(), snaps[1]) {
		t.Fatalf("after the store went back to 2, n1 got version %s; want 2 with its snapshot", r.GetVersionInfo())
	}
	n.ack(r)
	if v := ts.disc.Version(); v != 2 {
		t.Errorf("published version %d; want 2", v)
	}
}
