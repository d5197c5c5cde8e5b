package host

import (
	"errors"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

// TestListenAPISymlink: a symlink planted at the socket path is neither
// followed nor replaced; its target, a file or a directory, is untouched.
func TestListenAPISymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "precious")
	os.WriteFile(target, []byte("keep me"), 0o644)
	os.Mkdir(filepath.Join(dir, "d"), 0o755)
	for _, to := range []string{target, filepath.Join(dir, "d"), filepath.Join(dir, "nothing")} {
		sock := filepath.Join(dir, "api.sock")
		os.Remove(sock)
		os.Symlink(to, sock)
		if ln, err := ListenAPI(sock, ""); !errors.Is(err, ErrSocketPath) {
			if ln != nil {
				ln.Close()
			}
			t.Fatalf("ListenAPI(a symlink to %s) = %v, want ErrSocketPath", to, err)
		}
		if st, err := os.Lstat(sock); err != nil || st.Mode()&os.ModeSymlink == 0 {
			t.Errorf("the symlink was replaced")
		}
	}
	if b, _ := os.ReadFile(target); string(b) != "keep me" {
		t.Errorf("target now %q", b)
	}
	if st, _ := os.Stat(target); st.Mode().Perm() != 0o644 {
		t.Errorf("target mode now %v", st.Mode())
	}
	if _, err := os.Lstat(filepath.Join(dir, "nothing")); err == nil {
		t.Error("a dangling symlink's target was created")
	}
	if es, _ := os.ReadDir(filepath.Join(dir, "d")); len(es) != 0 {
		t.Errorf("the directory a symlink pointed to now holds %d entries", len(es))
	}
}

// TestListenAPIMode: the socket has its final mode (0600, or 0660 and the
// group) when it appears at its path, even with umask 0; a poller that
// watches the path while the socket is made and removed 200 times never
// sees another mode. A stale socket is replaced, a live one refused, and
// nothing is left behind.
func TestListenAPIMode(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "api.sock")
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	var wrong atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if st, err := os.Lstat(sock); err == nil && st.Mode().Perm() != 0o600 {
				wrong.Store(st.Mode())
			}
		}
	}()
	for range 200 {
		ln, err := ListenAPI(sock, "")
		if err != nil {
			t.Fatal(err)
		}
		ln.Close()
	}
	close(stop)
	wg.Wait()
	if m := wrong.Load(); m != nil {
		t.Fatalf("the socket path was seen with mode %v", m)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Close left the socket: %v", err)
	}

	g, err := user.LookupGroupId(strconv.Itoa(os.Getgid()))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := ListenAPI(sock, g.Name)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Lstat(sock)
	if st.Mode().Perm() != 0o660 || st.Mode()&os.ModeSocket == 0 || st.Sys().(*syscall.Stat_t).Gid != uint32(os.Getgid()) {
		t.Errorf("socket %v gid %d, want a 0660 socket of gid %d", st.Mode(), st.Sys().(*syscall.Stat_t).Gid, os.Getgid())
	}
	if c, err := net.Dial("unix", sock); err != nil {
		t.Errorf("dial: %v", err)
	} else {
		c.Close()
	}
	// A second daemon does not take over a live socket.
	if _, err := ListenAPI(sock, ""); !errors.Is(err, ErrSocketPath) {
		t.Errorf("ListenAPI(a live socket) = %v, want ErrSocketPath", err)
	}
	// A stale one (its daemon died without removing it) is replaced.
	ln.(*apiListener).Listener.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.(*apiListener).Listener.Close()
	ln, err = ListenAPI(sock, "")
	if err != nil {
		t.Fatalf("ListenAPI(a stale socket) = %v", err)
	}
	ln.Close()
	if es, _ := os.ReadDir(dir); len(es) != 0 {
		t.Errorf("left in the socket's directory: %v", es)
	}
}
