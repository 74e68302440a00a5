package tcpsegtest

import "sync"

// Reads records the sizes of a copy's reads as a proxy's test hook is told
// them (Add, from any goroutine), for the test to count.
type Reads struct {
	mu    sync.Mutex
	sizes []int
}

// Add records a read of n bytes.
func (r *Reads) Add(n int) {
	r.mu.Lock()
	r.sizes = append(r.sizes, n)
	r.mu.Unlock()
}

// Count returns how many reads took n bytes, and the sizes of the others.
func (r *Reads) Count(n int) (k int, other []int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.sizes {
		if m == n {
			k++
		} else {
			other = append(other, m)
		}
	}
	return k, other
}

// Sizes returns the sizes of all the reads recorded.
func (r *Reads) Sizes() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int(nil), r.sizes...)
}
