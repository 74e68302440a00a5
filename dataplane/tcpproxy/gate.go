package tcpproxy

// Go runs f, which sets up a new session of this server (ServeConnAsync,
// after whatever the caller reads first), on a new goroutine. The accept
// loop calls it, and it paces the accept loop while many sessions are
// setting up: before it starts another, it waits until the runtime has run
// what is queued and polled the network once (see netpollBarrier).
//
// Without it, a burst of connections faster than the node sets them up
// (a few tens of microseconds each, mostly the kernel's) turns into as many
// goroutines, each holding a stack (a dial is deep) and the runtime's
// record of a goroutine, which is never freed: most of the memory an idle
// session seemed to cost. With it, the burst waits in the kernel's accept
// queue, which costs the process nothing. The barrier waits for the CPU
// only, never for the network: setups waiting on a slow endpoint or a
// slow client go on counting, but every barrier ends as soon as the runtime
// is idle, so accepting goes on at the pace the node can take.
//
// f should return once the session runs; ServeConnAsync does.
func (s *Server) Go(f func()) {
	if s.setups.Load() >= paceAfter {
		netpollBarrier()
	}
	s.setups.Add(1)
	go func() {
		defer s.setups.Add(-1)
		f()
	}()
}

// paceAfter is how many sessions may be setting up before Go waits for a
// barrier each time.
const paceAfter = 64
