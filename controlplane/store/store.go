// Package store keeps the control plane's configuration as a history of
// numbered versions.
//
// A version holds the whole configuration, a [sluicev1.FleetConfig]: every
// node group with its selector and snapshot. It is created by every Put that
// changes the configuration: its number is the current one plus one, and it
// becomes current at once. Versions never go back: a rollback is a Put of an
// older snapshot, which becomes a new version. (Only etcd itself can take
// the current version back, when it is replaced or restored from a backup;
// [Etcd] then follows it, and numbers new versions above every number it
// gave before.) Each version keeps its [sluicev1.VersionInfo] (who, when,
// why, which group, and what changed) beside the configuration itself.
//
// [Store] is the contract the rest of the control plane uses; [Bolt] is the
// embedded implementation (one bbolt file), the default. [Etcd] is the
// replicated one, for several control planes sharing one history: Put is a
// compare-and-swap on the current version (an etcd transaction on the
// current-version key's revision), and [Notifier] is fed from an etcd watch
// on that key as well as from the local commit.
package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sluice-lb/sluice/controlplane/groups"
	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

var (
	// ErrNotFound is returned by Get for a version that was never stored or
	// is no longer kept.
	ErrNotFound = errors.New("store: version not found")
	// ErrConflict is returned by Put when the current version is not the
	// base the caller named: someone else stored a version in between. The
	// caller reads the current version again and retries.
	ErrConflict = errors.New("store: current version changed concurrently")
	// ErrClosed is returned by every method after Close.
	ErrClosed = errors.New("store: closed")
	// ErrUnavailable matches the errors of a replicated store whose
	// backend did not answer in time or said it cannot serve: the call
	// may work again later. A Put that failed so may have stored its
	// version all the same.
	ErrUnavailable = errors.New("store: unavailable")
)

// Initial is the configuration of version 0: the default group, whose empty
// selector takes every node, with an empty snapshot.
func Initial() *sluicev1.FleetConfig { return groups.Initial() }

// AnyBase as the base of a Put stores the record whatever the current version
// is. Writers that diff against the current version must name it instead, so
// the diff they record is the diff that happened.
const AnyBase uint64 = math.MaxUint64

// Version is one stored version. The messages belong to the caller: a Store
// never keeps or modifies what it returns.
type Version struct {
	Info   *sluicev1.VersionInfo
	Config *sluicev1.FleetConfig
}

// Record is what a writer asks a Store to keep as a new version. The store
// stamps the version number and the creation time.
type Record struct {
	Config *sluicev1.FleetConfig
	// Group names the group whose snapshot or selector changed.
	Group   string
	Author  string
	Comment string
	// Changes are the lines of the diff from the base version, e.g.
	// "~ cluster web: endpoint web2 weight 1 -> 3".
	Changes []string
	// Fingerprint is the snapshot.Fingerprint of the snapshot the version
	// sends Group's nodes.
	Fingerprint []byte
	// Version is the number the version is to have, above the current
	// one; 0 means the current one plus one. A writer that puts the number
	// into Config (as a group's version) sets it, and gets a
	// *NumberTakenError when the store will not give that number.
	Version uint64
}

// A NumberTakenError is Put's answer to a Record.Version that the store
// gave before, to another configuration, and then lost: its etcd was
// replaced by an empty one or restored from a backup, and went back to an
// older current version. Nodes may still run what the number meant then,
// so the store numbers new versions above every number it gave. The
// writer numbers the version Next and puts it again.
type NumberTakenError struct {
	Version, Current, Next uint64
}

func (e *NumberTakenError) Error() string {
	return fmt.Sprintf("store: version %d was stored before the store went back to version %d; number the new version %d or above",
		e.Version, e.Current, e.Next)
}

// info is the VersionInfo of rec stored as version v, created now: what
// both stores write beside the configuration.
func (rec *Record) info(v uint64) *sluicev1.VersionInfo {
	return &sluicev1.VersionInfo{
		Version:     v,
		Created:     timestamppb.Now(),
		Author:      rec.Author,
		Comment:     rec.Comment,
		Changes:     rec.Changes,
		Group:       rec.Group,
		Fingerprint: rec.Fingerprint,
	}
}

// sortRefusals orders a version's refusals as History returns them: the
// earliest first, of equal times by node.
func sortRefusals(rs []*sluicev1.Refusal) {
	slices.SortFunc(rs, func(a, b *sluicev1.Refusal) int {
		if c := a.GetAt().AsTime().Compare(b.GetAt().AsTime()); c != 0 {
			return c
		}
		return strings.Compare(a.GetNode(), b.GetNode())
	})
}

// Store is a durable history of snapshot versions. All methods are safe for
// concurrent use from any goroutine.
type Store interface {
	// Current returns the current version. Before the first Put it returns
	// version 0 with the Initial configuration and no error: version 0 is
	// "nothing configured yet", which nodes never receive.
	Current(ctx context.Context) (*Version, error)
	// Get returns a stored version, or ErrNotFound. Current's and Get's
	// Version.Info lists the version's refusals, as History does.
	Get(ctx context.Context, version uint64) (*Version, error)
	// History returns the infos of kept versions, newest first, at most
	// limit of them (0: all kept), each with its refusals.
	History(ctx context.Context, limit int) ([]*sluicev1.VersionInfo, error)
	// Refused records that r.Node refused version v, replacing what it
	// recorded of that node and version before; History then lists it
	// with the version (VersionInfo.Refusals, all of them, earliest first).
	// A version not kept records nothing, and pruning it deletes its
	// refusals.
	Refused(ctx context.Context, v uint64, r *sluicev1.Refusal) error
	// Put stores rec as version current+1 (or rec.Version) and makes it
	// current, provided base is the current version (or AnyBase);
	// otherwise it returns ErrConflict and stores nothing. A
	// configuration equal to the current one stores nothing and returns
	// the current info with changed false. Watchers are notified after
	// the version is durable.
	Put(ctx context.Context, base uint64, rec Record) (info *sluicev1.VersionInfo, changed bool, err error)
	// Watch returns a channel that receives the current version number
	// right away (when one exists) and then every newer one. It keeps only
	// the latest undelivered number, so a slow reader skips versions but
	// never misses the newest. The channel is closed when ctx ends or the
	// store is closed.
	Watch(ctx context.Context) <-chan uint64
	// Close releases the store; watch channels are closed.
	Close() error
}
