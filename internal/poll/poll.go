// Package poll waits, in tests, for what other goroutines or processes
// bring about: a count that settles, a socket that closes, a record that
// arrives.
package poll

import (
	"testing"
	"time"
)

// Until calls cond every interval until it holds, and fails t with
// "timed out waiting for what" once timeout passed first.
func Until(t testing.TB, timeout, every time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(every)
	}
}
