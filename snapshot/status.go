package snapshot

import (
	"fmt"
	"strings"
)

// DefaultExpect is the set of statuses an HTTP check takes as up when it is
// told nothing: any 2xx or 3xx, as HAProxy's "option httpchk".
const DefaultExpect = "200-399"

// MaxStatusRanges bounds the codes and ranges of one StatusSpec.
const MaxStatusRanges = 16

// StatusSpec is a parsed set of HTTP status codes such as "200-299,301".
//
// It is a comparable value (a fixed array, no slice or pointer) so that it
// sits in a Spec, which Reconcile compares with !=. Two specs parsed from
// the same string are equal. The zero StatusSpec is DefaultExpect.
type StatusSpec struct {
	n      uint8
	ranges [MaxStatusRanges]statusRange
}

// statusRange is an inclusive range of status codes; lo == hi for a single
// code.
type statusRange struct{ lo, hi uint16 }

// ParseStatusSpec parses a comma-separated list of status codes (100-599)
// and inclusive ranges: "200", "200-399", "200,204", "200-299,301". Spaces
// around codes are ignored. The empty string is the zero StatusSpec, which
// is DefaultExpect.
//
// Errors name the offending part, without a prefix, so a caller can put
// them after the field they came from:
//
//	"2000" is not a status code (100-599)
//	range "399-200" is reversed
func ParseStatusSpec(s string) (StatusSpec, error) {
	var spec StatusSpec
	if strings.TrimSpace(s) == "" {
		return spec, nil
	}
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return StatusSpec{}, fmt.Errorf("empty code in %q", s)
		}
		loText, hiText, isRange := strings.Cut(item, "-")
		if !isRange {
			hiText = loText
		} else if strings.Contains(hiText, "-") {
			return StatusSpec{}, fmt.Errorf("%q is not a code or a range", item)
		} else if strings.TrimSpace(loText) == "" || strings.TrimSpace(hiText) == "" {
			return StatusSpec{}, fmt.Errorf("range %q needs a code at each end", item)
		}
		lo, err := parseStatusCode(loText)
		if err != nil {
			return StatusSpec{}, err
		}
		hi, err := parseStatusCode(hiText)
		if err != nil {
			return StatusSpec{}, err
		}
		if lo > hi {
			return StatusSpec{}, fmt.Errorf("range %q is reversed", item)
		}
		if int(spec.n) == MaxStatusRanges {
			return StatusSpec{}, fmt.Errorf("more than %d codes and ranges", MaxStatusRanges)
		}
		spec.ranges[spec.n] = statusRange{lo, hi}
		spec.n++
	}
	return spec, nil
}

// parseStatusCode parses exactly three digits between 100 and 599; no sign,
// no leading zero.
func parseStatusCode(s string) (uint16, error) {
	s = strings.TrimSpace(s)
	if len(s) != 3 || s[0] < '1' || s[0] > '5' || !isDigit(s[1]) || !isDigit(s[2]) {
		return 0, fmt.Errorf("%q is not a status code (100-599)", s)
	}
	return uint16(s[0]-'0')*100 + uint16(s[1]-'0')*10 + uint16(s[2]-'0'), nil
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// Contains reports whether code is in the set.
func (s StatusSpec) Contains(code int) bool {
	if s.n == 0 {
		return 200 <= code && code <= 399
	}
	for _, r := range s.ranges[:s.n] {
		if int(r.lo) <= code && code <= int(r.hi) {
			return true
		}
	}
	return false
}

// String returns the set in the syntax ParseStatusSpec reads; DefaultExpect
// for the zero StatusSpec.
func (s StatusSpec) String() string {
	if s.n == 0 {
		return DefaultExpect
	}
	var b strings.Builder
	for i, r := range s.ranges[:s.n] {
		if i > 0 {
			b.WriteByte(',')
		}
		if r.lo == r.hi {
			fmt.Fprintf(&b, "%d", r.lo)
		} else {
			fmt.Fprintf(&b, "%d-%d", r.lo, r.hi)
		}
	}
	return b.String()
}
