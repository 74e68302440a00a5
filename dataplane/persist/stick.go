// Package persist holds the dataplane's session persistence: the stick table
// that keeps a client on the endpoint it was first sent to (HAProxy's "stick
// on src"), and the values of persistence cookies.
package persist

import (
	"net/netip"
	"sync"
	"time"

	"github.com/sluice-lb/sluice/dataplane/upstream"
)

// shards splits a table's lock so that clients of different shards do not
// contend; a power of two.
const shards = 64

// Table maps client addresses to the endpoint that served them last, until
// the entry has not been used for its expiry time. It is safe for
// concurrent use. Lookups and updates take one shard's lock for a map
// access; they do not allocate once a client's entry exists.
//
// The table holds at most about its size in entries: a shard that is full
// evicts an entry of its own (one that expired if it finds one among the
// few it looks at, else an arbitrary one) to admit a new client. Expired
// entries are also removed by Sweep, which the owner runs periodically.
type Table struct {
	expire   int64 // nanoseconds
	perShard int
	now      func() int64
	shard    [shards]tableShard
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

// NewTable returns an empty table of about size entries whose entries
// expire after expire without use.
func NewTable(size int, expire time.Duration) *Table {
	t := &Table{expire: int64(expire), perShard: max(1, (size+shards-1)/shards), now: wallNow}
	for i := range t.shard {
		t.shard[i].m = make(map[netip.Addr]entry)
	}
	return t
}

func (t *Table) shardOf(a netip.Addr) *tableShard {
	// The low bits of an address differ most between clients.
	b := a.As16()
	h := uint32(b[15]) | uint32(b[14])<<8 | uint32(b[13])<<16 | uint32(b[12])<<24
	h ^= h >> 7
	return &t.shard[h&(shards-1)]
}

// Get returns the endpoint recorded for client a, or nil when there is none
// or it expired. A hit counts as a use: it renews the entry.
func (t *Table) Get(a netip.Addr) *upstream.Endpoint {
	s := t.shardOf(a)
	now := t.now()
	s.mu.Lock()
	e, ok := s.m[a]
	if !ok {
		s.mu.Unlock()
		return nil
	}
	if now-e.used > t.expire {
		delete(s.m, a)
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
	s := t.shardOf(a)
	now := t.now()
	s.mu.Lock()
	if _, ok := s.m[a]; !ok && len(s.m) >= t.perShard {
		s.evictOne(now, t.expire)
	}
	s.m[a] = entry{ep: ep, used: now}
	s.mu.Unlock()
}

// evictOne removes one entry to make room: the first expired entry among a
// few, else the least recently used of those few. Map iteration order is
// random, so this is sampled LRU, as Redis does it.
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
