package e2e

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
)

// procTCPAddr is the IPv4 address addr as /proc/net/tcp (what ss reads)
// prints it: its four bytes as one 32-bit number in hex, read in the
// host's byte order, then a colon and the port.
func procTCPAddr(t *testing.T, addr string) string {
	t.Helper()
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().Is4() {
		t.Fatalf("/proc/net/tcp lists IPv4 addresses, not %q", addr)
	}
	ip := ap.Addr().As4()
	return fmt.Sprintf("%08X:%04X", binary.NativeEndian.Uint32(ip[:]), ap.Port())
}

// procTCP is the fields of each socket's line of /proc/net/tcp:
// sl local_address rem_address st tx_queue:rx_queue tr:tm->when ...
func procTCP(t *testing.T) [][]string {
	t.Helper()
	raw, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	rows := make([][]string, 0, len(lines))
	for _, line := range lines[1:] { // after the header
		rows = append(rows, strings.Fields(line))
	}
	return rows
}
