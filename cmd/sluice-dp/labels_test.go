package main

import (
	"maps"
	"testing"
)

func TestParseLabels(t *testing.T) {
	got, err := parseLabels("zone=a,role=edge,empty=")
	if want := map[string]string{"zone": "a", "role": "edge", "empty": ""}; err != nil || !maps.Equal(got, want) {
		t.Errorf("parseLabels: %v, %v; want %v", got, err, want)
	}
	for in, want := range map[string]string{
		"zone=a,zone=b": "zone is given twice (zone=a and zone=b)",
		"zone":          `"zone" is not k=v`,
		"=a":            `"=a" is not k=v`,
		"a b=c":         `"a b" is not a label key (letters, digits and ._/-, starting with a letter or digit, at most 63)`,
		"zone=eu west":  `zone's value "eu west" has ' ', which no selector can write: use letters, digits and ._/:- and the like`,
		"zone=a=b":      `zone's value "a=b" has '=', which no selector can write: use letters, digits and ._/:- and the like`,
	} {
		if _, err := parseLabels(in); err == nil || err.Error() != want {
			t.Errorf("parseLabels(%q): %v, want %q", in, err, want)
		}
	}
}
