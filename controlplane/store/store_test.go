package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

const defaultTestTimeout = 10 * time.Second

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	t.Cleanup(cancel)
	return ctx
}

// inDefault makes snap the default group's snapshot of a configuration.
func inDefault(snap *sluicev1.Snapshot) *sluicev1.FleetConfig {
	cfg := Initial()
	cfg.Groups[0].Snapshot = snap
	return cfg
}

func defaultSnap(v *Version) *sluicev1.Snapshot { return v.Config.GetGroups()[0].GetSnapshot() }

func snap(cluster string, weight uint32) *sluicev1.Snapshot {
	return &sluicev1.Snapshot{Clusters: []*sluicev1.Cluster{{
		Name:      cluster,
		Endpoints: []*sluicev1.Endpoint{{Name: "e1", Address: "127.0.0.1:9001", Weight: proto.Uint32(weight)}},
	}}}
}

// impl is a Store implementation under the contract tests.
type impl struct {
	name string
	// fresh returns a new place for a store (a directory, an etcd prefix).
	fresh func(t *testing.T) string
	// openAt opens a store at place that keeps retain versions (0: the
	// default). The test closes it.
	openAt func(t *testing.T, place string, retain int) Store
}

// open opens a store at a fresh place.
func (i impl) open(t *testing.T, retain int) Store { return i.openAt(t, i.fresh(t), retain) }

var contract = []struct {
	name string
	test func(t *testing.T, impl impl)
}{
	{"EmptyStore", contractEmptyStore},
	{"PutVersionsAndHistory", contractPutVersionsAndHistory},
	{"DurableAcrossReopen", contractDurableAcrossReopen},
	{"ConcurrentPuts", contractConcurrentPuts},
	{"CompareAndSwapUnderContention", contractCompareAndSwapUnderContention},
	{"Retention", contractRetention},
	{"Watch", contractWatch},
	{"Refusals", contractRefusals},
	{"NumberedVersion", contractNumberedVersion},
}

// runContract runs every contract test against impl.
func runContract(t *testing.T, impl impl) {
	for _, c := range contract {
		t.Run(c.name, func(t *testing.T) { c.test(t, impl) })
	}
}

func TestBoltContract(t *testing.T) {
	runContract(t, impl{
		name:  "bolt",
		fresh: func(t *testing.T) string { return filepath.Join(t.TempDir(), "data") },
		openAt: func(t *testing.T, dir string, retain int) Store {
			return open(t, dir, BoltOptions{Retain: retain})
		},
	})
}

func open(t *testing.T, dir string, opts BoltOptions) *Bolt {
	t.Helper()
	s, err := OpenBolt(dir, opts)
	if err != nil {
		t.Fatalf("OpenBolt: %v", err)
	}
	return s
}

func mustPut(t *testing.T, ctx context.Context, s Store, base uint64, rec Record) *sluicev1.VersionInfo {
	t.Helper()
	info, changed, err := s.Put(ctx, base, rec)
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	if !changed {
		t.Fatalf("Put: changed = false, want true")
	}
	return info
}

func contractEmptyStore(t *testing.T, impl impl) {
	ctx := testContext(t)
	s := impl.open(t, 0)
	defer s.Close()
	cur, err := s.Current(ctx)
	if err != nil {
		t.Fatalf("Current: %v", err)
	}
	if cur.Info.GetVersion() != 0 || len(defaultSnap(cur).GetClusters()) != 0 {
		t.Errorf("Current of an empty store = %v, want version 0 and an empty snapshot", cur)
	}
	if _, err := s.Get(ctx, 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(1) error = %v, want ErrNotFound", err)
	}
	h, err := s.History(ctx, 0)
	if err != nil || len(h) != 0 {
		t.Errorf("History = %v, %v; want empty", h, err)
	}
	// The empty snapshot is what version 0 means: storing it changes nothing.
	info, changed, err := s.Put(ctx, 0, Record{Config: inDefault(&sluicev1.Snapshot{})})
	if err != nil || changed || info.GetVersion() != 0 {
		t.Errorf("Put(empty) = %v, %v, %v; want version 0, unchanged", info, changed, err)
	}
}

func contractPutVersionsAndHistory(t *testing.T, impl impl) {
	ctx := testContext(t)
	s := impl.open(t, 0)
	defer s.Close()

	v1 := mustPut(t, ctx, s, 0, Record{Config: inDefault(snap("web", 1)), Author: "ann", Comment: "first", Changes: []string{"+ cluster web"}})
	if v1.GetVersion() != 1 || v1.GetAuthor() != "ann" || v1.GetComment() != "first" || v1.GetCreated() == nil {
		t.Errorf("first version info = %v", v1)
	}
	v2 := mustPut(t, ctx, s, 1, Record{Config: inDefault(snap("web", 3)), Changes: []string{"~ cluster web: endpoint e1 weight 1 -> 3"}})
	if v2.GetVersion() != 2 {
		t.Errorf("second version = %d, want 2", v2.GetVersion())
	}

	// Equal snapshot: nothing stored, current info returned.
	info, changed, err := s.Put(ctx, 2, Record{Config: inDefault(snap("web", 3)), Comment: "again"})
	if err != nil || changed || info.GetVersion() != 2 {
		t.Errorf("Put(equal) = %v, %v, %v; want version 2, unchanged", info, changed, err)
	}
	// Stale base: refused.
	if _, _, err := s.Put(ctx, 1, Record{Config: inDefault(snap("web", 5))}); !errors.Is(err, ErrConflict) {
		t.Errorf("Put(stale base) error = %v, want ErrConflict", err)
	}
	// Rolling back to an old snapshot is a new version.
	v3 := mustPut(t, ctx, s, AnyBase, Record{Config: inDefault(snap("web", 1)), Comment: "rollback 1"})
	if v3.GetVersion() != 3 {
		t.Errorf("rollback version = %d, want 3", v3.GetVersion())
	}

	h, err := s.History(ctx, 0)
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	if got := versions(h); !slices.Equal(got, []uint64{3, 2, 1}) {
		t.Errorf("History versions = %v, want [3 2 1]", got)
	}
	if !slices.Equal(h[1].GetChanges(), []string{"~ cluster web: endpoint e1 weight 1 -> 3"}) {
		t.Errorf("History[1].Changes = %q", h[1].GetChanges())
	}
	h, _ = s.History(ctx, 2)
	if got := versions(h); !slices.Equal(got, []uint64{3, 2}) {
		t.Errorf("History(2) versions = %v, want [3 2]", got)
	}
	got, err := s.Get(ctx, 2)
	if err != nil {
		t.Fatalf("Get(2): %v", err)
	}
	if !proto.Equal(defaultSnap(got), snap("web", 3)) {
		t.Errorf("Get(2).Snapshot = %v, want %v", defaultSnap(got), snap("web", 3))
	}
}

func contractDurableAcrossReopen(t *testing.T, impl impl) {
	ctx := testContext(t)
	place := impl.fresh(t)
	s := impl.openAt(t, place, 0)
	mustPut(t, ctx, s, 0, Record{Config: inDefault(snap("web", 1)), Author: "ann"})
	mustPut(t, ctx, s, 1, Record{Config: inDefault(snap("api", 2)), Author: "bob", Comment: "swap"})
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := s.Current(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Current after Close: error = %v, want ErrClosed", err)
	}

	s = impl.openAt(t, place, 0)
	defer s.Close()
	cur, err := s.Current(ctx)
	if err != nil {
		t.Fatalf("Current: %v", err)
	}
	if cur.Info.GetVersion() != 2 || cur.Info.GetAuthor() != "bob" || cur.Info.GetComment() != "swap" {
		t.Errorf("Current info after reopen = %v", cur.Info)
	}
	if !proto.Equal(defaultSnap(cur), snap("api", 2)) {
		t.Errorf("Current snapshot after reopen = %v", defaultSnap(cur))
	}
	h, _ := s.History(ctx, 0)
	if got := versions(h); !slices.Equal(got, []uint64{2, 1}) {
		t.Errorf("History after reopen = %v, want [2 1]", got)
	}
	// Watch starts from the durable current version.
	select {
	case v := <-s.Watch(ctx):
		if v != 2 {
			t.Errorf("first watched version = %d, want 2", v)
		}
	case <-ctx.Done():
		t.Fatal("Watch delivered nothing")
	}
	if info := mustPut(t, ctx, s, 2, Record{Config: inDefault(snap("web", 9))}); info.GetVersion() != 3 {
		t.Errorf("version after reopen = %d, want 3", info.GetVersion())
	}
}

func TestFileModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s := open(t, dir, BoltOptions{})
	defer s.Close()
	if s.Path() != filepath.Join(dir, FileName) {
		t.Errorf("Path = %s, want %s", s.Path(), filepath.Join(dir, FileName))
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, s.Path(): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("mode of %s = %o, want %o", path, got, want)
		}
	}
}

func TestSecondOpenIsRefused(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, BoltOptions{})
	defer s.Close()
	if s2, err := OpenBolt(dir, BoltOptions{LockTimeout: 50 * time.Millisecond}); err == nil {
		s2.Close()
		t.Fatal("second OpenBolt on a locked directory succeeded")
	}
}

func contractConcurrentPuts(t *testing.T, impl impl) {
	ctx := testContext(t)
	s := impl.open(t, 0)
	defer s.Close()
	const writers, each = 8, 10
	var (
		mu   sync.Mutex
		seen []uint64
		wg   sync.WaitGroup
	)
	for w := range writers {
		wg.Go(func() {
			var mine []uint64
			for i := range each {
				info, changed, err := s.Put(ctx, AnyBase, Record{Config: inDefault(snap(fmt.Sprintf("w%d-%d", w, i), 1))})
				if err != nil || !changed {
					t.Errorf("Put: %v, changed=%v", err, changed)
					return
				}
				mine = append(mine, info.GetVersion())
			}
			if !slices.IsSorted(mine) {
				t.Errorf("one writer's versions not increasing: %v", mine)
			}
			mu.Lock()
			seen = append(seen, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.Sort(seen)
	want := make([]uint64, writers*each)
	for i := range want {
		want[i] = uint64(i + 1)
	}
	if !slices.Equal(seen, want) {
		t.Errorf("versions = %v, want 1..%d each once", seen, writers*each)
	}
}

func contractCompareAndSwapUnderContention(t *testing.T, impl impl) {
	ctx := testContext(t)
	s := impl.open(t, 0)
	defer s.Close()
	// Every writer reads current, then puts with it as base, retrying on
	// conflict: each stored version's recorded base is its predecessor.
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			for i := 0; i < 5; {
				cur, err := s.Current(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				base := cur.Info.GetVersion()
				_, _, err = s.Put(ctx, base, Record{
					Config:  inDefault(snap(fmt.Sprintf("w%d-%d", w, i), 1)),
					Comment: fmt.Sprint(base),
				})
				if errors.Is(err, ErrConflict) {
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				i++
			}
		})
	}
	wg.Wait()
	h, _ := s.History(ctx, 0)
	if len(h) != 30 {
		t.Fatalf("History has %d versions, want 30", len(h))
	}
	for _, info := range h {
		if want := fmt.Sprint(info.GetVersion() - 1); info.GetComment() != want {
			t.Errorf("version %d was based on %s, want %s", info.GetVersion(), info.GetComment(), want)
		}
	}
}

func contractRetention(t *testing.T, impl impl) {
	ctx := testContext(t)
	s := impl.open(t, 3)
	defer s.Close()
	for i := range 5 {
		mustPut(t, ctx, s, AnyBase, Record{Config: inDefault(snap("web", uint32(i+1)))})
	}
	h, _ := s.History(ctx, 0)
	if got := versions(h); !slices.Equal(got, []uint64{5, 4, 3}) {
		t.Errorf("History = %v, want [5 4 3]", got)
	}
	if _, err := s.Get(ctx, 2); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(pruned) error = %v, want ErrNotFound", err)
	}
}

func contractWatch(t *testing.T, impl impl) {
	ctx := testContext(t)
	s := impl.open(t, 0)
	wctx, stop := context.WithCancel(ctx)
	ch := s.Watch(wctx)
	select {
	case v := <-ch:
		t.Fatalf("empty store announced version %d", v)
	default:
	}
	// A slow reader skips versions but gets the newest.
	for i := range 3 {
		mustPut(t, ctx, s, AnyBase, Record{Config: inDefault(snap("web", uint32(i+1)))})
	}
	if v := <-ch; v != 3 {
		t.Errorf("watched version = %d, want 3", v)
	}
	mustPut(t, ctx, s, AnyBase, Record{Config: inDefault(snap("web", 9))})
	if v := <-ch; v != 4 {
		t.Errorf("watched version = %d, want 4", v)
	}
	stop()
	if _, ok := <-ch; ok {
		t.Error("watch channel not closed after its context ended")
	}
	ch2 := s.Watch(ctx)
	if v := <-ch2; v != 4 {
		t.Errorf("new watcher's first version = %d, want 4", v)
	}
	s.Close()
	if _, ok := <-ch2; ok {
		t.Error("watch channel not closed by Close")
	}
}

// contractRefusals: History, Get and Current list each version with the
// nodes that refused it, earliest first, one refusal per node (the latest);
// a refusal of a version not kept, or not yet stored, is not recorded;
// refusals outlive a reopen and go with their version when it is pruned.
func contractRefusals(t *testing.T, impl impl) {
	ctx := testContext(t)
	place := impl.fresh(t)
	s := impl.openAt(t, place, 3)
	for i := range 3 {
		mustPut(t, ctx, s, AnyBase, Record{Config: inDefault(snap("web", uint32(i+1)))})
	}
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	refuse := func(v uint64, node, why string, after time.Duration) {
		t.Helper()
		if err := s.Refused(ctx, v, &sluicev1.Refusal{Node: node, Error: why, At: timestamppb.New(t0.Add(after))}); err != nil {
			t.Fatalf("Refused(%d, %s): %v", v, node, err)
		}
	}
	refuse(2, "edge-b", "bind: address already in use", 2*time.Second)
	refuse(2, "edge-a", "first", time.Second)
	refuse(2, "edge-a", "again, after a restart", 3*time.Second)
	refuse(1, "edge-c", "no such file", 0)
	refuse(5, "edge-a", "before it was stored", 0)
	want := map[uint64]string{3: "", 2: "edge-b: bind: address already in use; edge-a: again, after a restart", 1: "edge-c: no such file"}
	check := func(when string, want map[uint64]string) {
		t.Helper()
		h, err := s.History(ctx, 0)
		if err != nil {
			t.Fatalf("%s: History: %v", when, err)
		}
		got := map[uint64]string{}
		for _, info := range h {
			var rs []string
			for _, r := range info.GetRefusals() {
				rs = append(rs, r.GetNode()+": "+r.GetError())
			}
			got[info.GetVersion()] = strings.Join(rs, "; ")
		}
		if !maps.Equal(got, want) {
			t.Errorf("%s: refusals by version = %v, want %v", when, got, want)
		}
	}
	check("stored", want)
	// Get and Current list them too.
	for v, want := range want {
		got, err := s.Get(ctx, v)
		if err != nil {
			t.Fatalf("Get(%d): %v", v, err)
		}
		var rs []string
		for _, r := range got.Info.GetRefusals() {
			rs = append(rs, r.GetNode()+": "+r.GetError())
		}
		if strings.Join(rs, "; ") != want {
			t.Errorf("Get(%d) refusals: %q, want %q", v, rs, want)
		}
	}
	refuse(3, "edge-a", "current", 0)
	if cur, err := s.Current(ctx); err != nil || len(cur.Info.GetRefusals()) != 1 || cur.Info.GetRefusals()[0].GetError() != "current" {
		t.Errorf("Current: %v, %v; want version 3 refused by edge-a", cur, err)
	}
	want[3] = "edge-a: current"
	check("version 3 refused", want)
	if h, err := s.History(ctx, 1); err != nil || len(h) != 1 || len(h[0].GetRefusals()) != 1 {
		t.Errorf("History(limit 1) = %v, %v; want version 3, refused by one", h, err)
	}
	if h, _ := s.History(ctx, 2); len(h) != 2 || len(h[1].GetRefusals()) != 2 {
		t.Errorf("History(limit 2) = %v; want version 2 with its two refusals", h)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = impl.openAt(t, place, 3)
	defer s.Close()
	check("after reopen", want)
	// Version 1 falls out of the three kept: its refusal goes with it,
	// and one of it now records nothing.
	mustPut(t, ctx, s, AnyBase, Record{Config: inDefault(snap("web", 9))})
	refuse(1, "edge-d", "too late", 4*time.Second)
	check("after version 4", map[uint64]string{4: "", 3: want[3], 2: want[2]})
	// A refusal of a version before it was stored (a node of a store
	// numbered afresh) is no refusal of what it holds now.
	mustPut(t, ctx, s, AnyBase, Record{Config: inDefault(snap("web", 10))})
	check("after version 5", map[uint64]string{5: "", 4: "", 3: want[3]})
}

func versions(h []*sluicev1.VersionInfo) []uint64 {
	var out []uint64
	for _, i := range h {
		out = append(out, i.GetVersion())
	}
	return out
}

// TestBoltPrunesRefusals: the file keeps no refusal of a pruned version
// (History, which reads only the kept versions' refusals, cannot tell).
func TestBoltPrunesRefusals(t *testing.T) {
	ctx := testContext(t)
	s := open(t, filepath.Join(t.TempDir(), "data"), BoltOptions{Retain: 2})
	defer s.Close()
	for i := range 2 {
		mustPut(t, ctx, s, AnyBase, Record{Config: inDefault(snap("web", uint32(i+1)))})
	}
	for _, v := range []uint64{1, 2} {
		if err := s.Refused(ctx, v, &sluicev1.Refusal{Node: "edge-1", Error: "bind"}); err != nil {
			t.Fatal(err)
		}
	}
	mustPut(t, ctx, s, AnyBase, Record{Config: inDefault(snap("web", 3))})
	var kept []uint64
	if err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRefusals).ForEach(func(k, _ []byte) error {
			kept = append(kept, decodeVersion(k[:8]))
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(kept, []uint64{2}) {
		t.Errorf("refusals kept of versions %v, want [2]", kept)
	}
}

// contractNumberedVersion: a Record.Version above the current one plus one
// is the number stored, and History lists the versions with the gap; a
// number not above the current one is refused as taken.
func contractNumberedVersion(t *testing.T, impl impl) {
	ctx := testContext(t)
	s := impl.open(t, 0)
	mustPut(t, ctx, s, 0, Record{Config: inDefault(snap("web", 1))})
	if info := mustPut(t, ctx, s, 1, Record{Config: inDefault(snap("web", 2)), Version: 7}); info.GetVersion() != 7 {
		t.Fatalf("put numbered 7 stored version %d", info.GetVersion())
	}
	_, _, err := s.Put(ctx, 7, Record{Config: inDefault(snap("web", 3)), Version: 7})
	var taken *NumberTakenError
	if !errors.As(err, &taken) || taken.Next != 8 {
		t.Fatalf("put numbered 7 again: %v; want it refused as taken, 8 next", err)
	}
	if info := mustPut(t, ctx, s, 7, Record{Config: inDefault(snap("web", 3))}); info.GetVersion() != 8 {
		t.Errorf("unnumbered put stored version %d; want 8", info.GetVersion())
	}
	h, err := s.History(ctx, 0)
	if err != nil || !slices.Equal(versions(h), []uint64{8, 7, 1}) {
		t.Errorf("History = %v, %v; want 8, 7, 1", versions(h), err)
	}
	if _, err := s.Get(ctx, 4); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(4), never stored: %v; want ErrNotFound", err)
	}
}
