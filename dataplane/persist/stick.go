// Package persist holds the dataplane's session persistence: the stick table
// that keeps a client on the endpoint it was first sent to (HAProxy's "stick
// on src"), and the values of persistence cookies.
package persist

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-lb/sluice/dataplane/upstream"
)

// shards splits a table's lock so that clients of different shards do not
// contend; a power of two.
const (
	shardBits = 6
	shards    = 1 << shardBits
)

// Table maps client addresses to the endpoint that served them last, until
// the entry has not been used for its expiry time. It is safe for
// concurrent use. Lookups and updates take one shard's lock for a map
// access; they do not allocate once a client's entry exists.
//
// The table holds at most its size in entries (give or take the clients
// being added at the same moment): a new client of a full table evicts an
// entry (one that expired if it finds one among the few it looks at, else
// the least recently used of those) to get in. Until the table is full, no
// entry is evicted, however its clients' addresses fall into shards.
// Expired entries are also removed by Sweep, which the owner runs
// periodically.
type Table struct {
	expire int64 // nanoseconds
	size   int64
	n      atomic.Int64 // entries in all shards
	now    func() int64
	shard  [shards]tableShard
}

type tableShard struct {
	mu sync.Mutex
	m  map[netip.Addr]entry
	_  [48]byte // keep shards on separate cache lines
}

type entry struct {
	ep   *upstream.Endpoint
	used int64 // unix nanoseconds of the last Get or Put
}

// NewTable returns an empty table of at most size entries whose entries
// expire after expire without use.
func NewTable(size int, expire time.Duration) *Table {
	t := &Table{expire: int64(expire), size: int64(max(1, size)), now: wallNow}
	for i := range t.shard {
		t.shard[i].m = make(map[netip.Addr]entry)
	}
	return t
}

// shardOf returns the index of a's shard.
func shardOf(a netip.Addr) int {
	// Every byte counts: clients may differ in any of them (10.N.0.1,
	// 2001:db8:N::1). The top bits of a product depend on all bits of
	// its factor.
	b := a.As16()
	h := binary.BigEndian.Uint64(b[:8])*0x9e3779b97f4a7c15 ^ binary.BigEndian.Uint64(b[8:])
	h *= 0xbf58476d1ce4e5b9
	return int(h >> (64 - shardBits))
}

// Get returns the endpoint recorded for client a, or nil when there is none
// or it expired. A hit counts as a use: it renews the entry.
func (t *Table) Get(a netip.Addr) *upstream.Endpoint {
	s := &t.shard[shardOf(a)]
	now := t.now()
	s.mu.Lock()
	e, ok := s.m[a]
	if !ok {
		s.mu.Unlock()
		return nil
	}
	if now-e.used > t.expire {
		delete(s.m, a)
		t.n.Add(-1)
		s.mu.Unlock()
		return nil
	}
	e.used = now
	s.m[a] = e
	s.mu.Unlock()
	return e.ep
}

// Put records ep for client a.
func (t *Table) Put(a netip.Addr, ep *upstream.Endpoint) {
	i := shardOf(a)
	s := &t.shard[i]
	now := t.now()
	s.mu.Lock()
	_, ok := s.m[a]
	if !ok {
		if t.n.Load() >= t.size && len(s.m) > 0 {
			s.evictOne(now, t.expire)
			t.n.Add(-1)
		}
		t.n.Add(1)
	}
	s.m[a] = entry{ep: ep, used: now}
	s.mu.Unlock()
	if !ok && t.n.Load() > t.size {
		// Full, and a's shard had nothing to give: another shard gives
		// an entry. One lock at a time, so shards never wait on each
		// other.
		t.evictElsewhere(i, now)
	}
}

// evictElsewhere evicts one entry of the first shard after shard i that
// has one.
func (t *Table) evictElsewhere(i int, now int64) {
	for k := 1; k <= shards; k++ {
		s := &t.shard[(i+k)%shards]
		s.mu.Lock()
		if len(s.m) > 0 {
			s.evictOne(now, t.expire)
			t.n.Add(-1)
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
	}
}

// evictOne removes one entry of a shard that has some to make room: the
// first expired entry among a few, else the least recently used of those
// few. Map iteration order is random, so this is sampled LRU, as Redis
// does it.
func (s *tableShard) evictOne(now, expire int64) {
	const samples = 5
	var victim netip.Addr
	oldest := int64(1<<63 - 1)
	n := 0
	for a, e := range s.m {
		if now-e.used > expire {
			delete(s.m, a)
			return
		}
		if e.used < oldest {
			victim, oldest = a, e.used
		}
		if n++; n == samples {
			break
		}
	}
	delete(s.m, victim)
}

// Sweep removes expired entries and returns how many remain.
func (t *Table) Sweep() int {
	now := t.now()
	left := 0
	for i := range t.shard {
		s := &t.shard[i]
		s.mu.Lock()
		for a, e := range s.m {
			if now-e.used > t.expire {
				delete(s.m, a)
				t.n.Add(-1)
			}
		}
		left += len(s.m)
		s.mu.Unlock()
	}
	return left
}

// Len is the number of entries, expired ones not yet swept included.
func (t *Table) Len() int {
	n := 0
	for i := range t.shard {
		s := &t.shard[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

func wallNow() int64 { return time.Now().UnixNano() }
