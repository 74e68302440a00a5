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
//	P info/00000000000000000042       VersionInfo (deterministic proto)
//	P payload/00000000000000000042    what the version holds (encodeConfig)
//	P refusals/00000000000000000042/N Refusal of node N (deterministic proto)
//
// A version's info and payload are written in the transaction that makes it
// current and never change; its refusals come as nodes refuse it. Pruning
// deletes them all.
const (
	keyEtcdCurrent = "current"
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
}

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
type Etcd struct {
	client  *clientv3.Client
	prefix  string
	retain  int
	timeout time.Duration
	log     *slog.Logger
	notify  Notifier

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
	s := &Etcd{client: client, prefix: opts.Prefix, retain: opts.Retain, timeout: opts.Timeout, log: opts.Logger}
	if s.timeout <= 0 {
		s.timeout = DefaultEtcdTimeout
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
	var cur uint64
	var rev int64
	if err := s.do(ctx, func(ctx context.Context) (err error) {
		cur, rev, err = s.current(ctx)
		return err
	}); err != nil {
		return nil, err
	}
	s.notify.Notify(cur)
	wctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.watching.Go(func() { s.watch(wctx, rev+1) })
	return s, nil
}

// Prefix returns the prefix of the store's keys.
func (s *Etcd) Prefix() string { return s.prefix }

func (s *Etcd) key(name string) string { return s.prefix + name }

func (s *Etcd) versionKey(dir string, v uint64) string {
	return fmt.Sprintf("%s%s%020d", s.prefix, dir, v)
}

// current reads the current version and the store revision it was read at.
func (s *Etcd) current(ctx context.Context) (version uint64, rev int64, err error) {
	resp, err := s.client.Get(ctx, s.key(keyEtcdCurrent))
	if err != nil {
		return 0, 0, err
	}
	if len(resp.Kvs) == 0 {
		return 0, resp.Header.Revision, nil
	}
	v, err := parseCurrent(resp.Kvs[0].Value)
	return v, resp.Header.Revision, err
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
		s.notify.Notify(info.GetVersion())
	}
	return info, changed, nil
}

// tryPut is one compare-and-swap. retry reports that the current version
// moved under an AnyBase write.
func (s *Etcd) tryPut(ctx context.Context, base uint64, rec Record, payload []byte) (info *sluicev1.VersionInfo, changed, retry bool, err error) {
	curKey := s.key(keyEtcdCurrent)
	resp, err := s.client.Get(ctx, curKey)
	if err != nil {
		return nil, false, false, err
	}
	var (
		cur   uint64
		guard clientv3.Cmp // the current-version key is as read
	)
	if len(resp.Kvs) == 0 {
		guard = clientv3.Compare(clientv3.CreateRevision(curKey), "=", 0)
	} else {
		if cur, err = parseCurrent(resp.Kvs[0].Value); err != nil {
			return nil, false, false, err
		}
		guard = clientv3.Compare(clientv3.ModRevision(curKey), "=", resp.Kvs[0].ModRevision)
	}
	if base != AnyBase && base != cur {
		return nil, false, false, ErrConflict
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
	next := cur + 1
	info = rec.info(next)
	infoRaw, err := proto.MarshalOptions{Deterministic: true}.Marshal(info)
	if err != nil {
		return nil, false, false, err
	}
	txn, err := s.client.Txn(ctx).If(guard).Then(
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

// watch announces every value the current-version key takes from revision
// rev on, until ctx ends. When etcd's watch breaks (compaction, lost leader,
// lost connection) it reads the current version again and watches from
// there, so no newest version is missed.
func (s *Etcd) watch(ctx context.Context, rev int64) {
	key := s.key(keyEtcdCurrent)
	for ctx.Err() == nil {
		wch := s.client.Watch(clientv3.WithRequireLeader(ctx), key, clientv3.WithRev(rev))
		for resp := range wch {
			if err := resp.Err(); err != nil {
				s.log.Warn("etcd watch of the current version broke; following it again", "err", err)
				break
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
				s.notify.Notify(v)
			}
		}
		if ctx.Err() != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(watchRetry):
		}
		// Whatever happened meanwhile is in the current value: read it,
		// then watch for changes after it.
		rctx, cancel := context.WithTimeout(ctx, s.timeout)
		cur, r, err := s.current(rctx)
		cancel()
		if err != nil {
			continue // rev stays; the next watch tries from where we were
		}
		s.notify.Notify(cur)
		rev = r + 1
	}
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
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrConflict), errors.Is(err, ErrClosed), errors.Is(err, ErrUnavailable):
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
