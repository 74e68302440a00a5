//go:build !linux

package httpproxy

// mapBuffers allocates n buffers of size bytes on the Go heap where
// anonymous mappings are not available.
func mapBuffers(size, n int) [][]byte {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, size)
	}
	return bufs
}

// releaseBuffer cannot return heap memory early; it keeps the buffer.
func releaseBuffer(b []byte) {}
