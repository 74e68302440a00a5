package rules

import (
	"bytes"
	"errors"
	"regexp"
	"strings"

	"github.com/sluice-lb/sluice/snapshot"
)

// patterns is what StringMatch, HeaderMatch and QueryMatch share.
type patterns interface {
	GetExact() []string
	GetPrefix() []string
	GetSuffix() []string
	GetContains() []string
	GetRegex() []string
	GetIgnoreCase() bool
}

// foldBuf bounds the values looked up in an exact set after folding case;
// longer ones are compared one pattern at a time.
const foldBuf = 256

// exactSetMin is how many exact values make a set worth a map lookup.
const exactSetMin = 8

// strMatch holds when a value matches any of its patterns. With fold, the
// patterns are stored in lower case and values compared without regard to
// ASCII case (regular expressions are compiled with (?i)).
type strMatch struct {
	fold      bool
	exact     []string
	exactSet  map[string]struct{} // exact as a set, when it is long
	prefix    []string
	suffix    []string
	contains  []string
	containsB [][]byte // contains as bytes (lower case with fold), for bytes.Contains
	domain    []string // without leading or final dot
	re        []*regexp.Regexp
}

// newStrMatch compiles p, plus domains (host and sni only). names folds
// case whatever p says: host names are not case-sensitive.
func newStrMatch(p patterns, domains []string, names bool) (*strMatch, error) {
	m := &strMatch{fold: p.GetIgnoreCase() || names}
	low := func(list []string) []string {
		out := make([]string, 0, len(list))
		for _, s := range list {
			if m.fold {
				s = lowerASCII(s)
			}
			out = append(out, s)
		}
		return out
	}
	var errs []error
	nonEmpty := func(what string, list []string) []string {
		for _, s := range list {
			if s == "" {
				errs = append(errs, errors.New(what+": empty pattern"))
			}
		}
		return low(list)
	}
	m.exact = low(p.GetExact())
	m.prefix = nonEmpty("prefix", p.GetPrefix())
	m.suffix = nonEmpty("suffix", p.GetSuffix())
	m.contains = nonEmpty("contains", p.GetContains())
	for _, c := range m.contains {
		m.containsB = append(m.containsB, []byte(c))
	}
	for _, d := range nonEmpty("domain", domains) {
		m.domain = append(m.domain, strings.TrimSuffix(strings.TrimPrefix(d, "."), "."))
	}
	for _, expr := range p.GetRegex() {
		re, err := snapshot.CompileRegex(expr, m.fold)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		m.re = append(m.re, re)
	}
	if len(m.exact) >= exactSetMin {
		m.exactSet = make(map[string]struct{}, len(m.exact))
		for _, s := range m.exact {
			m.exactSet[s] = struct{}{}
		}
	}
	return m, errors.Join(errs...)
}

func (m *strMatch) empty() bool {
	return len(m.exact)+len(m.prefix)+len(m.suffix)+len(m.contains)+len(m.domain)+len(m.re) == 0
}

// cost estimates the work of one match, to order conditions.
func (m *strMatch) cost() int {
	n := len(m.prefix) + len(m.suffix) + len(m.domain) + 2*len(m.contains) + costRegex*len(m.re)
	if m.exactSet != nil {
		return n + 2
	}
	return n + len(m.exact)
}

// match reports whether v matches one of the patterns. With fold, v is
// compared in lower case, lowered once into a buffer of in that the rules
// looking at the same value share.
func (m *strMatch) match(v []byte, in *Input) bool {
	x := v
	if m.fold {
		if x = in.lower(v); x == nil && len(v) > 0 {
			return m.matchLong(v)
		}
	}
	if m.exactSet != nil {
		if _, ok := m.exactSet[string(x)]; ok { // no allocation: a map index
			return true
		}
	} else {
		for _, s := range m.exact {
			if string(x) == s {
				return true
			}
		}
	}
	for _, s := range m.prefix {
		if len(x) >= len(s) && string(x[:len(s)]) == s {
			return true
		}
	}
	for _, s := range m.suffix {
		if len(x) >= len(s) && string(x[len(x)-len(s):]) == s {
			return true
		}
	}
	for _, d := range m.domain {
		// d itself, or a name ending in "." + d.
		if string(x) == d || len(x) > len(d) && x[len(x)-len(d)-1] == '.' && string(x[len(x)-len(d):]) == d {
			return true
		}
	}
	for _, s := range m.containsB {
		if bytes.Contains(x, s) {
			return true
		}
	}
	for _, re := range m.re {
		if re.Match(v) {
			return true
		}
	}
	return false
}

// matchLong is match with fold for a value too long to be lowered in a
// buffer: it compares without regard to case byte by byte.
func (m *strMatch) matchLong(v []byte) bool {
	for _, s := range m.exact {
		if m.equal(v, s) {
			return true
		}
	}
	for _, s := range m.prefix {
		if len(v) >= len(s) && m.equal(v[:len(s)], s) {
			return true
		}
	}
	for _, s := range m.suffix {
		if len(v) >= len(s) && m.equal(v[len(v)-len(s):], s) {
			return true
		}
	}
	for _, d := range m.domain {
		if len(v) == len(d) && m.equal(v, d) ||
			len(v) > len(d) && v[len(v)-len(d)-1] == '.' && m.equal(v[len(v)-len(d):], d) {
			return true
		}
	}
	for _, s := range m.contains {
		if containsFold(v, s) {
			return true
		}
	}
	for _, re := range m.re {
		if re.Match(v) {
			return true
		}
	}
	return false
}

// containsFold reports whether v holds the lower-case s in any case.
func containsFold(v []byte, s string) bool {
	if len(s) == 0 {
		return true
	}
	first := s[0]
	for i := 0; i+len(s) <= len(v); i++ {
		c := v[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != first {
			continue
		}
		k := 1
		for ; k < len(s); k++ {
			c := v[i+k]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != s[k] {
				break
			}
		}
		if k == len(s) {
			return true
		}
	}
	return false
}

// lowered is a value folded to lower case, and which value it was.
type lowered struct {
	src *byte
	n   int
	buf [foldBuf]byte
}

// lower returns v in lower case, from a cache of the last two values
// lowered (the host and a header, say, when rules alternate between them),
// or nil when v is longer than the buffer. Values are told apart by where
// they lie: they are slices of one request head that does not change while
// Eval runs.
func (in *Input) lower(v []byte) []byte {
	if len(v) == 0 || len(v) > foldBuf {
		return nil
	}
	p := &v[0]
	for i := range in.low {
		if l := &in.low[i]; l.src == p && l.n == len(v) {
			return l.buf[:len(v)]
		}
	}
	l := &in.low[in.lowNext]
	in.lowNext = (in.lowNext + 1) % uint8(len(in.low))
	b := l.buf[:len(v)]
	for i, c := range v {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b[i] = c
	}
	l.src, l.n = p, len(v)
	return b
}

// equal compares v with the pattern s (lower case when folding).
func (m *strMatch) equal(v []byte, s string) bool {
	if !m.fold {
		return string(v) == s
	}
	if len(v) != len(s) {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
