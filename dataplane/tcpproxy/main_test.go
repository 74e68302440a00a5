package tcpproxy

import (
	"testing"

	"github.com/sluice-lb/sluice/dataplane/internal/splice/splicetest"
)

// TestMain has bursts spliced, those between loopback peers too
// (splicetest.Main); eachSpliceMode runs a test under the default too.
func TestMain(m *testing.M) { splicetest.Main(m) }

// eachSpliceMode runs f with bursts spliced, then copied as the default
// mode copies those between loopback peers, checking that a pipe was
// taken the first time only.
func eachSpliceMode(t *testing.T, f func(t *testing.T)) { splicetest.Each(t, f, true) }
