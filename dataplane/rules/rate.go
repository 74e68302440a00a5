package rules

import (
	"container/heap"
	"encoding/binary"
	"hash/maphash"
	"math/bits"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-lb/sluice/dataplane/internal/clock"
)

// DefaultMaxClients is how many client addresses a rule's rate_limit
// tracks when max_clients does not say (HAProxy's stick tables are
// commonly sized 100k).
const DefaultMaxClients = 100000

// MaxMaxClients is the most max_clients may ask for.
const MaxMaxClients = 10000000

// rateShards splits a rate table so that requests from different clients
// seldom wait on one lock.
const rateShards = 32

// rateTable counts, per client (an address, a prefix, or a header value's
// hash: keyOf), the requests a rule looked at over a sliding period, as
// HAProxy's freq_ctr does: the count of the current period plus the
// previous period's, weighted by how much of it the sliding window still
// covers. It is shared by the compiled rules of successive snapshots
// (Set.Carry), and safe for concurrent use.
type rateTable struct {
	period   time.Duration
	max      int              // client addresses tracked at most, as max_clients says
	perShard int              // max over the shards, rounded up
	now      func() time.Time // clock.Now; tests set it
	epoch    time.Time        // periods are counted from here
	seeds    [2]maphash.Seed  // keyOf's, kept with the counts
	shards   [rateShards]rateShard
	// limited counts the work its rule held for, over the rate; it
	// carries on with the table.
	limited atomic.Uint64
}

type rateShard struct {
	mu      sync.Mutex
	clients map[netip.Addr]rateCount
	// names holds what a client key made by keyOf stands for, for top;
	// nil in a table of addresses.
	names map[netip.Addr]string
	swept int64 // the period the last sweep for room ran in
}

// rateCount is one client's counts: cur in period idx, prev in the one
// before.
type rateCount struct {
	idx       int64
	cur, prev uint32
}

func newRateTable(period time.Duration, maxClients int) *rateTable {
	if maxClients <= 0 {
		maxClients = DefaultMaxClients
	}
	t := &rateTable{period: period, max: maxClients, now: clock.Now, seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}}
	t.epoch = t.now()
	t.perShard = max(1, (maxClients+rateShards-1)/rateShards)
	return t
}

// when is the period it is now, counted from t's epoch, and how far into
// it.
func (t *rateTable) when() (idx int64, into time.Duration) {
	since := t.now().Sub(t.epoch)
	idx = int64(since / t.period)
	return idx, since - time.Duration(idx)*t.period
}

// maxNameLen bounds the bytes of a header value a table keeps to name its
// client in top.
const maxNameLen = 64

// keyOf is the client key of a header value v: 128 bits of its hash, so
// that a table of values is a table of addresses, and two values share a
// count only by a chance of one in 2^64 for a billion of them.
func (t *rateTable) keyOf(v []byte) netip.Addr {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], maphash.Bytes(t.seeds[0], v))
	binary.LittleEndian.PutUint64(b[8:], maphash.Bytes(t.seeds[1], v))
	return netip.AddrFrom16(b)
}

// count counts one request from a, unless again (the request was counted
// when it was first looked at), and returns a's counts as they stand now,
// this request included, and how far into their period now is: their
// rate is c.rate(t.period, into). A new key made by keyOf is named by
// name, the value it stands for (nil for an address).
func (t *rateTable) count(a netip.Addr, name []byte, again bool) (c rateCount, into time.Duration) {
	idx, into := t.when()
	sh := &t.shards[shardOf(a)]
	sh.mu.Lock()
	c, ok := sh.clients[a]
	switch {
	case again:
		sh.mu.Unlock()
		return c.at(idx), into
	case !ok:
		if sh.clients == nil {
			sh.clients = make(map[netip.Addr]rateCount)
		}
		if len(sh.clients) >= t.perShard {
			sh.makeRoom(idx, t.perShard)
		}
		if name != nil {
			if sh.names == nil {
				sh.names = make(map[netip.Addr]string)
			}
			if len(name) > maxNameLen {
				sh.names[a] = string(name[:maxNameLen]) + "…"
			} else {
				sh.names[a] = string(name)
			}
		}
	}
	switch c.idx {
	case idx:
		if c.cur < ^uint32(0) {
			c.cur++
		}
	case idx - 1:
		c = rateCount{idx: idx, cur: 1, prev: c.cur}
	default: // new, or quiet for a whole period
		c = rateCount{idx: idx, cur: 1}
	}
	sh.clients[a] = c
	sh.mu.Unlock()
	return c, into
}

// at is c as it stands in period idx, counting nothing more: a period
// that began since c was last counted is its next, or makes it 0.
func (c rateCount) at(idx int64) rateCount {
	switch c.idx {
	case idx:
		return c
	case idx - 1:
		return rateCount{idx: idx, prev: c.cur}
	}
	return rateCount{idx: idx}
}

// rate is the count over a sliding window of period ending into period
// c.idx: the previous period counts for the part of it the window still
// covers.
func (c rateCount) rate(period, into time.Duration) uint64 {
	// prev × (period-into) overflows 64 bits from about 200k requests in
	// a 24h period; the quotient is at most prev.
	hi, lo := bits.Mul64(uint64(c.prev), uint64(period-into))
	prev, _ := bits.Div64(hi, lo, uint64(period))
	return uint64(c.cur) + prev
}

// retryIn is how long after into (into the period of counts c) until a
// request of c's client would be within n requests a period, were it to
// send none before: its rate then, that request counted, is n or less;
// 0 when one would be now. The previous period's count weighs less as the
// window slides, so a request gets through within this period once
// prev × left / period < n - cur (left: the time left in the period),
// when cur leaves room for it at all; else in the next one, once
// cur × left / period < n.
func (c rateCount) retryIn(period, into time.Duration, n uint64) time.Duration {
	if n == 0 || c.rate(period, into)+1 <= n {
		return 0 // Compile refuses n 0: no request would ever be within it
	}
	if cur := uint64(c.cur); cur < n {
		// The rate is over n-1 though cur is not: prev ≥ n-cur, so the
		// quotient is at most period.
		left := mostLeft(n-cur, period, uint64(c.prev))
		return period - left - into
	}
	return period - into + period - mostLeft(n, period, uint64(c.cur))
}

// mostLeft is the longest time left in a period whose count k lets a
// request through, for a room of m: the largest d with k × d < m × period,
// which is ceil(m × period / k) - 1. m ≤ k, so it is less than period.
func mostLeft(m uint64, period time.Duration, k uint64) time.Duration {
	hi, lo := bits.Mul64(m, uint64(period))
	q, r := bits.Div64(hi, lo, k)
	if r == 0 {
		q--
	}
	return time.Duration(q)
}

// makeRoom frees a place in a shard that holds its full share of clients:
// first by forgetting every client quiet for two periods (their rate is
// 0), at most once a period; if that freed none, by forgetting one at
// random.
func (sh *rateShard) makeRoom(idx int64, full int) {
	if sh.swept != idx {
		sh.swept = idx
		for a, c := range sh.clients {
			if c.idx < idx-1 {
				delete(sh.clients, a)
				delete(sh.names, a)
			}
		}
	}
	if len(sh.clients) < full {
		return
	}
	for a := range sh.clients { // map order is random
		delete(sh.clients, a)
		delete(sh.names, a)
		return
	}
}

// tracked is how many client addresses t holds.
func (t *rateTable) tracked() int {
	n := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		n += len(sh.clients)
		sh.mu.Unlock()
	}
	return n
}

// clientRate is a client's rate in a rateTable, and the header value its
// key stands for ("" for an address).
type clientRate struct {
	client netip.Addr
	name   string
	rate   uint64
}

// top returns the n clients of t with the highest rates now, highest
// first, and by address for equal rates; clients whose rate fell to 0 are
// left out. It takes each shard's lock in turn, and keeps n clients at
// most in memory however many t tracks.
func (t *rateTable) top(n int) []clientRate {
	if n <= 0 {
		return nil
	}
	idx, into := t.when()
	// h is a min-heap by (rate, then address in reverse): h[0] is the one
	// to give up first.
	h := make(rateHeap, 0, min(n, 1024))
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for a, c := range sh.clients {
			r := c.at(idx).rate(t.period, into)
			if r == 0 {
				continue
			}
			cr := clientRate{client: a, rate: r}
			if len(h) < n {
				cr.name = sh.names[a]
				heap.Push(&h, cr)
			} else if h.less(h[0], cr) {
				cr.name = sh.names[a]
				h[0] = cr
				heap.Fix(&h, 0)
			}
		}
		sh.mu.Unlock()
	}
	slices.SortFunc(h, func(a, b clientRate) int {
		if h.less(b, a) {
			return -1
		}
		return 1
	})
	return h
}

// rateHeap is a min-heap of clientRates for rateTable.top.
type rateHeap []clientRate

// less orders a before b when a ranks lower: a smaller rate, or the same
// rate and a greater address.
func (rateHeap) less(a, b clientRate) bool {
	if a.rate != b.rate {
		return a.rate < b.rate
	}
	return a.client.Compare(b.client) > 0
}

func (h rateHeap) Len() int           { return len(h) }
func (h rateHeap) Less(i, j int) bool { return h.less(h[i], h[j]) }
func (h rateHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *rateHeap) Push(x any)        { *h = append(*h, x.(clientRate)) }
func (h *rateHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func shardOf(a netip.Addr) int {
	b := a.As16()
	var h uint32 = 2166136261 // FNV-1a
	for _, x := range b {
		h = (h ^ uint32(x)) * 16777619
	}
	return int(h % rateShards)
}

// rateLimit is a rule's rate_limit: the rule holds for a client whose rate
// is over requests. Clients are counted by the value of the request field
// header when set, or else by the first v4 bits of an IPv4 address and v6
// of an IPv6 one.
type rateLimit struct {
	requests uint64
	v4, v6   int
	header   string
	table    *rateTable
}

// over counts the work of in, unless in.Again, and reports whether its
// client is over the limit; then, when wantWait, also how long until a
// request of that client's would be within it, were it to send none
// before (rateCount.retryIn). A request without the header is not
// counted, and is never over.
func (l *rateLimit) over(in *Input, wantWait bool) (over bool, wait time.Duration) {
	var key netip.Addr
	var name []byte
	if l.header != "" {
		if in.Request == nil {
			return false, 0 // Compile refuses header on a TCP listener
		}
		v, next := in.Request.NextHeader(l.header, 0)
		if next < 0 {
			return false, 0
		}
		key, name = l.table.keyOf(v), v
	} else {
		key = l.client(in.Source.Addr())
	}
	c, into := l.table.count(key, name, in.Again)
	if c.rate(l.table.period, into) <= l.requests {
		return false, 0
	}
	if !in.Again {
		l.table.limited.Add(1)
	}
	if wantWait {
		wait = c.retryIn(l.table.period, into, l.requests)
	}
	return true, wait
}

// countsLike reports whether l counts clients as o does: over the same
// period, in a table of the same size, by the same prefixes or header
// (a field's name in any case). Only then may l take o's counts.
func (l *rateLimit) countsLike(o *rateLimit) bool {
	return l.table.period == o.table.period && l.table.max == o.table.max &&
		l.v4 == o.v4 && l.v6 == o.v6 && strings.EqualFold(l.header, o.header)
}

// display is how c's client reads: the header value, or an address, or
// the prefix ("10.1.2.0/24") counted as one client.
func (l *rateLimit) display(c clientRate) string {
	if l.header != "" {
		return c.name
	}
	bits := l.v6
	if c.client.Is4() {
		bits = l.v4
	}
	if bits == c.client.BitLen() {
		return c.client.String()
	}
	return netip.PrefixFrom(c.client, bits).String()
}

// client is the key a is counted by: its prefix of the rule's length.
func (l *rateLimit) client(a netip.Addr) netip.Addr {
	a = a.Unmap()
	bits := l.v6
	if a.Is4() {
		bits = l.v4
	}
	if bits == a.BitLen() {
		return a
	}
	p, _ := a.Prefix(bits) // bits is within a's length: no error
	return p.Addr()
}
