// Package loopback gives tests addresses on 127.0.0.1, and backends there
// that answer every request with the same bytes.
package loopback

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// handedOut remembers every address FreeAddr returned in this process, so
// two calls never return the same port.
var handedOut sync.Map

// FreeAddr returns a loopback address that nothing listens on right now and
// that no earlier call returned.
//
// The port is chosen below the kernel's ephemeral range. A port the kernel
// handed out with :0 and that was closed again is soon reused as the local
// port of some outgoing connection (the tests make thousands), and then
// whatever the test starts on the address fails with "address in use".
func FreeAddr(t testing.TB) string {
	t.Helper()
	lo, hi := portRange()
	for range 1000 {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(lo+rand.IntN(hi-lo)))
		if _, dup := handedOut.LoadOrStore(addr, true); dup {
			continue
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue // another process uses it; try another
		}
		ln.Close()
		return addr
	}
	t.Fatal("loopback: no free port below the ephemeral range")
	return ""
}

// portRange is where FreeAddr picks: from 10000 up to the first port of
// Linux's ip_local_port_range (32768 by default, and where it cannot be
// read).
func portRange() (lo, hi int) {
	lo, hi = 10000, 32768
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	if f := strings.Fields(string(b)); len(f) == 2 {
		if n, err := strconv.Atoi(f[0]); err == nil && n > lo+1000 {
			hi = n
		}
	}
	return lo, hi
}

// Serve listens on a fresh loopback port and runs handle on its own
// goroutine for every connection, until the test ends; it returns the
// address. handle owns the connection and closes it.
func Serve(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	return ServeWith(t, net.ListenConfig{}, handle)
}

// ServeWith is Serve with a listening socket made by lc: one whose Control
// sets options that the connections it accepts take on.
func ServeWith(t testing.TB, lc net.ListenConfig, handle func(net.Conn)) string {
	t.Helper()
	return accept(t, lc, func(c net.Conn) { go handle(c) })
}

// Accept listens on a fresh loopback port and runs fn for every
// connection on the goroutine that accepts them, until the test ends; it
// returns the address. The next connection is accepted once fn returns;
// fn owns the connection and closes it.
func Accept(t testing.TB, fn func(net.Conn)) string {
	t.Helper()
	return accept(t, net.ListenConfig{}, fn)
}

func accept(t testing.TB, lc net.ListenConfig, fn func(net.Conn)) string {
	t.Helper()
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fn(c)
		}
	}()
	return ln.Addr().String()
}

// Pair returns the two ends of a TCP connection on loopback: the one
// dialled and the one accepted. Both close when the test ends.
func Pair(t testing.TB) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}
