//go:build linux

package httpproxy

import "syscall"

// mapBuffers maps n buffers of size bytes (a multiple of the page size) in
// one anonymous mapping, which is never unmapped: a released buffer stays
// valid memory that reads as zeros, never a fault.
func mapBuffers(size, n int) [][]byte {
	mem, err := syscall.Mmap(-1, 0, size*n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		// Out of address space or mappings: fall back to the Go heap.
		mem = make([]byte, size*n)
	}
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = mem[i*size : (i+1)*size : (i+1)*size]
	}
	return bufs
}

// releaseBuffer gives a buffer's pages back to the OS; they read as zeros
// and fault in again when used.
func releaseBuffer(b []byte) {
	syscall.Madvise(b, syscall.MADV_DONTNEED)
}
