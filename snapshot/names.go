package snapshot

import (
	"fmt"
	"strings"
	"sync"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// Enum values are written without their type prefix: LbPolicy's
// LB_POLICY_ROUND_ROBIN is ROUND_ROBIN in YAML. The prefix is the type name in
// UPPER_SNAKE_CASE, the style guide's convention; an enum whose values do not
// all carry it keeps its full names.

var enumPrefixes sync.Map // protoreflect.FullName -> string

func enumPrefix(ed protoreflect.EnumDescriptor) string {
	if p, ok := enumPrefixes.Load(ed.FullName()); ok {
		return p.(string)
	}
	p := upperSnake(string(ed.Name())) + "_"
	vals := ed.Values()
	for i := 0; i < vals.Len(); i++ {
		rest, ok := strings.CutPrefix(string(vals.Get(i).Name()), p)
		if !ok || rest == "" || isASCIIDigit(rest[0]) {
			p = ""
			break
		}
	}
	enumPrefixes.Store(ed.FullName(), p)
	return p
}

// enumShortName is the name a value is printed with.
func enumShortName(v protoreflect.EnumValueDescriptor) string {
	return strings.TrimPrefix(string(v.Name()), enumPrefix(v.Parent().(protoreflect.EnumDescriptor)))
}

// enumByName accepts the short and the full name of a value.
func enumByName(ed protoreflect.EnumDescriptor, s string) protoreflect.EnumValueDescriptor {
	vals := ed.Values()
	if v := vals.ByName(protoreflect.Name(enumPrefix(ed) + s)); v != nil {
		return v
	}
	return vals.ByName(protoreflect.Name(s))
}

// enumNames lists the short names of ed's values, without the zero value
// (UNSPECIFIED) unless withZero.
func enumNames(ed protoreflect.EnumDescriptor, withZero bool) []string {
	var out []string
	vals := ed.Values()
	for i := 0; i < vals.Len(); i++ {
		v := vals.Get(i)
		if v.Number() == 0 && !withZero {
			continue
		}
		out = append(out, enumShortName(v))
	}
	return out
}

// upperSnake turns "LbPolicy" into "LB_POLICY" and "HTTPMethod" into
// "HTTP_METHOD".
func upperSnake(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		isUpper := c >= 'A' && c <= 'Z'
		if isUpper && i > 0 {
			prev := s[i-1]
			prevLowerOrDigit := isASCIILower(prev) || isASCIIDigit(prev)
			nextLower := i+1 < len(s) && isASCIILower(s[i+1])
			if prevLowerOrDigit || (prev >= 'A' && prev <= 'Z' && nextLower) {
				b.WriteByte('_')
			}
		}
		if isASCIILower(c) {
			c -= 'a' - 'A'
		}
		b.WriteByte(c)
	}
	return b.String()
}

// Closest returns the candidate nearest to s when it is near enough to be a
// likely typo (edit distance at most 1 for short words, 2 otherwise), or "":
// the "did you mean" of every error about a name, here and in the control
// plane's API. Two candidates equally near make no suggestion: "web3"
// among web1 and web2 may mean either, or a name not there yet. Nor does
// one that shares no letter with s: "c" for "a" is no typo.
func Closest(s string, candidates []string) string {
	best, bestD, tie := "", 1<<30, false
	limit := 2
	if len(s) <= 4 {
		limit = 1
	}
	for _, c := range candidates {
		d := editDistance(strings.ToLower(s), strings.ToLower(c))
		switch {
		case d < bestD:
			best, bestD, tie = c, d, false
		case d == bestD && c != best:
			tie = true
		}
	}
	if bestD > limit || bestD >= max(len(s), len(best)) || tie || best == s || best == "" {
		return ""
	}
	return best
}

// ClosestName is Closest for a name an operator asks about (a node, a
// cluster, an endpoint, a listener), whose error lists the names there
// are when it has no suggestion: one that differs from s only in its
// digits is none, as node-2 is more likely another node, not connected
// yet, than a typo of node-1.
func ClosestName(s string, candidates []string) string {
	near := Closest(s, candidates)
	if near != "" && withoutDigits(near) == withoutDigits(s) {
		return ""
	}
	return near
}

// withoutDigits is s with its ASCII digits left out.
func withoutDigits(s string) string {
	return strings.Map(func(r rune) rune {
		if '0' <= r && r <= '9' {
			return -1
		}
		return r
	}, s)
}

// editDistance is the Damerau-Levenshtein (optimal string alignment)
// distance, so a swapped pair of letters counts as one typo.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 30 // not a typo of a field name; spare the allocation
	}
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := 0; j <= len(b); j++ {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// UnknownName says that name, a kind ("group"), is missing (missing:
// "does not exist"), with the closest of names when one is near enough
// (ClosestName), else with names listed (NameList). The control plane's
// refusals and sluicectl's checks say it in these words alike.
func UnknownName(kind, name, missing string, names []string, has, none string) string {
	if near := ClosestName(name, names); near != "" {
		return fmt.Sprintf("%s %q %s, did you mean %q?", kind, name, missing, near)
	}
	return fmt.Sprintf("%s %q %s (%s)", kind, name, missing, NameList(has, none, names))
}

// MaxListedNames bounds the names a message lists; a cluster may have
// thousands of endpoints.
const MaxListedNames = 10

// NameList renders names after has ("the groups are: a, b"), or none when
// there are none.
func NameList(has, none string, names []string) string {
	if len(names) == 0 {
		return none
	}
	return has + ": " + ListNames(names)
}

// ListNames renders "a, b", or "a, …, j and 5 more".
func ListNames(names []string) string {
	if len(names) > MaxListedNames {
		return fmt.Sprintf("%s, … and %d more", strings.Join(names[:MaxListedNames], ", "), len(names)-MaxListedNames)
	}
	return strings.Join(names, ", ")
}
