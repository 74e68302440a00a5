package rules

import (
	"fmt"
	"slices"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
	"github.com/sluice-lb/sluice/snapshot"
)

// condKind is what a condition looks at.
type condKind uint8

const (
	condTrue condKind = iota // an empty match
	condAll
	condAny
	condNot
	condSource
	condPort
	condTLS
	condMethod
	condHost
	condSNI
	condPath
	condQuery
	condHeader
)

// cond is one compiled condition. It is a closed set of kinds evaluated by
// one switch rather than an interface: Eval passes *Input down the tree, and
// through an interface call the compiler would have to assume it escapes,
// which would put every Input on the heap.
type cond struct {
	kind    condKind
	str     *strMatch // host, sni, path, and the value of query and header; nil: presence only
	name    string    // header or query name
	absent  bool      // header or query: holds when there is none
	methods []string
	ips     *ipSet
	lo, hi  uint16 // source port range
	tls     bool
	subs    []cond // all, any, not (one)
	cost    int    // for ordering the conditions of an all
}

// eval reports whether c holds for in.
func (c *cond) eval(in *Input) bool {
	switch c.kind {
	case condTrue:
		return true
	case condAll:
		for i := range c.subs {
			if !c.subs[i].eval(in) {
				return false
			}
		}
		return true
	case condAny:
		for i := range c.subs {
			if c.subs[i].eval(in) {
				return true
			}
		}
		return false
	case condNot:
		return !c.subs[0].eval(in)
	case condSource:
		return c.ips.contains(in.Source.Addr())
	case condPort:
		p := in.Source.Port()
		return c.lo <= p && p <= c.hi
	case condTLS:
		return in.TLS == c.tls
	case condSNI:
		return c.str.match(in.SNI, in)
	}
	req := in.Request
	if req == nil {
		return false // HTTP conditions never hold on a TCP listener
	}
	switch c.kind {
	case condMethod:
		m := req.Method()
		for _, want := range c.methods {
			if string(m) == want {
				return true
			}
		}
		return false
	case condHost:
		return c.str.match(in.requestHost(), in)
	case condPath:
		return c.str.match(req.URLPath(), in)
	case condQuery:
		v := req.Query(c.name)
		if c.str == nil {
			return (v != nil) != c.absent
		}
		return v != nil && c.str.match(v, in)
	case condHeader:
		v, next := req.NextHeader(c.name, 0)
		if c.str == nil {
			return (next >= 0) != c.absent
		}
		for ; next >= 0; v, next = req.NextHeader(c.name, next) {
			if c.str.match(v, in) {
				return true
			}
		}
		return false
	}
	return false
}

// requestHost is the request's host as rules match it, derived once.
func (in *Input) requestHost() []byte {
	if !in.hostDone {
		in.host, in.hostDone = hostOnly(in.Request.Host()), true
	}
	return in.host
}

// hostOnly reduces a Host value (or an absolute-form authority) to the name:
// without userinfo, port, the brackets of an IPv6 literal, or a final dot.
func hostOnly(h []byte) []byte {
	for i := len(h) - 1; i >= 0; i-- {
		if h[i] == '@' {
			h = h[i+1:]
			break
		}
	}
	if len(h) > 0 && h[0] == '[' {
		for i := 1; i < len(h); i++ {
			if h[i] == ']' {
				return h[1:i]
			}
		}
		return h[1:]
	}
	colon := -1
	for i, c := range h {
		if c == ':' {
			if colon >= 0 {
				colon = -1 // a bare IPv6 address, not host:port
				break
			}
			colon = i
		}
	}
	if colon >= 0 {
		h = h[:colon]
	}
	if n := len(h); n > 1 && h[n-1] == '.' {
		h = h[:n-1]
	}
	return h
}

// Costs order the conditions of an all, cheapest first; they are rough.
const (
	costCheap  = 1  // source port, tls, method
	costSource = 2  // a binary search
	costString = 4  // plus what the patterns cost
	costSearch = 16 // a header lookup
	costRegex  = 64 // per regular expression
)

// match compiles m, found at path p, depth levels deep. Its fields must
// all hold; the cheapest are looked at first.
func (c *compiler) match(m *sluicev1.Match, p string, depth int) *cond {
	if depth > snapshot.MaxMatchDepth {
		c.fail(p, "%s", snapshot.TooDeep)
		return &cond{kind: condTrue}
	}
	var conds []cond
	add := func(field string, httpOnly bool, k cond) {
		if httpOnly && !c.http {
			c.fail(p+"."+field, "only on HTTP listeners")
			return
		}
		conds = append(conds, k)
	}
	if m.Host != nil {
		add("host", true, c.stringCond(condHost, m.Host, p+".host", true))
	}
	if m.Path != nil {
		add("path", true, c.stringCond(condPath, m.Path, p+".path", false))
	}
	if len(m.GetMethod()) > 0 {
		add("method", true, cond{kind: condMethod, methods: slices.Clone(m.GetMethod()), cost: costCheap})
	}
	if h := m.GetHeader(); h != nil {
		add("header", true, c.fieldCond(condHeader, h, h.GetName(), p+".header"))
	}
	if q := m.GetQuery(); q != nil {
		add("query", true, c.fieldCond(condQuery, q, q.GetName(), p+".query"))
	}
	if len(m.GetSource()) > 0 {
		set, err := newIPSet(m.GetSource())
		if err != nil {
			c.fail(p+".source", "%v", err)
		}
		add("source", false, cond{kind: condSource, ips: set, cost: costSource})
	}
	if pr := m.GetSourcePort(); pr != nil {
		lo, hi := pr.GetFrom(), pr.GetTo()
		if hi == 0 {
			hi = lo
		}
		if lo == 0 || hi < lo || hi > 65535 {
			c.fail(p+".source_port", "%d-%d is not a port range", lo, hi)
		}
		add("source_port", false, cond{kind: condPort, lo: uint16(lo), hi: uint16(hi), cost: costCheap})
	}
	if m.Tls != nil || m.Sni != nil {
		c.tls = true
	}
	if m.Tls != nil {
		add("tls", false, cond{kind: condTLS, tls: m.GetTls(), cost: costCheap})
	}
	if m.Sni != nil {
		add("sni", false, c.stringCond(condSNI, m.Sni, p+".sni", true))
	}
	if len(m.GetAll()) > 0 {
		// Flattened: the conditions of an all are those of its match.
		for i, sub := range m.GetAll() {
			conds = append(conds, *c.match(sub, fmt.Sprintf("%s.all[%d]", p, i), depth+1))
		}
	}
	if len(m.GetAny()) > 0 {
		k := cond{kind: condAny}
		for i, sub := range m.GetAny() {
			s := c.match(sub, fmt.Sprintf("%s.any[%d]", p, i), depth+1)
			k.subs = append(k.subs, *s)
			k.cost += s.cost
		}
		conds = append(conds, k)
	}
	if n := m.GetNot(); n != nil {
		s := c.match(n, p+".not", depth+1)
		conds = append(conds, cond{kind: condNot, subs: []cond{*s}, cost: s.cost})
	}
	return allOf(conds)
}

// allOf is the condition that all of conds hold: the one condition itself,
// or an all ordered cheapest first (the order cannot change the outcome, as
// conditions have no effects).
func allOf(conds []cond) *cond {
	// Nested alls and trivially true conditions add nothing.
	var flat []cond
	for _, k := range conds {
		switch k.kind {
		case condTrue:
		case condAll:
			flat = append(flat, k.subs...)
		default:
			flat = append(flat, k)
		}
	}
	switch len(flat) {
	case 0:
		return &cond{kind: condTrue}
	case 1:
		return &flat[0]
	}
	slices.SortStableFunc(flat, func(a, b cond) int { return a.cost - b.cost })
	all := &cond{kind: condAll, subs: flat}
	for _, k := range flat {
		all.cost += k.cost
	}
	return all
}

// stringCond compiles a host, sni or path condition.
func (c *compiler) stringCond(kind condKind, s *sluicev1.StringMatch, p string, names bool) cond {
	if !names && len(s.GetDomain()) > 0 {
		c.fail(p+".domain", "only for host and sni")
	}
	sm, err := newStrMatch(s, s.GetDomain(), names)
	if err != nil {
		c.fail(p, "%v", err)
	}
	if sm.empty() {
		c.fail(p, "has no pattern")
	}
	return cond{kind: kind, str: sm, cost: costString + sm.cost()}
}

// fieldMatch is what HeaderMatch and QueryMatch share.
type fieldMatch interface {
	patterns
	GetPresent() bool
}

// fieldCond compiles a header or query condition.
func (c *compiler) fieldCond(kind condKind, f fieldMatch, name, p string) cond {
	k := cond{kind: kind, name: name, cost: costSearch}
	if name == "" {
		c.fail(p+".name", "empty name")
	}
	sm, err := newStrMatch(f, nil, false)
	if err != nil {
		c.fail(p, "%v", err)
	}
	absent := hasPresent(f) && !f.GetPresent()
	switch {
	case absent && !sm.empty():
		c.fail(p+".present", "present: false with patterns never holds")
	case absent:
		k.absent = true
	case !sm.empty():
		k.str = sm
		k.cost += sm.cost()
	}
	return k
}

// hasPresent reports whether present is set on a header or query match.
func hasPresent(f fieldMatch) bool {
	switch m := f.(type) {
	case *sluicev1.HeaderMatch:
		return m.Present != nil
	case *sluicev1.QueryMatch:
		return m.Present != nil
	}
	return false
}
