package snapshot

import (
	"strconv"

	sluicev1 "github.com/sluice-lb/sluice/proto/sluice/v1"
)

// MaxWeight is the largest weight an endpoint may have: snapshot.proto's
// rule on Endpoint.weight and UpdateEndpointRequest.weight, HAProxy's
// bound on a server's weight.
const MaxWeight = 256

// Weight is ep's weight as configured: 1 when it gives none, as
// snapshot.proto says (and presenceDefaults, for diffs).
func Weight(ep *sluicev1.Endpoint) uint32 {
	if ep.Weight == nil {
		return 1
	}
	return ep.GetWeight()
}

// ParseWeight reads a weight as an operator types it (sluicectl
// set-weight, the dashboard's weight field): a decimal integer from 0 to
// MaxWeight, nothing else. ok is false for anything else.
func ParseWeight(s string) (weight uint32, ok bool) {
	w, err := strconv.ParseUint(s, 10, 32)
	if err != nil || w > MaxWeight {
		return 0, false
	}
	return uint32(w), true
}
