package snapshot

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestErrorText(t *testing.T) {
	es := Errors{
		{Path: "clusters[0].endpoints[1].weight", Message: "must be <= 256"},
		{Message: "YAML syntax error: did not find expected key (line 4)"},
	}
	want := "clusters[0].endpoints[1].weight: must be <= 256\nYAML syntax error: did not find expected key (line 4)"
	if got := es.Error(); got != want {
		t.Errorf("Errors.Error() = %q, want %q", got, want)
	}
}

func TestStatusRoundTrip(t *testing.T) {
	es := Errors{
		{Path: "clusters[0].endpoints[1].weight", Message: "must be <= 256"},
		{Path: "listeners[0].default_cluster", Message: `unknown cluster "wbe", did you mean "web"?`},
	}
	for _, in := range []error{es, fmt.Errorf("apply: %w", es)} {
		err := ToStatus(in)
		st, ok := status.FromError(err)
		if !ok || st.Code() != codes.InvalidArgument {
			t.Fatalf("ToStatus code = %v, want InvalidArgument", st.Code())
		}
		if want := "invalid snapshot: clusters[0].endpoints[1].weight: must be <= 256 (and 1 more)"; st.Message() != want {
			t.Errorf("status message = %q, want %q", st.Message(), want)
		}
		var br *errdetails.BadRequest
		for _, d := range st.Details() {
			if b, ok := d.(*errdetails.BadRequest); ok {
				br = b
			}
		}
		if br == nil || len(br.GetFieldViolations()) != 2 || br.GetFieldViolations()[1].GetField() != "listeners[0].default_cluster" {
			t.Errorf("BadRequest detail = %v", br)
		}
		// Through the wire form, as a client sees it.
		wire := status.FromProto(st.Proto()).Err()
		got, ok := FromStatus(wire)
		if !ok || !equalLines(errorLines(got), errorLines(es)) {
			t.Errorf("FromStatus = %v, %v; want %v", got, ok, es)
		}
	}
}

func TestStatusOtherErrors(t *testing.T) {
	plain := errors.New("disk full")
	if got := ToStatus(plain); got != plain {
		t.Errorf("ToStatus(plain) = %v, want it unchanged", got)
	}
	if got := ToStatus(nil); got != nil {
		t.Errorf("ToStatus(nil) = %v, want nil", got)
	}
	for _, err := range []error{nil, plain, status.Error(codes.InvalidArgument, "no details"), status.Error(codes.Unavailable, "down")} {
		if es, ok := FromStatus(err); ok {
			t.Errorf("FromStatus(%v) = %v, true; want false", err, es)
		}
	}
}
