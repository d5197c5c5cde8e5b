// Package logfleet holds the transparency log's fault tests and its
// throughput benchmarks, run against real components: `hvmon logd`
// processes built by the tests, MariaDB and an S3 gateway started by
// scripts/logstack.sh, and hosts that store reports in a FileStore while
// their outbox submits them (package host).
//
// The tests run only when HVMON_LOGSTACK_ENV names the env file of a
// running stack (scripts/logstack.sh start DIR writes DIR/env), so that
// `go test ./...` stays hermetic; the README's test command starts a stack
// and runs them. Each one breaks a component while hosts keep storing
// reports and checks, after recovery, that every stored report has a
// proof that verifies, that no report has two indexes in the tree (read
// back from the tiles), and that the tree is consistent with the
// checkpoints seen before the fault:
//
//   - TestPOSIXKill: kill -9 of the only log server (POSIX storage)
//     while submissions are in flight, restarted on the same directory;
//   - TestFleetKill: kill -9 of one of two log servers sharing one
//     MariaDB and one bucket, restarted;
//   - TestFleetDBRestart: MariaDB stopped and started again under load;
//   - TestFleetS3Down: the S3 gateway down for a minute.
//
// BenchmarkSubmitPOSIX and BenchmarkSubmitFleet (make bench-log) measure
// sustained submissions per second, submit → published proof latency and
// bytes stored per report with many concurrent HTTP clients.
package logfleet
