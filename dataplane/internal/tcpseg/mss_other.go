//go:build !linux

package tcpseg

// MSS returns 0: off Linux the segment size is not asked.
func MSS(fd int) uint16 { return 0 }

// Paced returns false: off Linux nothing is spliced.
func Paced(fd int) bool { return false }
