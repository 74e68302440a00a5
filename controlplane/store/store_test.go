package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

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

func TestEmptyStore(t *testing.T) {
	ctx := testContext(t)
	s := open(t, t.TempDir(), BoltOptions{})
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

func TestPutVersionsAndHistory(t *testing.T) {
	ctx := testContext(t)
	s := open(t, t.TempDir(), BoltOptions{})
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

func TestDurableAcrossReopen(t *testing.T) {
	ctx := testContext(t)
	dir := filepath.Join(t.TempDir(), "data")
	s := open(t, dir, BoltOptions{})
	mustPut(t, ctx, s, 0, Record{Config: inDefault(snap("web", 1)), Author: "ann"})
	mustPut(t, ctx, s, 1, Record{Config: inDefault(snap("api", 2)), Author: "bob", Comment: "swap"})
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := s.Current(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Current after Close: error = %v, want ErrClosed", err)
	}

	s = open(t, dir, BoltOptions{})
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

func TestConcurrentPuts(t *testing.T) {
	ctx := testContext(t)
	s := open(t, t.TempDir(), BoltOptions{})
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

func TestCompareAndSwapUnderContention(t *testing.T) {
	ctx := testContext(t)
	s := open(t, t.TempDir(), BoltOptions{})
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

func TestRetention(t *testing.T) {
	ctx := testContext(t)
	s := open(t, t.TempDir(), BoltOptions{Retain: 3})
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

func TestWatch(t *testing.T) {
	ctx := testContext(t)
	s := open(t, t.TempDir(), BoltOptions{})
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

func versions(h []*sluicev1.VersionInfo) []uint64 {
	var out []uint64
	for _, i := range h {
		out = append(out, i.GetVersion())
	}
	return out
}
