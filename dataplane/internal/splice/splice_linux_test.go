package splice

import "testing"

// TestStatsCountPipes: Stats counts a pipe from when Get makes it until
// it is closed (here by Put, as it still holds bytes).
func TestStatsCountPipes(t *testing.T) {
	if n, _ := Stats(); n != 0 {
		t.Fatalf("a new process holds %d pipes, by Stats", n)
	}
	p := Get()
	if p == nil {
		t.Skip("no pipe to be had here")
	}
	if n, _ := Stats(); n != 1 {
		t.Errorf("holding one pipe, Stats counts %d", n)
	}
	q := Get()
	if n, _ := Stats(); q != nil && n != 2 {
		t.Errorf("holding two pipes, Stats counts %d", n)
	}
	p.Data = 1 // still holding bytes: Put closes it rather than pooling it
	Put(p)
	if n, _ := Stats(); q != nil && n != 1 {
		t.Errorf("one pipe closed, one held: Stats counts %d", n)
	}
	if _, short := Stats(); short != 0 {
		t.Errorf("Stats counts %d pipes cut short where the full size was granted", short)
	}
}
