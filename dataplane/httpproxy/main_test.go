package httpproxy

import (
	"testing"

	"github.com/sluice-lb/sluice/dataplane/internal/splice/splicetest"
)

// TestMain has large bodies spliced, those between loopback peers too
// (splicetest.Main); eachSpliceMode runs a test under the default too.
func TestMain(m *testing.M) { splicetest.Main(m) }

// eachSpliceMode runs f with large bodies spliced, then copied as the
// default mode copies those between loopback peers, checking that a pipe
// was taken the first time only.
func eachSpliceMode(t *testing.T, f func(t *testing.T)) { splicetest.Each(t, f, true) }

// bothSpliceModes is eachSpliceMode without its check of pipes: for
// close-delimited bodies, which net's ReadFrom splices through pipes of
// its own.
func bothSpliceModes(t *testing.T, f func(t *testing.T)) { splicetest.Each(t, f, false) }
