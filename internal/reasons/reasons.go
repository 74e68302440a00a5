// Package reasons spells connection close reasons the way users read and
// type them, everywhere: sluicectl conns, the dashboard's API and the
// access log all say "client_closed" for CLOSE_REASON_CLIENT_CLOSED.
package reasons

import (
	"strings"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

const prefix = "CLOSE_REASON_"

// names holds each defined reason's spelling, made once so that Name
// allocates nothing on the access log's path.
var names = func() map[sluicev1.CloseReason]string {
	m := make(map[sluicev1.CloseReason]string, len(sluicev1.CloseReason_name))
	for v, n := range sluicev1.CloseReason_name {
		m[sluicev1.CloseReason(v)] = strings.ToLower(strings.TrimPrefix(n, prefix))
	}
	return m
}()

// Name is r's spelling: its enum name without the prefix, in lower case
// ("unspecified" for 0; a number for a value this build does not know).
func Name(r sluicev1.CloseReason) string {
	if n, ok := names[r]; ok {
		return n
	}
	return strings.ToLower(strings.TrimPrefix(r.String(), prefix))
}

// NameEach is the Name of each of rs, in their order; empty, not nil,
// for none (a JSON list).
func NameEach(rs []sluicev1.CloseReason) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = Name(r)
	}
	return out
}

// Parse reads a name as Name writes it, or as the enum's full name (what
// protobuf's JSON, sluicectl's -o json, writes), in any case; UNSPECIFIED
// and unknown names are not reasons a filter can ask for.
func Parse(name string) (sluicev1.CloseReason, bool) {
	n := strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(name)), prefix)
	v, ok := sluicev1.CloseReason_value[prefix+n]
	if !ok || v == 0 {
		return 0, false
	}
	return sluicev1.CloseReason(v), true
}

// Names lists every reason a filter may name, in the enum's order.
func Names() []string {
	var out []string
	for v := int32(1); ; v++ {
		if _, ok := sluicev1.CloseReason_name[v]; !ok {
			return out
		}
		out = append(out, Name(sluicev1.CloseReason(v)))
	}
}
