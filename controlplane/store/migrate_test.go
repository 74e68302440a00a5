package store

import (
	"context"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// A file written before node groups (schema 1: one Snapshot per version)
// opens with each version's snapshot as the default group's, at that
// version, and takes new versions after it.
func TestOpenConvertsSchema1(t *testing.T) {
	dir := t.TempDir()
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta, _ := tx.CreateBucket(bucketMeta)
		infos, _ := tx.CreateBucket(bucketInfo)
		snaps, _ := tx.CreateBucket(bucketSnapshots)
		for v := uint64(1); v <= 2; v++ {
			info, _ := proto.Marshal(&sluicev1.VersionInfo{Version: v, Author: "old"})
			raw, _ := proto.Marshal(snap("web", uint32(v)))
			infos.Put(encodeVersion(v), info)
			snaps.Put(encodeVersion(v), raw)
		}
		meta.Put(keyCurrent, encodeVersion(2))
		return meta.Put(keySchema, encodeVersion(1))
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()

	s, err := OpenBolt(dir, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	for v := uint64(1); v <= 2; v++ {
		got, err := s.Get(ctx, v)
		if err != nil {
			t.Fatal(err)
		}
		g := got.Config.GetGroups()
		if len(g) != 1 || g[0].GetName() != "default" || g[0].GetSelector() != "" || g[0].GetVersion() != v || !proto.Equal(g[0].GetSnapshot(), snap("web", uint32(v))) {
			t.Errorf("version %d converted to %v", v, got.Config)
		}
	}
	if info := mustPut(t, ctx, s, 2, Record{Config: inDefault(snap("web", 7))}); info.GetVersion() != 3 {
		t.Errorf("next version after conversion = %d, want 3", info.GetVersion())
	}
}
