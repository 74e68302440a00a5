package httpproxy

import "fmt"

// This file holds header edits: what a Director asks the proxy to change in
// the fields of the request it forwards and of the response it relays, as
// listener rules do (HAProxy's http-request/http-response set-header,
// add-header, del-header).

// Field is one header field line.
type Field struct {
	Name, Value string
}

// HeaderEdits is a compiled list of changes to the fields of a head: every
// field of the removed names goes, then the set fields replace those of
// their names, then the added fields are appended. It is built once per
// configuration (NewHeaderEdits) and shared by every request; applying it
// costs no allocation.
type HeaderEdits struct {
	drop  []string // lower-case names whose fields go: removed and set ones
	lines []byte   // the fields put in, "Name: value\r\n" each, set ones first
	names []string // the lower-case name of each line
	ends  []int    // where each line ends in lines
}

// NewHeaderEdits compiles edits: remove every field of the names in remove,
// then set each field of set (replacing those of its name), then add each of
// add, in the order given. Names are compared without regard to ASCII case.
// A name that is not a token, a field the proxy owns (Host, Content-Length,
// Transfer-Encoding, Connection, Keep-Alive, Proxy-Connection, TE, Upgrade,
// Expect) or a value with control characters other than HTAB, or
// surrounding whitespace, is an error.
func NewHeaderEdits(remove []string, set, add []Field) (*HeaderEdits, error) {
	e := &HeaderEdits{}
	for _, n := range remove {
		if err := checkEditName(n); err != nil {
			return nil, err
		}
		e.drop = append(e.drop, lowerASCII(n))
	}
	for _, f := range set {
		if err := checkEditName(f.Name); err != nil {
			return nil, err
		}
		e.drop = append(e.drop, lowerASCII(f.Name))
	}
	for _, list := range [][]Field{set, add} {
		for _, f := range list {
			if err := checkEditName(f.Name); err != nil {
				return nil, err
			}
			if f.Value != "" && !validFieldValue(f.Value) {
				return nil, fmt.Errorf("httpproxy: header %s: value %q is not a valid field value", f.Name, f.Value)
			}
			e.lines = appendFieldLine(e.lines, f.Name, f.Value)
			e.names = append(e.names, lowerASCII(f.Name))
			e.ends = append(e.ends, len(e.lines))
		}
	}
	return e, nil
}

func checkEditName(name string) error {
	if name == "" {
		return fmt.Errorf("httpproxy: empty header name")
	}
	for i := 0; i < len(name); i++ {
		if !isToken[name[i]] {
			return fmt.Errorf("httpproxy: %q is not a valid header name", name)
		}
	}
	if k := classify([]byte(name)); k != fieldOther && !isForwarding(k) {
		return fmt.Errorf("httpproxy: header %s is the proxy's own and cannot be edited", name)
	}
	return nil
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

// EditRequest has e applied to the request forwarded to the endpoint that
// Pick returns, after the edits asked for before it. Fields that are not
// forwarded anyway (hop-by-hop ones) stay out; the Cookie fields keep what
// RemoveCookie asked for. The Request's own view of the head (Header,
// Cookie...) does not change.
//
// It must be called during Pick. e must not change afterwards.
func (r *Request) EditRequest(e *HeaderEdits) {
	if e != nil {
		r.reqEdits = append(r.reqEdits, e)
	}
}

// EditResponse has e applied to the endpoint's final response before it is
// relayed, after the edits asked for before it and before the fields of
// AddResponseField, which e thus does not remove. Interim 1xx responses and
// the proxy's own answers are not edited.
//
// It must be called during Pick. e must not change afterwards.
func (r *Request) EditResponse(e *HeaderEdits) {
	if e != nil {
		r.respEdits = append(r.respEdits, e)
	}
}

// dropped reports whether edits remove the fields called name (in any case).
func dropped(edits []*HeaderEdits, name []byte) bool {
	for _, e := range edits {
		for _, d := range e.drop {
			if equalFold(name, d) {
				return true
			}
		}
	}
	return false
}

// appendEdited appends the fields that edits put in and that no later edit
// removes.
func appendEdited(b []byte, edits []*HeaderEdits) []byte {
	for k, e := range edits {
		start := 0
		for j, end := range e.ends {
			if !droppedLower(edits[k+1:], e.names[j]) {
				b = append(b, e.lines[start:end]...)
			}
			start = end
		}
	}
	return b
}

// droppedLower is dropped for a lower-case name.
func droppedLower(edits []*HeaderEdits, name string) bool {
	for _, e := range edits {
		for _, d := range e.drop {
			if d == name {
				return true
			}
		}
	}
	return false
}

// dropEditedFields marks the fields of resp that edits remove as not
// forwarded.
func dropEditedFields(resp *response, edits []*HeaderEdits) {
	for i := 0; i < resp.nf; i++ {
		f := &resp.fields[i]
		if !f.drop && dropped(edits, f.name.of(resp.head)) {
			f.drop = true
		}
	}
}
