package logd

import (
	"sync"

	"github.com/go-logr/logr"
	"github.com/hashicorp/go-hclog"
	"k8s.io/klog/v2"
)

// Tessera logs through klog, which by default writes its own format to
// stderr at every level (a start-up of a new log prints "Initializing
// directory for POSIX log ... (this should only happen ONCE per log!)" and
// "Failed to fetch old checkpoint"). routeLibraryLogs sends it to the
// server's logger instead: its informational lines at debug level (they are
// the library's internals), its errors as errors. klog's logger is global:
// the first server of the process sets it.
var klogOnce sync.Once

func routeLibraryLogs(l hclog.Logger) {
	klogOnce.Do(func() {
		klog.SetLogger(logr.New(klogSink{l.Named("tessera")}))
	})
}

// klogSink is a logr.LogSink over an hclog.Logger.
type klogSink struct{ l hclog.Logger }

func (s klogSink) Init(logr.RuntimeInfo) {}

// Enabled passes klog's verbosity 0 only (its V(1) and above are traces
// of the library's inner loops).
func (s klogSink) Enabled(level int) bool { return level == 0 && s.l.IsDebug() }

func (s klogSink) Info(_ int, msg string, kv ...any) { s.l.Debug(msg, kv...) }

func (s klogSink) Error(err error, msg string, kv ...any) {
	s.l.Error(msg, append(kv, "error", err)...)
}

func (s klogSink) WithValues(kv ...any) logr.LogSink { return klogSink{s.l.With(kv...)} }

func (s klogSink) WithName(name string) logr.LogSink { return klogSink{s.l.Named(name)} }
