// Package logmon monitors an hvmon transparency log: it follows the log's
// signed checkpoints, proves each new one consistent with the last it
// saw, reads and authenticates the new entries, verifies each as an hvmon
// report and audits the reports' chains across the whole log, so that a
// report a host withheld from the log, a report deleted from a store
// after it was logged, or a rewritten log history is named.
package logmon
