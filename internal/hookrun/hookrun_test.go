package hookrun

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseResponse(t *testing.T) {
	for _, c := range []struct {
		name   string
		raw    string
		status int
		body   string
		err    bool
	}{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 14\r\n\r\n{\"allow\":true}", 200, `{"allow":true}`, false},
		{"length cuts", "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}garbage", 200, "{}", false},
		{"chunked", "HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"err\r\nA;ext=1\r\nor\":\"x\"}  \r\n0\r\n\r\n", 400, "{\"error\":\"x\"}  ", false},
		{"until close", "HTTP/1.0 500 Internal Server Error\r\n\r\noops", 500, "oops", false},
		{"no end of headers", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n", 0, "", true},
		{"short body", "HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n{}", 0, "", true},
		{"two lengths", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}", 0, "", true},
		{"bad length", "HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\n{}", 0, "", true},
		{"bad status", "HTTP/1.1 2x0 OK\r\n\r\n", 0, "", true},
		{"not http", "SSH-2.0-OpenSSH\r\n\r\n", 0, "", true},
		{"gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", 0, "", true},
		{"truncated chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc", 0, "", true},
		{"header without colon", "HTTP/1.1 200 OK\r\nbogus\r\n\r\n", 0, "", true},
	} {
		status, body, err := ParseResponse([]byte(c.raw))
		if c.err {
			if !errors.Is(err, ErrResponse) {
				t.Errorf("%s: ParseResponse = %d %q %v, want ErrResponse", c.name, status, body, err)
			}
			continue
		}
		if err != nil || status != c.status || string(body) != c.body {
			t.Errorf("%s: ParseResponse = %d %q %v, want %d %q", c.name, status, body, err, c.status, c.body)
		}
	}
}

func FuzzParseResponse(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\n{\"allow\":true}"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"))
	f.Add([]byte("HTTP/1.0 500 x\r\n\r\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		status, body, err := ParseResponse(raw)
		if err != nil {
			if !errors.Is(err, ErrResponse) || body != nil {
				t.Fatalf("ParseResponse = %d %q %v", status, body, err)
			}
			return
		}
		if status < 0 || status > 999 || len(body) > len(raw) {
			t.Fatalf("ParseResponse = %d, %d body bytes from %d", status, len(body), len(raw))
		}
	})
}

// fakeDaemon answers every connection on a unix socket with answer (after
// delay), and returns the socket path.
func fakeDaemon(t *testing.T, delay time.Duration, answer string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "hvmon-r")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	never := make(chan struct{}) // a negative delay: no answer until the test ends
	t.Cleanup(func() { close(never) })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64<<10)
				c.Read(buf)
				if delay < 0 {
					<-never
					return
				}
				time.Sleep(delay)
				c.Write([]byte(answer))
			}()
		}
	}()
	return sock
}

func testXML(t *testing.T) []byte {
	b, err := os.ReadFile("../../hook/testdata/domain-snp.xml")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRunAnswers(t *testing.T) {
	xml := testXML(t)
	args := []string{"llm-1", "migrate", "begin", "-"}
	for _, c := range []struct {
		name   string
		delay  time.Duration
		answer string
		code   int // with --fail-closed
		stderr string
	}{
		{"allow", 0, "HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\n{\"allow\":true}", 0, ""},
		{"deny", 0, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1e\r\n{\"allow\":false,\"reason\":\"no!\"}\r\n0\r\n\r\n", ExitRefused, "of domain \"llm-1\": no! (fail-"},
		{"error", 0, "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 17\r\n\r\n{\"error\":\"disk\"}\n", ExitUsage, "did not answer: daemon: disk (HTTP 500)"},
		{"garbage", 0, "hello", ExitUsage, "did not answer: daemon: malformed HTTP response"},
		{"unknown field", 0, "HTTP/1.1 200 OK\r\n\r\n{\"allow\":true,\"maybe\":1}", ExitUsage, "unknown field"},
		// A daemon that never answers: Run must end on its own deadline
		// (if it waited, the test would hang until go test's timeout).
		{"too slow", -1, "HTTP/1.1 200 OK\r\n\r\n{\"allow\":true}", ExitUsage, "did not answer: no answer before the deadline"},
	} {
		t.Run(c.name, func(t *testing.T) {
			sock := fakeDaemon(t, c.delay, c.answer)
			for _, failClosed := range []bool{false, true} {
				var stderr bytes.Buffer
				err := Run(context.Background(), Options{Socket: sock, FailClosed: failClosed, Timeout: 300 * time.Millisecond}, args, bytes.NewReader(xml), &stderr, "p: ")
				var he *Error
				code := 0
				if errors.As(err, &he) {
					code = he.Code
					stderr.WriteString(he.Error())
				} else if err != nil {
					t.Fatalf("Run = %v", err)
				}
				want := 0
				if failClosed {
					want = c.code
				}
				if code != want || !strings.Contains(stderr.String(), c.stderr) {
					t.Errorf("fail-closed %v: exit %d, stderr %q; want exit %d and %q", failClosed, code, stderr.String(), want, c.stderr)
				}
			}
		})
	}
}

func TestRunSendsMessage(t *testing.T) {
	dir, _ := os.MkdirTemp("", "hvmon-r")
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		var all []byte
		buf := make([]byte, 4096)
		for !bytes.Contains(all, []byte("\"xml_size\":")) || !bytes.HasSuffix(all, []byte("}")) {
			n, err := c.Read(buf)
			all = append(all, buf[:n]...)
			if err != nil {
				break
			}
		}
		got <- string(all)
		c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\n{\"allow\":true}"))
	}()
	if err := Run(context.Background(), Options{Socket: sock, Timeout: time.Second}, []string{"llm-1", "start", "begin", "-"}, bytes.NewReader(testXML(t)), &bytes.Buffer{}, ""); err != nil {
		t.Fatal(err)
	}
	req := <-got
	for _, want := range []string{"POST /v1/hook HTTP/1.1\r\n", "Connection: close\r\n", `"object":"llm-1"`, `"op":"start"`, `"launch_security":"sev-snp"`, `"attestation_required":true`, `"agent_socket":"/run/hvmon/agents/llm-1.agent"`} {
		if !strings.Contains(req, want) {
			t.Errorf("request lacks %q:\n%s", want, req)
		}
	}
}
