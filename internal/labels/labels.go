// Package labels checks a node's labels (sluice-dp --labels) as node
// groups' selectors write them, so that every label a node has can be
// selected, and writes them as --labels takes them.
package labels

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"unicode"
)

// keyPattern is what a label key may be: the pattern of Node.labels'
// keys in discovery.proto.
var keyPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$`)

// MaxValue is the longest label value, in bytes (Node.labels' values).
const MaxValue = 256

// CheckKey returns why k cannot be a label key, or nil.
func CheckKey(k string) error {
	if !keyPattern.MatchString(k) {
		return fmt.Errorf("%q is not a label key (letters, digits and ._/-, starting with a letter or digit, at most 63)", k)
	}
	return nil
}

// CheckValue returns why v cannot be the value of label k, or nil: a
// selector ends a value at a space, a comma, =, !, or a parenthesis, so a
// value with one could never be selected. It may be empty.
func CheckValue(k, v string) error {
	if len(v) > MaxValue {
		return fmt.Errorf("%s's value is %d bytes, more than %d", k, len(v), MaxValue)
	}
	if i := strings.IndexFunc(v, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsControl(r) || strings.ContainsRune(",=!()", r)
	}); i >= 0 {
		return fmt.Errorf("%s's value %q has %q, which no selector can write: use letters, digits and ._/:- and the like", k, v, []rune(v[i:])[0])
	}
	return nil
}

// Text writes labels as sluice-dp --labels takes them: k=v pairs, sorted
// by key, comma-separated ("" for none).
func Text(labels map[string]string) string {
	keys := slices.Sorted(maps.Keys(labels))
	for i, k := range keys {
		keys[i] = k + "=" + labels[k]
	}
	return strings.Join(keys, ",")
}
