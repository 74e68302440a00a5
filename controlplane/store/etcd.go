package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// DefaultEtcdPrefix is where the etcd store keeps its keys when
// EtcdOptions.Prefix is empty.
const DefaultEtcdPrefix = "/sluice/"

// Layout under the prefix P. Versions are written as 20 decimal digits so
// that etcd's byte order is their numeric order and a range read walks
// them oldest first.
//
//	P current            the current version, in decimal ("42")
//	P floor              00000000000000000042: versions up to 42 were given
//	                     before etcd went back (see Etcd); absent until then
//	P info/00000000000000000042       VersionInfo (deterministic proto)
//	P payload/00000000000000000042    what the version holds (encodeConfig)
//	P refusals/00000000000000000042/N Refusal of node N (deterministic proto)
//
// A version's info and payload are written in the transaction that makes it
// current and never change; its refusals come as nodes refuse it. Pruning
// deletes them all.
const (
	keyEtcdCurrent = "current"
	keyEtcdFloor   = "floor"
	dirEtcdInfo    = "info/"
	dirEtcdPayload = "payload/"
	dirEtcdRefused = "refusals/"
)

// EtcdOptions tune the etcd store.
type EtcdOptions struct {
	// Prefix is prepended to every key; DefaultEtcdPrefix when empty.
	// Control planes that share a prefix share their configuration.
	Prefix string
	// Retain is how many versions are kept; 0 means DefaultRetain and a
	// negative value keeps every version. Every replica must use the same
	// value, or they disagree on which versions History lists.
	Retain int
	// Logger receives the watch's complaints (nil: none).
	Logger *slog.Logger
	// Timeout bounds each call of the store on etcd: a call etcd has not
	// answered by then fails with ErrUnavailable rather than wait for
	// the caller's deadline. 0 means DefaultEtcdTimeout.
	Timeout time.Duration
	// CheckEvery is how often the store reads etcd's current version
	// beside its watch, to notice etcd going back; 0 means
	// DefaultEtcdCheck.
	CheckEvery time.Duration
}

// DefaultEtcdCheck is EtcdOptions.CheckEvery's default. A replica notices
// within it that its etcd was replaced or restored from a backup, at the
// cost of one read of one key.
const DefaultEtcdCheck = 5 * time.Second

// DefaultEtcdTimeout is EtcdOptions.Timeout's default: a healthy etcd
// answers in milliseconds, and one that lost its quorum gives up on a
// request after about 7 s (its own request timeout) when it answers at
// all.
const DefaultEtcdTimeout = 5 * time.Second

// Etcd is the replicated Store: several control planes on one etcd cluster
// (and one prefix) share one history of versions.
//
// Put is a compare-and-swap on the current version: a transaction that
// writes the new version's keys only if the current-version key has not
// changed since Put read it. Watch is fed from an etcd watch on that key, so
// a version stored through any replica reaches the watchers of all of them;
// Put also announces its own version locally at once.
//
// Retention is part of what versions exist, not of when old keys are
// deleted: a version more than Retain below the current one is "not kept"
// (History leaves it out, Get returns ErrNotFound) whether or not its keys
// are still there, so every replica answers alike at every moment. Prune
// deletes those keys; it is idempotent and safe to run from several
// replicas at once, and the control plane runs it from the elected leader
// only (package leader) to spare etcd the duplicate work.
//
// etcd itself can go back: replaced by an empty one, or restored from a
// backup, it holds an older current version (or none) and revisions below
// those the watch waits for, which would never come. Beside the watch, the
// store reads the current version every CheckEvery; when etcd's cluster
// changed, or its revision or current version went back, it follows etcd
// there (Watch announces the lower number, Notifier.Reset) and watches its
// new history. Numbers the store gave before may still name other
// configurations on nodes, so Put numbers new versions above the highest
// it saw (NumberTakenError), and the floor key keeps that number for the
// replicas that start later.
type Etcd struct {
	client  *clientv3.Client
	prefix  string
	retain  int
	timeout time.Duration
	every   time.Duration // between reads beside the watch
	log     *slog.Logger
	notify  Notifier
	// highest is the highest current version the store has read or
	// stored: numbers up to it were given.
	highest atomic.Uint64
	recheck chan struct{} // a Put saw etcd below highest: read it now

	closed    atomic.Bool
	closeOnce sync.Once
	cancel    context.CancelFunc // ends the watch
	watching  sync.WaitGroup
}

var _ Store = (*Etcd)(nil)

// OpenEtcd returns a store on client, which the caller keeps and closes after
// the store. It reads the current version (bounded by ctx and by
// opts.Timeout) and starts following it; etcd must be reachable.
func OpenEtcd(ctx context.Context, client *clientv3.Client, opts EtcdOptions) (*Etcd, error) {
	s := &Etcd{client: client, prefix: opts.Prefix, retain: opts.Retain, timeout: opts.Timeout, every: opts.CheckEvery,
		log: opts.Logger, recheck: make(chan struct{}, 1)}
	if s.timeout <= 0 {
		s.timeout = DefaultEtcdTimeout
	}
	if s.every <= 0 {
		s.every = DefaultEtcdCheck
	}
	if s.prefix == "" {
		s.prefix = DefaultEtcdPrefix
	}
	if s.retain == 0 {
		s.retain = DefaultRetain
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	var at position
	if err := s.do(ctx, func(ctx context.Context) (err error) {
		at, err = s.head(ctx)
		return err
	}); err != nil {
		return nil, err
	}
	s.announce(at.version)
	wctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.watching.Go(func() { s.watch(wctx, at) })
	return s, nil
}

// announce tells the watchers of version v, which etcd holds now.
func (s *Etcd) announce(v uint64) {
	for {
		h := s.highest.Load()
		if v <= h || s.highest.CompareAndSwap(h, v) {
			break
		}
	}
	s.notify.Notify(v)
}

// Prefix returns the prefix of the store's keys.
func (s *Etcd) Prefix() string { return s.prefix }

func (s *Etcd) key(name string) string { return s.prefix + name }

func (s *Etcd) versionKey(dir string, v uint64) string {
	return fmt.Sprintf("%s%s%020d", s.prefix, dir, v)
}

// current reads the current version and the store revision it was read at.
func (s *Etcd) current(ctx context.Context) (version uint64, rev int64, err error) {
	at, err := s.head(ctx)
	return at.version, at.rev, err
}

// position is a state of etcd as the store saw it: its cluster, its
// revision, and the current version then.
type position struct {
	cluster uint64
	rev     int64
	version uint64
}

// head reads where etcd is now. The read is linearizable, so each read
// sees every write before it: none is at a lower revision or version than
// an earlier one, unless etcd itself went back.
func (s *Etcd) head(ctx context.Context) (position, error) {
	resp, err := s.client.Get(ctx, s.key(keyEtcdCurrent))
	if err != nil {
		return position{}, err
	}
	at := position{cluster: resp.Header.GetClusterId(), rev: resp.Header.GetRevision()}
	if len(resp.Kvs) > 0 {
		at.version, err = parseCurrent(resp.Kvs[0].Value)
	}
	return at, err
}

// wentBack says how etcd at now is not a later state of etcd at p, or ""
// when it is.
func (p position) wentBack(now position) string {
	switch {
	case p.cluster != 0 && now.cluster != 0 && now.cluster != p.cluster:
		return fmt.Sprintf("its cluster id changed from %x to %x", p.cluster, now.cluster)
	case now.rev < p.rev:
		return fmt.Sprintf("its revision is %d, below the %d seen before", now.rev, p.rev)
	case now.version < p.version:
		return fmt.Sprintf("its current version is %d, below the %d seen before", now.version, p.version)
	}
	return ""
}

func parseCurrent(raw []byte) (uint64, error) {
	v, err := strconv.ParseUint(string(raw), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("corrupt current version %q", raw)
	}
	return v, nil
}

// kept reports whether version v is inside the retention window ending at
// current.
func (s *Etcd) kept(v, current uint64) bool {
	if v == 0 || v > current {
		return false
	}
	return s.retain < 0 || current-v < uint64(s.retain)
}

// oldestKept is the first version of the window ending at current.
func (s *Etcd) oldestKept(current uint64) uint64 {
	if s.retain < 0 || current < uint64(s.retain) {
		return 1
	}
	return current - uint64(s.retain) + 1
}

func (s *Etcd) check(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	return ctx.Err()
}

// do runs one call of the store, fn, on etcd within the store's timeout,
// and maps its error to the store's (wrap).
func (s *Etcd) do(ctx context.Context, fn func(context.Context) error) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	err := fn(cctx)
	if err != nil && cctx.Err() != nil && ctx.Err() == nil && !s.closed.Load() {
		// The store's deadline, not the caller's: etcd did not answer.
		return EtcdUnanswered(s.client.Endpoints(), s.timeout)
	}
	return s.wrap(err)
}

// EtcdUnanswered is the error of a call that etcd, at endpoints, did not
// answer within d: an ErrUnavailable in the words operators read ("etcd
// (http://10.0.0.1:2379) did not answer within 5s").
func EtcdUnanswered(endpoints []string, d time.Duration) error {
	return unavailable{fmt.Sprintf("%s did not answer within %v", etcdName(endpoints), d)}
}

// etcdName names an etcd by its endpoints, for errors.
func etcdName(endpoints []string) string {
	return "etcd (" + strings.Join(endpoints, ",") + ")"
}

// unavailable is an ErrUnavailable that says why.
type unavailable struct{ msg string }

func (u unavailable) Error() string        { return u.msg }
func (u unavailable) Is(target error) bool { return target == ErrUnavailable }

// Current implements Store.
func (s *Etcd) Current(ctx context.Context) (v *Version, err error) {
	err = s.do(ctx, func(ctx context.Context) error {
		cur, _, err := s.current(ctx)
		if err != nil {
			return err
		}
		if cur == 0 {
			v = &Version{Info: &sluicev1.VersionInfo{}, Config: Initial()}
			return nil
		}
		v, err = s.read(ctx, cur)
		return err
	})
	return v, err
}

// Get implements Store.
func (s *Etcd) Get(ctx context.Context, version uint64) (v *Version, err error) {
	err = s.do(ctx, func(ctx context.Context) error {
		cur, _, err := s.current(ctx)
		if err != nil {
			return err
		}
		if !s.kept(version, cur) {
			return ErrNotFound
		}
		v, err = s.read(ctx, version)
		return err
	})
	return v, err
}

// read reads version v's info, payload and refusals in one request.
func (s *Etcd) read(ctx context.Context, v uint64) (*Version, error) {
	resp, err := s.client.Txn(ctx).Then(
		clientv3.OpGet(s.versionKey(dirEtcdInfo, v)),
		clientv3.OpGet(s.versionKey(dirEtcdPayload, v)),
		clientv3.OpGet(s.versionKey(dirEtcdRefused, v)+"/", clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return nil, err
	}
	info, payload := resp.Responses[0].GetResponseRange().GetKvs(), resp.Responses[1].GetResponseRange().GetKvs()
	if len(info) == 0 || len(payload) == 0 {
		return nil, ErrNotFound
	}
	out := &Version{Info: &sluicev1.VersionInfo{}}
	if err := proto.Unmarshal(info[0].Value, out.Info); err != nil {
		return nil, fmt.Errorf("version %d: corrupt info: %w", v, err)
	}
	if err := decodePayload(payload[0].Value, out); err != nil {
		return nil, fmt.Errorf("version %d: corrupt payload: %w", v, err)
	}
	for _, kv := range resp.Responses[2].GetResponseRange().GetKvs() {
		r, err := decodeRefusal(kv)
		if err != nil {
			return nil, err
		}
		out.Info.Refusals = append(out.Info.Refusals, r)
	}
	sortRefusals(out.Info.Refusals)
	return out, nil
}

// decodeRefusal decodes the value of a key under dirEtcdRefused.
func decodeRefusal(kv *mvccpb.KeyValue) (*sluicev1.Refusal, error) {
	r := &sluicev1.Refusal{}
	if err := proto.Unmarshal(kv.Value, r); err != nil {
		return nil, fmt.Errorf("%s: corrupt refusal: %w", kv.Key, err)
	}
	return r, nil
}

// History implements Store.
func (s *Etcd) History(ctx context.Context, limit int) (out []*sluicev1.VersionInfo, err error) {
	err = s.do(ctx, func(ctx context.Context) (err error) {
		out, err = s.history(ctx, limit)
		return err
	})
	return out, err
}

func (s *Etcd) history(ctx context.Context, limit int) ([]*sluicev1.VersionInfo, error) {
	cur, rev, err := s.current(ctx)
	if err != nil {
		return nil, err
	}
	if cur == 0 {
		return nil, nil
	}
	opts := []clientv3.OpOption{
		clientv3.WithRange(s.versionKey(dirEtcdInfo, cur+1)),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend),
		clientv3.WithRev(rev), // the history as of the current version read
	}
	if limit > 0 {
		opts = append(opts, clientv3.WithLimit(int64(limit)))
	}
	resp, err := s.client.Get(ctx, s.versionKey(dirEtcdInfo, s.oldestKept(cur)), opts...)
	if err != nil {
		return nil, err
	}
	out := make([]*sluicev1.VersionInfo, 0, len(resp.Kvs))
	byVersion := make(map[uint64]*sluicev1.VersionInfo, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		info := &sluicev1.VersionInfo{}
		if err := proto.Unmarshal(kv.Value, info); err != nil {
			return nil, fmt.Errorf("%s: corrupt info: %w", kv.Key, err)
		}
		out = append(out, info)
		byVersion[info.GetVersion()] = info
	}
	if len(out) == 0 {
		return out, nil
	}
	// The refusals of every version listed, in one read of their range.
	newest, oldest := out[0].GetVersion(), out[len(out)-1].GetVersion()
	refused, err := s.client.Get(ctx, s.versionKey(dirEtcdRefused, oldest),
		clientv3.WithRange(s.versionKey(dirEtcdRefused, newest+1)), clientv3.WithRev(rev))
	if err != nil {
		return nil, err
	}
	dir := s.key(dirEtcdRefused)
	for _, kv := range refused.Kvs {
		digits, _, _ := strings.Cut(strings.TrimPrefix(string(kv.Key), dir), "/")
		v, err := strconv.ParseUint(digits, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: not a version's refusal", kv.Key)
		}
		info := byVersion[v]
		if info == nil {
			continue
		}
		r, err := decodeRefusal(kv)
		if err != nil {
			return nil, err
		}
		info.Refusals = append(info.Refusals, r)
	}
	for _, info := range out {
		sortRefusals(info.Refusals)
	}
	return out, nil
}

// Refused implements Store. The refusal is written only while its version's
// info is there: a version not stored yet, or pruned meanwhile, gets none.
func (s *Etcd) Refused(ctx context.Context, v uint64, r *sluicev1.Refusal) error {
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
	if err != nil {
		return fmt.Errorf("store: marshal refusal: %w", err)
	}
	info := s.versionKey(dirEtcdInfo, v)
	return s.do(ctx, func(ctx context.Context) error {
		_, err := s.client.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(info), ">", 0)).Then(
			clientv3.OpPut(s.versionKey(dirEtcdRefused, v)+"/"+r.GetNode(), string(raw)),
		).Commit()
		return err
	})
}

// Put implements Store. When etcd does not answer in time, whether the
// version was stored is not known: the error says so.
func (s *Etcd) Put(ctx context.Context, base uint64, rec Record) (info *sluicev1.VersionInfo, changed bool, err error) {
	payload, err := encodeConfig(rec.Config)
	if err != nil {
		return nil, false, fmt.Errorf("store: marshal snapshot: %w", err)
	}
	err = s.do(ctx, func(ctx context.Context) error {
		for {
			var retry bool
			var err error
			info, changed, retry, err = s.tryPut(ctx, base, rec, payload)
			if err != nil || !retry {
				return err
			}
			// AnyBase lost a race with another writer: store on top
			// of the version that won.
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	})
	if errors.Is(err, ErrUnavailable) {
		return nil, false, unavailable{err.Error() + "; if it stored the version, history lists it once etcd answers"}
	}
	if err != nil {
		return nil, false, err
	}
	if changed {
		s.announce(info.GetVersion())
	}
	return info, changed, nil
}

// tryPut is one compare-and-swap. retry reports that the current version
// moved under an AnyBase write.
func (s *Etcd) tryPut(ctx context.Context, base uint64, rec Record, payload []byte) (info *sluicev1.VersionInfo, changed, retry bool, err error) {
	curKey, floorKey := s.key(keyEtcdCurrent), s.key(keyEtcdFloor)
	resp, err := s.client.Txn(ctx).Then(clientv3.OpGet(curKey), clientv3.OpGet(floorKey)).Commit()
	if err != nil {
		return nil, false, false, err
	}
	// The guards: both keys are as read.
	var cur, floor uint64
	cmps := make([]clientv3.Cmp, 0, 2)
	for i, key := range []string{curKey, floorKey} {
		kvs := resp.Responses[i].GetResponseRange().GetKvs()
		if len(kvs) == 0 {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(key), "=", 0))
			continue
		}
		v, err := parseCurrent(kvs[0].Value)
		if err != nil {
			return nil, false, false, fmt.Errorf("%s: %w", key, err)
		}
		if key == curKey {
			cur = v
		} else {
			floor = v
		}
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(key), "=", kvs[0].ModRevision))
	}
	if base != AnyBase && base != cur {
		return nil, false, false, ErrConflict
	}
	if h := s.highest.Load(); h > cur {
		// etcd went back, or (if the guard fails) a version stored
		// since the read reached the watch first. Number above it all
		// the same, and have the watch look.
		floor = max(floor, h)
		select {
		case s.recheck <- struct{}{}:
		default:
		}
	}
	if initial, err := encodeConfig(nil); err != nil {
		return nil, false, false, err
	} else if cur == 0 && bytes.Equal(payload, initial) {
		return &sluicev1.VersionInfo{}, false, false, nil // the initial configuration is what version 0 means
	}
	if cur != 0 {
		got, err := s.client.Get(ctx, s.versionKey(dirEtcdPayload, cur))
		if err != nil {
			return nil, false, false, err
		}
		if len(got.Kvs) > 0 && bytes.Equal(got.Kvs[0].Value, payload) {
			v, err := s.read(ctx, cur)
			if err != nil {
				return nil, false, false, err
			}
			return v.Info, false, false, nil
		}
	}
	next := max(cur, floor) + 1
	if rec.Version != 0 {
		if rec.Version < next {
			// Taken, unless the current version moved since the read:
			// then what the watch saw is only ahead of it.
			txn, err := s.client.Txn(ctx).If(cmps...).Commit()
			switch {
			case err != nil:
				return nil, false, false, err
			case txn.Succeeded:
				return nil, false, false, &NumberTakenError{Version: rec.Version, Current: cur, Next: next}
			case base != AnyBase:
				return nil, false, false, ErrConflict
			}
			return nil, false, true, nil
		}
		next = rec.Version
	}
	info = rec.info(next)
	infoRaw, err := proto.MarshalOptions{Deterministic: true}.Marshal(info)
	if err != nil {
		return nil, false, false, err
	}
	txn, err := s.client.Txn(ctx).If(cmps...).Then(
		clientv3.OpPut(s.versionKey(dirEtcdInfo, next), string(infoRaw)),
		clientv3.OpPut(s.versionKey(dirEtcdPayload, next), string(payload)),
		clientv3.OpPut(curKey, strconv.FormatUint(next, 10)),
	).Commit()
	if err != nil {
		return nil, false, false, err
	}
	if !txn.Succeeded {
		if base != AnyBase {
			return nil, false, false, ErrConflict
		}
		return nil, false, true, nil
	}
	return info, true, false, nil
}

// Prune deletes the keys of versions that fell out of the retention window.
// What it deletes depends only on the current version, and deleting what is
// already gone does nothing, so replicas that prune at once agree.
func (s *Etcd) Prune(ctx context.Context) error {
	return s.do(ctx, func(ctx context.Context) error {
		cur, _, err := s.current(ctx)
		if err != nil {
			return err
		}
		oldest := s.oldestKept(cur)
		if oldest <= 1 {
			return nil
		}
		_, err = s.client.Txn(ctx).Then(
			clientv3.OpDelete(s.versionKey(dirEtcdInfo, 0), clientv3.WithRange(s.versionKey(dirEtcdInfo, oldest))),
			clientv3.OpDelete(s.versionKey(dirEtcdPayload, 0), clientv3.WithRange(s.versionKey(dirEtcdPayload, oldest))),
			clientv3.OpDelete(s.versionKey(dirEtcdRefused, 0), clientv3.WithRange(s.versionKey(dirEtcdRefused, oldest))),
		).Commit()
		return err
	})
}

// watchRetry is how long the watch waits before following the current
// version again after losing etcd.
const watchRetry = 500 * time.Millisecond

// watch announces every value the current-version key takes after at,
// until ctx ends. When etcd's watch breaks (compaction, lost leader, lost
// connection) it reads the current version again and watches from there,
// so no newest version is missed. When etcd went back, it follows it
// (wentBack).
func (s *Etcd) watch(ctx context.Context, at position) {
	check := time.NewTicker(s.every)
	defer check.Stop()
	for ctx.Err() == nil {
		now, broke := s.follow(ctx, &at, check.C)
		if broke {
			select {
			case <-ctx.Done():
				return
			case <-time.After(watchRetry):
			}
			// Whatever happened meanwhile is in the current value:
			// read it, then watch for changes after it.
			rctx, cancel := context.WithTimeout(ctx, s.timeout)
			var err error
			now, err = s.head(rctx)
			cancel()
			if err != nil {
				continue // at stays; the next watch tries from where we were
			}
		}
		if why := at.wentBack(now); why != "" {
			s.wentBack(ctx, why, now)
		} else {
			s.announce(now.version)
		}
		at = now
	}
}

// follow announces the values the current-version key takes after *at,
// moving *at along. It returns broke when etcd's watch breaks (or ctx
// ends), and where etcd is when a read of it (at each tick of check, and
// when a Put asks) finds that it went back from *at.
func (s *Etcd) follow(ctx context.Context, at *position, check <-chan time.Time) (now position, broke bool) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wch := s.client.Watch(clientv3.WithRequireLeader(ctx), s.key(keyEtcdCurrent), clientv3.WithRev(at.rev+1))
	for {
		select {
		case <-ctx.Done():
			return *at, true
		case resp, ok := <-wch:
			if !ok {
				return *at, true
			}
			if err := resp.Err(); err != nil {
				if ctx.Err() == nil { // not the store closing
					s.log.Warn("etcd watch of the current version broke; following it again", "err", err)
				}
				return *at, true
			}
			for _, ev := range resp.Events {
				if ev.Type != clientv3.EventTypePut {
					continue
				}
				v, err := parseCurrent(ev.Kv.Value)
				if err != nil {
					s.log.Error("etcd store", "err", err)
					continue
				}
				next := position{cluster: at.cluster, rev: ev.Kv.ModRevision, version: v}
				if at.wentBack(next) != "" {
					// The history of a new etcd reached the revisions
					// watched: read where it is.
					return *at, true
				}
				*at = next
				s.announce(v)
			}
		case <-check:
			if now, ok := s.wentBackFrom(ctx, *at); ok {
				return now, false
			}
		case <-s.recheck:
			if now, ok := s.wentBackFrom(ctx, *at); ok {
				return now, false
			}
		}
	}
}

// wentBackFrom reads where etcd is and reports whether it went back from
// at; a failed read says nothing.
func (s *Etcd) wentBackFrom(ctx context.Context, at position) (position, bool) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	now, err := s.head(ctx)
	return now, err == nil && at.wentBack(now) != ""
}

// wentBack follows etcd, which went back (why) to now: it was replaced
// by an empty etcd or restored from a backup. Watchers are told the older
// version, and the floor key keeps the highest number given before, for
// the replicas that never saw it.
func (s *Etcd) wentBack(ctx context.Context, why string, now position) {
	highest := s.highest.Load()
	s.log.Warn("etcd went back ("+why+"): it was replaced, or restored from a backup; following it, and numbering new versions above the highest stored before",
		"current", now.version, "highest_before", highest)
	if highest > now.version {
		if err := s.raiseFloor(ctx, highest); err != nil && ctx.Err() == nil {
			s.log.Warn("cannot keep the highest version stored before etcd went back; a replica started from now on may number versions again that nodes hold",
				"highest_before", highest, "err", err)
		}
	}
	s.notify.Reset(now.version)
}

// raiseFloor makes the floor key at least v.
func (s *Etcd) raiseFloor(ctx context.Context, v uint64) error {
	key, val := s.key(keyEtcdFloor), fmt.Sprintf("%020d", v)
	return s.do(ctx, func(ctx context.Context) error {
		// 20 digits compare as bytes as they do as numbers.
		_, err := s.client.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, val)).
			Else(clientv3.OpTxn([]clientv3.Cmp{clientv3.Compare(clientv3.Value(key), "<", val)}, []clientv3.Op{clientv3.OpPut(key, val)}, nil)).
			Commit()
		return err
	})
}

// Watch implements Store.
func (s *Etcd) Watch(ctx context.Context) <-chan uint64 { return s.notify.Subscribe(ctx) }

// Close implements Store. It does not close the etcd client, which belongs
// to the caller.
func (s *Etcd) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.cancel()
		s.watching.Wait()
		s.notify.Close()
	})
	return nil
}

// wrap maps etcd's errors to the store's.
func (s *Etcd) wrap(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrConflict), errors.Is(err, ErrClosed), errors.As(err, new(*NumberTakenError)), errors.Is(err, ErrUnavailable):
		return err
	case s.closed.Load():
		return ErrClosed
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.Is(err, rpctypes.ErrRequestTooLarge), status.Code(err) == codes.ResourceExhausted:
		// The server's limit, or the client's own (clientv3.Config's
		// MaxCallSendMsgSize, 2 MiB by default).
		return fmt.Errorf("store: etcd: the version is larger than etcd accepts (its --max-request-bytes, 1.5 MiB by default): %w", err)
	case status.Code(err) == codes.Unavailable, errors.Is(err, rpctypes.ErrTimeout), errors.Is(err, rpctypes.ErrNoLeader),
		errors.Is(err, rpctypes.ErrTimeoutDueToLeaderFail), errors.Is(err, rpctypes.ErrTimeoutDueToConnectionLost):
		// etcd answered that it cannot serve now: it lost its quorum or
		// its leader.
		return unavailable{fmt.Sprintf("%s: %v", etcdName(s.client.Endpoints()), err)}
	case errors.Is(err, rpctypes.ErrPermissionDenied):
		return fmt.Errorf("store: etcd: the replica's etcd user may not read and write under %s (its role needs readwrite on that prefix): %w", s.prefix, err)
	}
	return fmt.Errorf("store: etcd: %w", err)
}

// decodePayload reads what a version holds beside its info: its
// configuration, encoded as the embedded store encodes it (encodeConfig),
// so that equal configurations are equal bytes.
func decodePayload(raw []byte, into *Version) error {
	cfg, err := decodeConfig(raw)
	into.Config = cfg
	return err
}
