package conntrack

import (
	"slices"
	"testing"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// TestReasonsHoldsEveryReason: a Reasons set has a bit for every
// CloseReason there is; one added to the enum at 32 or above would be
// lost from the records' failures.
func TestReasonsHoldsEveryReason(t *testing.T) {
	for v, name := range sluicev1.CloseReason_name {
		var s Reasons
		s.Add(sluicev1.CloseReason(v))
		if got := s.List(); !slices.Equal(got, []sluicev1.CloseReason{sluicev1.CloseReason(v)}) {
			t.Errorf("%s (%d): the set lists %v", name, v, got)
		}
	}
}

// TestFailRecordsEachReasonOnce: the record counts every failed request,
// and lists each reason once, in the enum's order.
func TestFailRecordsEachReasonOnce(t *testing.T) {
	var ci ConnInfo
	if r := ci.Record(); r.GetFailedRequests() != 0 || r.GetFailures() != nil {
		t.Errorf("no failure: record says %d failed for %v", r.GetFailedRequests(), r.GetFailures())
	}
	for _, why := range []sluicev1.CloseReason{
		sluicev1.CloseReason_CLOSE_REASON_DENIED,
		sluicev1.CloseReason_CLOSE_REASON_NO_ENDPOINT,
		sluicev1.CloseReason_CLOSE_REASON_DENIED,
		sluicev1.CloseReason_CLOSE_REASON_SERVER_TIMEOUT,
	} {
		ci.Fail(why)
	}
	r := ci.Record()
	want := []sluicev1.CloseReason{
		sluicev1.CloseReason_CLOSE_REASON_SERVER_TIMEOUT,
		sluicev1.CloseReason_CLOSE_REASON_NO_ENDPOINT,
		sluicev1.CloseReason_CLOSE_REASON_DENIED,
	}
	if r.GetFailedRequests() != 4 || !slices.Equal(r.GetFailures(), want) {
		t.Errorf("record says %d failed for %v, want 4 for %v", r.GetFailedRequests(), r.GetFailures(), want)
	}
}
