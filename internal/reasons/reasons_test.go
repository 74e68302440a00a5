package reasons

import (
	"slices"
	"strings"
	"testing"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

func TestNameAndParse(t *testing.T) {
	if got := Name(sluicev1.CloseReason_CLOSE_REASON_ENDPOINT_DOWN); got != "endpoint_down" {
		t.Errorf("Name(ENDPOINT_DOWN) = %q, want endpoint_down", got)
	}
	for _, n := range Names() {
		r, ok := Parse(n)
		if !ok || Name(r) != n {
			t.Errorf("Parse(%q) = %v, %v; want the reason Name spells so", n, r, ok)
		}
	}
	if r, ok := Parse(" Client_Closed "); !ok || r != sluicev1.CloseReason_CLOSE_REASON_CLIENT_CLOSED {
		t.Errorf("Parse is not case- and space-blind: %v, %v", r, ok)
	}
	if r, ok := Parse("CLOSE_REASON_SHUTDOWN"); !ok || r != sluicev1.CloseReason_CLOSE_REASON_SHUTDOWN {
		t.Errorf("Parse does not read the enum's full name, as -o json writes it: %v, %v", r, ok)
	}
	for _, bad := range []string{"", "unspecified", "CLOSE_REASON_UNSPECIFIED", "CLOSE_REASON_", "closed", "client-closed"} {
		if _, ok := Parse(bad); ok {
			t.Errorf("Parse(%q) accepted a name that is no reason", bad)
		}
	}
	names := Names()
	if names[0] != "client_closed" || !slices.Contains(names, "denied") || slices.Contains(names, "unspecified") {
		t.Errorf("Names() = %v", names)
	}
	if n := testing.AllocsPerRun(100, func() { Name(sluicev1.CloseReason_CLOSE_REASON_DRAINED) }); n != 0 {
		t.Errorf("Name allocates %v times", n)
	}
}

// TestNameEach: each reason by its Name, in order; none is an empty list,
// which JSON writes as [], not null.
func TestNameEach(t *testing.T) {
	got := NameEach([]sluicev1.CloseReason{sluicev1.CloseReason_CLOSE_REASON_NO_ENDPOINT, sluicev1.CloseReason_CLOSE_REASON_DENIED})
	if strings.Join(got, " ") != "no_endpoint denied" {
		t.Errorf("NameEach = %q, want [no_endpoint denied]", got)
	}
	if got := NameEach(nil); got == nil || len(got) != 0 {
		t.Errorf("NameEach(nil) = %#v, want an empty, non-nil list", got)
	}
}
