// Package groups decides which node group a node belongs to: it parses the
// groups' label selectors and matches nodes' labels against them.
//
// A selector is a comma-separated list of requirements, all of which must
// hold, in the syntax of Kubernetes label selectors:
//
//	zone=a          the label zone is a ("==" is the same)
//	zone!=a         zone is not a, or the node has no label zone
//	zone in (a,b)   zone is a or b
//	zone notin (a,b)
//	edge            the node has the label edge, whatever its value
//	!edge           the node has no label edge
//
// The empty selector is the catch-all: it takes every node that no other
// group's selector matches.
package groups

import (
	"fmt"
	"slices"
	"strings"

	"github.com/sluice-lb/sluice/internal/labels"
)

// MaxSelectorLen is the longest selector accepted, in bytes (the API's limit).
const MaxSelectorLen = 1024

// Selector is a parsed label selector. The zero value is the empty selector.
type Selector struct {
	reqs []requirement
	text string // canonical form
}

type op int

const (
	opEq op = iota
	opNotEq
	opIn
	opNotIn
	opExists
	opNotExists
)

type requirement struct {
	key    string
	op     op
	values []string // sorted; one for opEq and opNotEq
}

// Empty reports whether s is the catch-all selector.
func (s Selector) Empty() bool { return len(s.reqs) == 0 }

// String returns the selector in canonical form: requirements sorted, values
// of in/notin sorted, single spaces. Two selectors that match the same way
// by construction have the same canonical form.
func (s Selector) String() string { return s.text }

// Matches reports whether labels satisfy every requirement. The empty
// selector matches every node.
func (s Selector) Matches(labels map[string]string) bool {
	for _, r := range s.reqs {
		v, has := labels[r.key]
		var ok bool
		switch r.op {
		case opEq:
			ok = has && v == r.values[0]
		case opNotEq:
			ok = !has || v != r.values[0]
		case opIn:
			ok = has && slices.Contains(r.values, v)
		case opNotIn:
			ok = !has || !slices.Contains(r.values, v)
		case opExists:
			ok = has
		case opNotExists:
			ok = !has
		}
		if !ok {
			return false
		}
	}
	return true
}

// SyntaxError is a selector that does not parse: where and why.
type SyntaxError struct {
	Selector string
	Offset   int // byte offset of the fault
	Msg      string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("selector %q: at offset %d: %s", e.Selector, e.Offset, e.Msg)
}

// Parse parses a selector. Blank space around tokens is ignored.
func Parse(text string) (Selector, error) {
	if len(text) > MaxSelectorLen {
		return Selector{}, &SyntaxError{Selector: text[:32] + "…", Offset: MaxSelectorLen, Msg: fmt.Sprintf("longer than %d bytes", MaxSelectorLen)}
	}
	p := parser{src: text}
	var sel Selector
	p.skipSpace()
	if p.eof() {
		return sel, nil
	}
	seen := map[string]bool{}
	for {
		start := p.pos
		r, err := p.requirement()
		if err != nil {
			return Selector{}, err
		}
		if seen[r.key] {
			return Selector{}, p.fail(start, fmt.Sprintf("label %q is named twice; say it once (\"in\" and \"notin\" take several values)", r.key))
		}
		seen[r.key] = true
		sel.reqs = append(sel.reqs, r)
		p.skipSpace()
		if p.eof() {
			break
		}
		if p.src[p.pos] != ',' {
			return Selector{}, p.fail(p.pos, fmt.Sprintf("expected ',' between requirements, found %q", p.src[p.pos:p.pos+1]))
		}
		p.pos++
		p.skipSpace()
		if p.eof() {
			return Selector{}, p.fail(p.pos, "a requirement must follow ','")
		}
	}
	slices.SortFunc(sel.reqs, func(a, b requirement) int { return strings.Compare(a.key, b.key) })
	parts := make([]string, len(sel.reqs))
	for i, r := range sel.reqs {
		parts[i] = r.String()
	}
	sel.text = strings.Join(parts, ",")
	return sel, nil
}

func (r requirement) String() string {
	switch r.op {
	case opEq:
		return r.key + "=" + r.values[0]
	case opNotEq:
		return r.key + "!=" + r.values[0]
	case opIn:
		return r.key + " in (" + strings.Join(r.values, ",") + ")"
	case opNotIn:
		return r.key + " notin (" + strings.Join(r.values, ",") + ")"
	case opExists:
		return r.key
	default:
		return "!" + r.key
	}
}

type parser struct {
	src string
	pos int
}

func (p *parser) eof() bool { return p.pos >= len(p.src) }

func (p *parser) skipSpace() {
	for !p.eof() && (p.src[p.pos] == ' ' || p.src[p.pos] == '\t') {
		p.pos++
	}
}

func (p *parser) fail(at int, msg string) *SyntaxError {
	return &SyntaxError{Selector: p.src, Offset: at, Msg: msg}
}

// word reads a key or value: the longest run of characters that are not
// blank or one of ",=!()".
func (p *parser) word() string {
	start := p.pos
	for !p.eof() && !strings.ContainsRune(" \t,=!()", rune(p.src[p.pos])) {
		p.pos++
	}
	return p.src[start:p.pos]
}

func (p *parser) key() (string, error) {
	start := p.pos
	k := p.word()
	if k == "" {
		if p.eof() {
			return "", p.fail(start, "expected a label key, found the end")
		}
		return "", p.fail(start, fmt.Sprintf("expected a label key, found %q", p.src[start:start+1]))
	}
	if err := labels.CheckKey(k); err != nil {
		return "", p.fail(start, err.Error())
	}
	return k, nil
}

func (p *parser) value() (string, error) {
	start := p.pos
	v := p.word()
	if len(v) > labels.MaxValue {
		return "", p.fail(start, fmt.Sprintf("a label value is at most %d bytes", labels.MaxValue))
	}
	if v == "" && !p.eof() && p.src[p.pos] != ',' && p.src[p.pos] != ')' {
		return "", p.fail(start, fmt.Sprintf("expected a label value, found %q", p.src[start:start+1]))
	}
	return v, nil
}

func (p *parser) requirement() (requirement, error) {
	if p.src[p.pos] == '!' {
		p.pos++
		p.skipSpace()
		k, err := p.key()
		if err != nil {
			return requirement{}, err
		}
		return requirement{key: k, op: opNotExists}, nil
	}
	k, err := p.key()
	if err != nil {
		return requirement{}, err
	}
	p.skipSpace()
	if p.eof() || p.src[p.pos] == ',' {
		return requirement{key: k, op: opExists}, nil
	}
	switch {
	case strings.HasPrefix(p.src[p.pos:], "!="):
		p.pos += 2
		p.skipSpace()
		v, err := p.value()
		return requirement{key: k, op: opNotEq, values: []string{v}}, err
	case strings.HasPrefix(p.src[p.pos:], "=="):
		p.pos += 2
	case p.src[p.pos] == '=':
		p.pos++
	default:
		at := p.pos
		w := p.word()
		switch w {
		case "in":
			vs, err := p.set()
			return requirement{key: k, op: opIn, values: vs}, err
		case "notin":
			vs, err := p.set()
			return requirement{key: k, op: opNotIn, values: vs}, err
		}
		return requirement{}, p.fail(at, fmt.Sprintf("expected =, !=, in or notin after %q", k))
	}
	p.skipSpace()
	v, err := p.value()
	return requirement{key: k, op: opEq, values: []string{v}}, err
}

// set reads "(a, b, c)": at least one value, sorted and without repeats.
func (p *parser) set() ([]string, error) {
	p.skipSpace()
	if p.eof() || p.src[p.pos] != '(' {
		return nil, p.fail(p.pos, "expected '(' and a list of values")
	}
	p.pos++
	var vs []string
	for {
		p.skipSpace()
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		if v == "" {
			return nil, p.fail(p.pos, "expected a value in the list")
		}
		vs = append(vs, v)
		p.skipSpace()
		if p.eof() {
			return nil, p.fail(p.pos, "the list of values is not closed with ')'")
		}
		c := p.src[p.pos]
		p.pos++
		if c == ')' {
			break
		}
		if c != ',' {
			return nil, p.fail(p.pos-1, fmt.Sprintf("expected ',' or ')' in the list of values, found %q", string(c)))
		}
	}
	slices.Sort(vs)
	return slices.Compact(vs), nil
}
