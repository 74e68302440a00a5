package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"google.golang.org/protobuf/proto"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// FileName is the name of the embedded store's file inside its directory.
const FileName = "sluice.db"

// DefaultRetain is how many versions the embedded store keeps when
// BoltOptions.Retain is 0. Older versions are deleted as new ones are stored;
// the current version is always kept.
const DefaultRetain = 1000

// Layout of the file: buckets keyed by the version as 8 big-endian bytes (so
// a cursor walks versions in order), plus one meta bucket.
var (
	bucketMeta      = []byte("meta")      // "current" -> version, "schema" -> 1
	bucketInfo      = []byte("info")      // version -> VersionInfo (proto)
	bucketSnapshots = []byte("snapshots") // version -> FleetConfig (deterministic proto)
	bucketRefusals  = []byte("refusals")  // version + node id -> Refusal (proto)
	keyCurrent      = []byte("current")
	keySchema       = []byte("schema")
)

// schemaVersion 2 stores a FleetConfig per version; files of schema 1, which
// stored one Snapshot per version, are converted on open (each snapshot
// becomes the default group's).
const schemaVersion = 2

// BoltOptions tune the embedded store.
type BoltOptions struct {
	// Retain is how many versions are kept; 0 means DefaultRetain and a
	// negative value keeps every version.
	Retain int
	// LockTimeout bounds the wait for the file lock held by another process
	// (another sluice-cp on the same directory). 0 means one second.
	LockTimeout time.Duration
}

// Bolt is the embedded Store: one bbolt file, DIR/sluice.db, readable only by
// its owner. bbolt serialises writers, so Put's compare-and-swap is a plain
// read-then-write inside one transaction, and every committed version is
// fsynced before Put returns.
type Bolt struct {
	db     *bolt.DB
	retain int
	notify Notifier
}

var _ Store = (*Bolt)(nil)

// OpenBolt opens (or creates) the store in dir, creating dir with mode 0700
// and the file with mode 0600 when they do not exist.
func OpenBolt(dir string, opts BoltOptions) (*Bolt, error) {
	if dir == "" {
		return nil, errors.New("store: empty data directory")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	path := filepath.Join(dir, FileName)
	timeout := opts.LockTimeout
	if timeout == 0 {
		timeout = time.Second
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("store: %s is locked by another process (is another sluice-cp running on it?)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	s := &Bolt{db: db, retain: opts.Retain}
	if s.retain == 0 {
		s.retain = DefaultRetain
	}
	var current uint64
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		for _, b := range [][]byte{bucketInfo, bucketSnapshots, bucketRefusals} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		switch v := meta.Get(keySchema); {
		case v == nil:
		case decodeVersion(v) == 1:
			if err := migrateSchema1(tx); err != nil {
				return fmt.Errorf("convert from schema 1: %w", err)
			}
		case decodeVersion(v) != schemaVersion:
			return fmt.Errorf("file has schema %d, this build reads %d", decodeVersion(v), schemaVersion)
		}
		if err := meta.Put(keySchema, encodeVersion(schemaVersion)); err != nil {
			return err
		}
		if v := meta.Get(keyCurrent); v != nil {
			current = decodeVersion(v)
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: %s: %w", path, err)
	}
	s.notify.Notify(current)
	return s, nil
}

// Path returns the store's file.
func (s *Bolt) Path() string { return s.db.Path() }

// Current implements Store.
func (s *Bolt) Current(ctx context.Context) (*Version, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var v *Version
	err := s.db.View(func(tx *bolt.Tx) error {
		cur := currentOf(tx)
		if cur == 0 {
			v = &Version{Info: &sluicev1.VersionInfo{}, Config: Initial()}
			return nil
		}
		var err error
		v, err = readVersion(tx, cur)
		return err
	})
	if err != nil {
		return nil, wrap(err)
	}
	return v, nil
}

// Get implements Store.
func (s *Bolt) Get(ctx context.Context, version uint64) (*Version, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var v *Version
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		v, err = readVersion(tx, version)
		return err
	})
	if err != nil {
		return nil, wrap(err)
	}
	return v, nil
}

// History implements Store.
func (s *Bolt) History(ctx context.Context, limit int) ([]*sluicev1.VersionInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []*sluicev1.VersionInfo
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketInfo).Cursor()
		for k, raw := c.Last(); k != nil; k, raw = c.Prev() {
			if limit > 0 && len(out) == limit {
				break
			}
			info := &sluicev1.VersionInfo{}
			if err := proto.Unmarshal(raw, info); err != nil {
				return fmt.Errorf("version %d: corrupt info: %w", decodeVersion(k), err)
			}
			if err := readRefusals(tx, k, info); err != nil {
				return err
			}
			out = append(out, info)
		}
		return nil
	})
	if err != nil {
		return nil, wrap(err)
	}
	return out, nil
}

// readRefusals adds to info the refusals of its version, whose key is key.
func readRefusals(tx *bolt.Tx, key []byte, info *sluicev1.VersionInfo) error {
	c := tx.Bucket(bucketRefusals).Cursor()
	for k, raw := c.Seek(key); k != nil && bytes.HasPrefix(k, key); k, raw = c.Next() {
		r := &sluicev1.Refusal{}
		if err := proto.Unmarshal(raw, r); err != nil {
			return fmt.Errorf("version %d: corrupt refusal of node %q: %w", decodeVersion(key), k[len(key):], err)
		}
		info.Refusals = append(info.Refusals, r)
	}
	sortRefusals(info.Refusals)
	return nil
}

// Refused implements Store.
func (s *Bolt) Refused(ctx context.Context, v uint64, r *sluicev1.Refusal) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
	if err != nil {
		return fmt.Errorf("store: marshal refusal: %w", err)
	}
	key := encodeVersion(v)
	err = s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketInfo).Get(key) == nil {
			return nil // not kept: nothing to list it with
		}
		return tx.Bucket(bucketRefusals).Put(append(key, r.GetNode()...), raw)
	})
	if err != nil {
		return wrap(err)
	}
	return nil
}

// Put implements Store.
func (s *Bolt) Put(ctx context.Context, base uint64, rec Record) (*sluicev1.VersionInfo, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	raw, err := encodeConfig(rec.Config)
	if err != nil {
		return nil, false, fmt.Errorf("store: marshal configuration: %w", err)
	}
	initial, err := encodeConfig(Initial())
	if err != nil {
		return nil, false, fmt.Errorf("store: marshal configuration: %w", err)
	}
	var (
		info    *sluicev1.VersionInfo
		changed bool
	)
	err = s.db.Update(func(tx *bolt.Tx) error {
		cur := currentOf(tx)
		if base != AnyBase && base != cur {
			return ErrConflict
		}
		if cur != 0 && bytes.Equal(tx.Bucket(bucketSnapshots).Get(encodeVersion(cur)), raw) {
			v, err := readVersion(tx, cur)
			if err != nil {
				return err
			}
			info = v.Info
			return nil
		}
		if cur == 0 && bytes.Equal(raw, initial) {
			// The initial configuration is what version 0 already means.
			info = &sluicev1.VersionInfo{}
			return nil
		}
		next := cur + 1
		if rec.Version != 0 {
			if rec.Version <= cur {
				return &NumberTakenError{Version: rec.Version, Current: cur, Next: next}
			}
			next = rec.Version
		}
		info = rec.info(next)
		infoRaw, err := proto.MarshalOptions{Deterministic: true}.Marshal(info)
		if err != nil {
			return err
		}
		key := encodeVersion(next)
		if err := tx.Bucket(bucketInfo).Put(key, infoRaw); err != nil {
			return err
		}
		if err := tx.Bucket(bucketSnapshots).Put(key, raw); err != nil {
			return err
		}
		if err := tx.Bucket(bucketMeta).Put(keyCurrent, key); err != nil {
			return err
		}
		changed = true
		return s.prune(tx, next)
	})
	if err != nil {
		return nil, false, wrap(err)
	}
	if changed {
		s.notify.Notify(info.Version)
	}
	return info, changed, nil
}

// prune deletes versions that fell out of the retention window ending at
// newest.
func (s *Bolt) prune(tx *bolt.Tx, newest uint64) error {
	if s.retain < 0 || newest <= uint64(s.retain) {
		return nil
	}
	cutoff := newest - uint64(s.retain) // versions <= cutoff go
	for _, name := range [][]byte{bucketInfo, bucketSnapshots, bucketRefusals} {
		c := tx.Bucket(name).Cursor()
		for k, _ := c.First(); k != nil && decodeVersion(k[:8]) <= cutoff; k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return err
			}
		}
	}
	return nil
}

// Watch implements Store.
func (s *Bolt) Watch(ctx context.Context) <-chan uint64 { return s.notify.Subscribe(ctx) }

// Close implements Store.
func (s *Bolt) Close() error {
	s.notify.Close()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

func currentOf(tx *bolt.Tx) uint64 {
	if v := tx.Bucket(bucketMeta).Get(keyCurrent); v != nil {
		return decodeVersion(v)
	}
	return 0
}

func readVersion(tx *bolt.Tx, version uint64) (*Version, error) {
	key := encodeVersion(version)
	infoRaw := tx.Bucket(bucketInfo).Get(key)
	snapRaw := tx.Bucket(bucketSnapshots).Get(key)
	if infoRaw == nil || snapRaw == nil {
		return nil, ErrNotFound
	}
	v := &Version{Info: &sluicev1.VersionInfo{}}
	if err := proto.Unmarshal(infoRaw, v.Info); err != nil {
		return nil, fmt.Errorf("version %d: corrupt info: %w", version, err)
	}
	cfg, err := decodeConfig(snapRaw)
	if err != nil {
		return nil, fmt.Errorf("version %d: corrupt configuration: %w", version, err)
	}
	v.Config = cfg
	if err := readRefusals(tx, key, v.Info); err != nil {
		return nil, err
	}
	return v, nil
}

// encodeConfig is how a version's configuration is kept: deterministic
// protobuf, so equal configurations are equal bytes. nil is the initial one.
func encodeConfig(cfg *sluicev1.FleetConfig) ([]byte, error) {
	if cfg == nil {
		cfg = Initial()
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(cfg)
}

func decodeConfig(raw []byte) (*sluicev1.FleetConfig, error) {
	cfg := &sluicev1.FleetConfig{}
	if err := proto.Unmarshal(raw, cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// migrateSchema1 rewrites each version's Snapshot as a FleetConfig holding
// it as the default group's, at that version.
func migrateSchema1(tx *bolt.Tx) error {
	b := tx.Bucket(bucketSnapshots)
	type kv struct{ k, v []byte }
	var rewritten []kv
	err := b.ForEach(func(k, raw []byte) error {
		snap := &sluicev1.Snapshot{}
		if err := proto.Unmarshal(raw, snap); err != nil {
			return fmt.Errorf("version %d: %w", decodeVersion(k), err)
		}
		cfg := Initial()
		cfg.Groups[0].Snapshot, cfg.Groups[0].Version = snap, decodeVersion(k)
		out, err := encodeConfig(cfg)
		if err != nil {
			return err
		}
		rewritten = append(rewritten, kv{bytes.Clone(k), out})
		return nil
	})
	if err != nil {
		return err
	}
	for _, e := range rewritten {
		if err := b.Put(e.k, e.v); err != nil {
			return err
		}
	}
	return nil
}

// wrap prefixes errors that do not already say where they come from.
func wrap(err error) error {
	switch {
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrConflict), errors.Is(err, ErrClosed), errors.As(err, new(*NumberTakenError)):
		return err
	case errors.Is(err, berrors.ErrDatabaseNotOpen):
		return ErrClosed
	}
	return fmt.Errorf("store: %w", err)
}

func encodeVersion(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func decodeVersion(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}
