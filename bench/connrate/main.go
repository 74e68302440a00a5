// Command connrate measures what a new TCP session costs a proxy: clients
// that each connect, send one byte, read it back and close, in a loop, and
// the CPU time the proxy's process used meanwhile (from /proc/PID/stat).
// With -serve it is the backend instead: it echoes every connection.
//
//	go run ./bench/connrate -serve 127.0.0.1:19371 &
//	# a proxy listening on :19372 with 127.0.0.1:19371 as its endpoint, then:
//	go run ./bench/connrate -addr 127.0.0.1:19372 -pid PROXY_PID -n 20000
//
// BENCHMARKS.md ("New sessions") has what it measured, and how.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	serve := flag.String("serve", "", "be the echoing backend, on this address")
	addr := flag.String("addr", "127.0.0.1:19372", "the proxy's listener")
	pid := flag.Int("pid", 0, "the proxy's process, whose CPU time is measured (0: none)")
	n := flag.Int("n", 20000, "sessions in all")
	workers := flag.Int("c", 4, "clients at once")
	flag.Parse()
	if *serve != "" {
		echo(*serve)
		return
	}
	before := cpuTime(*pid)
	start := time.Now()
	var failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	per := *n / *workers
	for range *workers {
		wg.Go(func() {
			for range per {
				if err := session(*addr); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		})
	}
	wg.Wait()
	elapsed, total := time.Since(start), per**workers
	fmt.Printf("%d sessions in %v: %.0f/s, %d failed", total, elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds(), failed.Load())
	if e := firstErr.Load(); e != nil {
		fmt.Printf(" (first: %s)", e)
	}
	if *pid != 0 {
		used := cpuTime(*pid) - before
		fmt.Printf("; the proxy used %v of CPU, %.1f µs per session", used, float64(used.Microseconds())/float64(total))
	}
	fmt.Println()
}

// session is one client's connection: a byte there and back, then close.
func session(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("x")); err != nil {
		return err
	}
	var b [1]byte
	_, err = io.ReadFull(c, b[:])
	return err
}

// echo serves connections that get back what they send, until killed.
func echo(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			defer c.Close()
			io.Copy(c, c)
		}()
	}
}

// cpuTime is the user and system time process pid used so far; 0 for pid
// 0 or a process that cannot be read.
func cpuTime(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	// After the command name in parentheses: state is field 3, utime 14
	// and stime 15, in clock ticks (100 a second).
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+k) * 10 * time.Millisecond
}
