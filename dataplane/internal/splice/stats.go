package splice

import "sync/atomic"

var (
	open      atomic.Int64  // pipes made and not closed yet: in use or pooled
	shortages atomic.Uint64 // new pipes the kernel cut short
	gets      atomic.Uint64 // pipes Get handed out
)

// Stats returns how many pipes the process holds for splicing, in use and
// pooled (net's own are not counted), and how many new pipes the kernel
// has cut short so far: past the user's pipe limit, each starts a second
// in which no new pipe is made, and large bodies without a pooled pipe
// are copied (see Get and Short). Both stay 0 where the package does not
// splice.
func Stats() (pipes int64, short uint64) {
	return open.Load(), shortages.Load()
}

// Gets returns how many pipes Get has handed out: one for each transfer
// spliced (a TCP burst, an HTTP body, or each piece of a long one the
// caller splices in pieces). It stays 0 where the package does not
// splice.
func Gets() uint64 { return gets.Load() }
