package accesslog

import (
	"encoding/json"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/dataplane/meter"
)

// fullDisk is a log file on a disk that is full until free is called: a
// write then stores the first partial bytes it is given (a disk with a
// few bytes left) and fails with ENOSPC, as write(2) does.
type fullDisk struct {
	mu       sync.Mutex
	full     bool
	partial  int
	attempts int
	data     []byte
}

func (d *fullDisk) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.attempts++
	if d.full {
		n := min(d.partial, len(p))
		d.data = append(d.data, p[:n]...)
		d.partial -= n
		return n, syscall.ENOSPC
	}
	d.data = append(d.data, p...)
	return len(p), nil
}

func (d *fullDisk) free() {
	d.mu.Lock()
	d.full = false
	d.mu.Unlock()
}

func (d *fullDisk) tried() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.attempts > 0
}

func logPath(l *Log, path string) {
	l.Log("public", &meter.Exchange{
		Start: time.Now(), Client: netip.MustParseAddrPort("127.0.0.1:5555"), Proto: meter.ProtoHTTP11,
		Method: []byte("GET"), Host: []byte("example.com"), Path: []byte(path), Status: 200,
	})
}

// TestLogGoesOnAfterDiskFull: a log file whose disk filled up loses the
// lines written meanwhile, counted in Dropped, and gets the lines logged
// once space is freed again, each whole on its own line (a line the full
// disk cut short is ended, not glued to the next), as syslog and Envoy's
// file logs do; the access log must not stay dead until a restart.
func TestLogGoesOnAfterDiskFull(t *testing.T) {
	for _, partial := range []int{0, 30} {
		disk := &fullDisk{full: true, partial: partial}
		l, err := New(disk, Options{Node: "node-1"})
		if err != nil {
			t.Fatal(err)
		}
		logPath(l, "/lost")
		for deadline := time.Now().Add(5 * time.Second); !disk.tried(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the writer never wrote")
			}
		}
		disk.free()
		logPath(l, "/b")
		logPath(l, "/c")
		l.Close()

		lines := strings.Split(strings.TrimSuffix(string(disk.data), "\n"), "\n")
		var paths []string
		for _, line := range lines {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil {
				paths = append(paths, m["path"].(string))
			}
		}
		if strings.Join(paths, " ") != "/b /c" {
			t.Errorf("partial write of %d bytes: the log holds the lines of %q, want /b and /c whole:\n%s", partial, paths, disk.data)
		}
		if partial > 0 && (len(lines) != 3 || len(lines[0]) != partial) {
			t.Errorf("partial write of %d bytes: lines %q, want the cut line ended, then /b and /c", partial, lines)
		}
		if d := l.Dropped(); d != 1 {
			t.Errorf("partial write of %d bytes: Dropped() = %d, want 1 (the line the full disk lost)", partial, d)
		}
	}
}
