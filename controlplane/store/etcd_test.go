package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/sluice-lb/sluice/internal/etcdtest"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// prefixes numbers the etcd prefixes of one test run, so the stores of
// different tests on one etcd never see each other.
var prefixes atomic.Int64

func freshPrefix(*testing.T) string { return fmt.Sprintf("/test-%d/", prefixes.Add(1)) }

func openEtcd(t *testing.T, client *clientv3.Client, prefix string, retain int) *Etcd {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	defer cancel()
	s, err := OpenEtcd(ctx, client, EtcdOptions{Prefix: prefix, Retain: retain})
	if err != nil {
		t.Fatalf("OpenEtcd: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestEtcdContract runs the contract tests on a real etcd, started
// in-process. Every store of a test has its own client, as replicas do.
func TestEtcdContract(t *testing.T) {
	srv := etcdtest.Start(t)
	runContract(t, impl{
		name:  "etcd",
		fresh: freshPrefix,
		openAt: func(t *testing.T, prefix string, retain int) Store {
			return openEtcd(t, srv.Client(t), prefix, retain)
		},
	})
}

// TestEtcdReplicas is two control planes on one etcd: what one stores, the
// other sees and is told of at once, and their compare-and-swaps exclude
// each other.
func TestEtcdReplicas(t *testing.T) {
	ctx := testContext(t)
	srv := etcdtest.Start(t)
	prefix := freshPrefix(t)
	a := openEtcd(t, srv.Client(t), prefix, 0)
	b := openEtcd(t, srv.Client(t), prefix, 0)

	watch := b.Watch(ctx)
	start := time.Now()
	mustPut(t, ctx, a, 0, Record{Config: inDefault(snap("web", 1)), Author: "ann"})
	select {
	case v := <-watch:
		if v != 1 {
			t.Fatalf("replica b watched version %d, want 1", v)
		}
		t.Logf("replica b told of version 1 after %v", time.Since(start))
		if d := time.Since(start); d > time.Second {
			t.Errorf("replica b told of version 1 after %v, want within a second", d)
		}
	case <-ctx.Done():
		t.Fatal("replica b was never told of version 1")
	}
	got, err := b.Current(ctx)
	if err != nil || !proto.Equal(defaultSnap(got), snap("web", 1)) || got.Info.GetAuthor() != "ann" {
		t.Fatalf("replica b Current = %v, %v; want version 1 by ann", got, err)
	}

	// Both read version 1 and write on it: one wins, the other conflicts.
	_, _, errA := a.Put(ctx, 1, Record{Config: inDefault(snap("web", 2))})
	_, _, errB := b.Put(ctx, 1, Record{Config: inDefault(snap("web", 3))})
	if errA != nil || !errors.Is(errB, ErrConflict) {
		t.Fatalf("puts on base 1: a %v, b %v; want a to store and b to conflict", errA, errB)
	}
	// An equal snapshot through the other replica stores nothing.
	info, changed, err := b.Put(ctx, 2, Record{Config: inDefault(snap("web", 2))})
	if err != nil || changed || info.GetVersion() != 2 {
		t.Errorf("b.Put(equal) = %v, %v, %v; want version 2, unchanged", info, changed, err)
	}
	select {
	case v := <-watch:
		if v != 2 {
			t.Errorf("replica b watched version %d, want 2", v)
		}
	case <-ctx.Done():
		t.Fatal("replica b was never told of version 2")
	}
}

// TestEtcdPrune checks that retention is the same on every replica before
// and after pruning, and that pruning deletes exactly the versions out of
// the window, however many replicas do it.
func TestEtcdPrune(t *testing.T) {
	ctx := testContext(t)
	srv := etcdtest.Start(t)
	client := srv.Client(t)
	prefix := freshPrefix(t)
	a := openEtcd(t, client, prefix, 3)
	b := openEtcd(t, srv.Client(t), prefix, 3)
	for i := range 6 {
		mustPut(t, ctx, a, AnyBase, Record{Config: inDefault(snap("web", uint32(i+1)))})
	}
	check := func(when string) {
		t.Helper()
		for name, s := range map[string]*Etcd{"a": a, "b": b} {
			h, err := s.History(ctx, 0)
			if got := versions(h); err != nil || !slices.Equal(got, []uint64{6, 5, 4}) {
				t.Errorf("%s: replica %s History = %v, %v; want [6 5 4]", when, name, got, err)
			}
			if _, err := s.Get(ctx, 3); !errors.Is(err, ErrNotFound) {
				t.Errorf("%s: replica %s Get(3) error = %v, want ErrNotFound", when, name, err)
			}
		}
	}
	keys := func() int64 {
		resp, err := client.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		return resp.Count
	}
	// A refusal goes with its version.
	for _, v := range []uint64{2, 5} {
		if err := a.Refused(ctx, v, &sluicev1.Refusal{Node: "edge-1", Error: "bind"}); err != nil {
			t.Fatal(err)
		}
	}
	check("before pruning")
	if n := keys(); n != 1+2*6+2 {
		t.Errorf("%d keys before pruning, want 15", n)
	}
	errs := make(chan error, 2)
	go func() { errs <- a.Prune(ctx) }()
	go func() { errs <- b.Prune(ctx) }()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("Prune: %v", err)
		}
	}
	check("after pruning")
	if n := keys(); n != 1+2*3+1 {
		t.Errorf("%d keys after pruning, want 8 (current, 3 versions and version 5's refusal)", n)
	}
}

// TestEtcdStoreClosed checks that a closed store closes its watchers and
// refuses work, while the etcd client (the caller's) stays usable.
func TestEtcdStoreClosed(t *testing.T) {
	ctx := testContext(t)
	srv := etcdtest.Start(t)
	s := openEtcd(t, srv.Client(t), freshPrefix(t), 0)
	mustPut(t, ctx, s, 0, Record{Config: inDefault(snap("web", 1))})
	w := s.Watch(ctx)
	s.Close()
	for range w {
	}
	if _, _, err := s.Put(ctx, AnyBase, Record{Config: inDefault(snap("web", 2))}); !errors.Is(err, ErrClosed) {
		t.Errorf("Put after Close: %v, want ErrClosed", err)
	}
	if _, err := s.History(ctx, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("History after Close: %v, want ErrClosed", err)
	}
}

// TestEtcdTooLarge: a version larger than etcd takes is refused with a
// reason that says what to do, and stores nothing.
func TestEtcdTooLarge(t *testing.T) {
	ctx := testContext(t)
	srv := etcdtest.Start(t)
	s := openEtcd(t, srv.Client(t), freshPrefix(t), 0)
	for _, size := range []int{1700 << 10, 3 << 20} { // above etcd's 1.5 MiB; above the client's 2 MiB too
		big := snap("web", 1)
		for i := range size / 40 {
			big.Clusters[0].Endpoints = append(big.Clusters[0].Endpoints, &sluicev1.Endpoint{
				Name: fmt.Sprintf("endpoint-%08d", i), Address: "127.0.0.1:9001"})
		}
		_, _, err := s.Put(ctx, AnyBase, Record{Config: inDefault(big)})
		if err == nil || !strings.Contains(err.Error(), "--max-request-bytes") {
			t.Errorf("Put of a %d KiB snapshot: %v, want an error naming etcd's --max-request-bytes", size>>10, err)
		}
	}
	if cur, err := s.Current(ctx); err != nil || cur.Info.GetVersion() != 0 {
		t.Errorf("Current = %v, %v; want version 0", cur, err)
	}
}

// TestEtcdDown: with etcd gone, every call fails with ErrUnavailable once
// the store's timeout passed, naming etcd, not at the caller's deadline;
// a Put says that the version may have been stored.
func TestEtcdDown(t *testing.T) {
	ctx := testContext(t)
	srv := etcdtest.Start(t)
	const timeout = 300 * time.Millisecond
	s, err := OpenEtcd(ctx, srv.Client(t), EtcdOptions{Prefix: freshPrefix(t), Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	mustPut(t, ctx, s, 0, Record{Config: inDefault(snap("web", 1))})
	srv.Stop() // some 7 s: etcd waits that long for the store's watch
	want := fmt.Sprintf("etcd (%s) did not answer within %v", srv.Endpoint, timeout)
	for name, call := range map[string]func() error{
		"Current": func() error { _, err := s.Current(ctx); return err },
		"Get":     func() error { _, err := s.Get(ctx, 1); return err },
		"History": func() error { _, err := s.History(ctx, 0); return err },
		"Put": func() error {
			_, _, err := s.Put(ctx, AnyBase, Record{Config: inDefault(snap("web", 2))})
			if err != nil && !strings.Contains(err.Error(), "history lists it once etcd answers") {
				t.Errorf("Put: %q does not say the version may be stored", err)
			}
			return err
		},
		"Prune": func() error { return s.Prune(ctx) },
	} {
		start := time.Now()
		err := call()
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s with etcd down: %v, want ErrUnavailable %q", name, err, want)
		}
		// The caller's context has minutes left: a call that waited for
		// it would take that long.
		if took := time.Since(start); took > defaultTestTimeout/2 {
			t.Errorf("%s with etcd down took %v", name, took)
		}
	}
}

// openChecking opens a store that reads etcd beside its watch every
// 50 ms, so that tests see it notice etcd going back at once.
func openChecking(t *testing.T, client *clientv3.Client, prefix string) *Etcd {
	t.Helper()
	s, err := OpenEtcd(testContext(t), client, EtcdOptions{Prefix: prefix, CheckEvery: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatalf("OpenEtcd: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// watchFor reads watch until it delivers want, failing the test if it
// delivers a number other than those in along first, or ends.
func watchFor(ctx context.Context, t *testing.T, watch <-chan uint64, want uint64, along ...uint64) {
	t.Helper()
	for {
		select {
		case v, ok := <-watch:
			if !ok {
				t.Fatalf("watch closed before version %d", want)
			}
			if v == want {
				return
			}
			if !slices.Contains(along, v) {
				t.Fatalf("watch delivered version %d, want %d", v, want)
			}
		case <-ctx.Done():
			t.Fatalf("watch never delivered version %d", want)
		}
	}
}

// TestEtcdReplaced: etcd is replaced by an empty one while a replica runs.
// The replica notices and writes down the highest number it gave; a
// replica that starts on the new etcd cannot give those numbers again;
// and the running replica is told of the versions stored on the new etcd,
// which its watch of the old revisions would never deliver.
func TestEtcdReplaced(t *testing.T) {
	// etcd takes up to 7 s to stop while watched (its request timeout).
	ctx := etcdtest.Context(t, 60*time.Second)
	srv := etcdtest.Start(t)
	prefix := freshPrefix(t)
	a := openChecking(t, srv.Client(t), prefix)
	watch := a.Watch(ctx)
	for w := uint32(1); w <= 3; w++ {
		mustPut(t, ctx, a, uint64(w-1), Record{Config: inDefault(snap("web", w))})
	}
	watchFor(ctx, t, watch, 3, 1, 2)

	srv.Replace(t)
	client := srv.Client(t)
	waitFloor(ctx, t, client, prefix, 3)

	b := openChecking(t, client, prefix)
	rec := Record{Config: inDefault(snap("web", 10)), Version: 1}
	_, _, err := b.Put(ctx, 0, rec)
	var taken *NumberTakenError
	if !errors.As(err, &taken) || taken.Next != 4 {
		t.Fatalf("put of version 1 on the new etcd: %v; want version 1 refused as taken, 4 next", err)
	}
	if got := err.Error(); got != "store: version 1 was stored before the store went back to version 0; number the new version 4 or above" {
		t.Errorf("error text %q", got)
	}
	rec.Version = 4
	mustPut(t, ctx, b, 0, rec)
	watchFor(ctx, t, watch, 4)
	got, err := a.Current(ctx)
	if err != nil || got.Info.GetVersion() != 4 || !proto.Equal(defaultSnap(got), snap("web", 10)) {
		t.Fatalf("replica a Current = %v, %v; want version 4 of the new etcd", got, err)
	}
	// Numbers rise from there.
	info := mustPut(t, ctx, a, 4, Record{Config: inDefault(snap("web", 11))})
	if info.GetVersion() != 5 {
		t.Errorf("next put stored version %d, want 5", info.GetVersion())
	}
	watchFor(ctx, t, watch, 5)
}

// waitFloor waits until the floor key under prefix is at least v: a
// replica noticed etcd going back.
func waitFloor(ctx context.Context, t *testing.T, client *clientv3.Client, prefix string, v uint64) {
	t.Helper()
	for {
		resp, err := client.Get(ctx, prefix+keyEtcdFloor)
		if err == nil && len(resp.Kvs) > 0 {
			if got, err := parseCurrent(resp.Kvs[0].Value); err == nil && got >= v {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the floor never reached %d: no replica noticed etcd going back (last read: %v, %v)", v, resp, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestEtcdRestored: etcd is restored from a backup while a replica runs.
// The replica follows it back to the backup's version, and numbers the
// next version above those it stored after the backup.
func TestEtcdRestored(t *testing.T) {
	// etcd takes up to 7 s to stop while watched (its request timeout).
	ctx := etcdtest.Context(t, 60*time.Second)
	srv := etcdtest.Start(t)
	prefix := freshPrefix(t)
	first := openChecking(t, srv.Client(t), prefix)
	mustPut(t, ctx, first, 0, Record{Config: inDefault(snap("web", 1))})
	mustPut(t, ctx, first, 1, Record{Config: inDefault(snap("web", 2))})
	first.Close() // etcd stops at once for the backup when nothing watches it
	backup := srv.Backup(t)
	a := openChecking(t, srv.Client(t), prefix)
	watch := a.Watch(ctx)
	mustPut(t, ctx, a, 2, Record{Config: inDefault(snap("web", 3))})
	mustPut(t, ctx, a, 3, Record{Config: inDefault(snap("web", 4))})
	watchFor(ctx, t, watch, 4, 2, 3)

	srv.Restore(t, backup)
	watchFor(ctx, t, watch, 2)
	got, err := a.Current(ctx)
	if err != nil || got.Info.GetVersion() != 2 || !proto.Equal(defaultSnap(got), snap("web", 2)) {
		t.Fatalf("Current = %v, %v; want the backup's version 2", got, err)
	}
	_, _, err = a.Put(ctx, 2, Record{Config: inDefault(snap("web", 5)), Version: 3})
	var taken *NumberTakenError
	if !errors.As(err, &taken) || taken.Next != 5 || taken.Current != 2 {
		t.Fatalf("put of version 3 after the restore: %v; want it refused as taken, 5 next", err)
	}
	// A writer that does not name the number gets the free one.
	info := mustPut(t, ctx, a, 2, Record{Config: inDefault(snap("web", 5))})
	if info.GetVersion() != 5 {
		t.Fatalf("put after the restore stored version %d, want 5", info.GetVersion())
	}
	watchFor(ctx, t, watch, 5)
	if _, err := a.Get(ctx, 3); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(3), lost with the restore: %v; want ErrNotFound", err)
	}
}
