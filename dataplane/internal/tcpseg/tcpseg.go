// Package tcpseg sizes the reads of a copy between TCP sockets by the
// segments of the socket the bytes go to.
//
// A send that is larger than one maximum segment (MSS) but not a whole
// number of them ends in a short segment, which goes out on its own. Over
// loopback, whose MSS (65483 bytes over IPv4 with timestamps) is just
// under 64 KiB, every 64 KiB send did; with BBR as the congestion control,
// which paces each segment sent, a 1 MiB transfer copied through 64 KiB
// reads cost the node about twice the CPU of reads of 65483 bytes, where
// under CUBIC the two cost about the same (BENCHMARKS.md, "Reads of whole
// TCP segments"). A copy that reads at most Fit(buffer, MSS(dst)) bytes at
// a time sends whole segments.
package tcpseg

// Fit returns the largest whole number of mss-byte segments that fits in n
// bytes; n itself when mss is 0 (not known), or when it is not less than n
// (a send of n bytes is then one segment at most).
func Fit(n, mss int) int {
	if mss <= 0 || mss >= n {
		return n
	}
	return n - n%mss
}
