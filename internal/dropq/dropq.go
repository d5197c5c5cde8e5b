// Package dropq is a bounded FIFO queue whose producer never blocks: when
// the queue is full, a push drops the oldest item and counts it, and the
// consumer learns the count with its next Pop. qmp's event subscribers and
// the libvirt watcher's per-domain streams use it, so that a slow reader
// loses old events, says how many, and never stalls the producer.
package dropq

import (
	"context"
	"sync"
)

// Queue is a bounded drop-oldest FIFO. The zero value is not usable; call
// New.
type Queue[T any] struct {
	mu      sync.Mutex
	items   []T
	max     int
	dropped int
	wake    chan struct{}
}

// New returns an empty queue that holds at most max items.
func New[T any](max int) *Queue[T] {
	return &Queue[T]{max: max, wake: make(chan struct{}, 1)}
}

// Push appends v, dropping the oldest item when the queue is full. It
// never blocks.
func (q *Queue[T]) Push(v T) {
	q.mu.Lock()
	if len(q.items) >= q.max {
		var zero T
		q.items[0] = zero
		q.items = q.items[1:]
		q.dropped++
	}
	q.items = append(q.items, v)
	q.mu.Unlock()
	q.signal()
}

// PushFront puts back an item that was popped but not delivered, so that
// it comes out next. It may exceed the bound by that one item.
func (q *Queue[T]) PushFront(v T) {
	q.mu.Lock()
	q.items = append([]T{v}, q.items...)
	q.mu.Unlock()
	q.signal()
}

// Pop takes the oldest item (ok is false when the queue is empty) and the
// number of items dropped since the previous Pop.
func (q *Queue[T]) Pop() (v T, dropped int, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	dropped, q.dropped = q.dropped, 0
	if len(q.items) == 0 {
		return v, dropped, false
	}
	v = q.items[0]
	var zero T
	q.items[0] = zero
	q.items = q.items[1:]
	return v, dropped, true
}

// Wake is signalled (without blocking) after every push; a consumer that
// found the queue empty waits on it.
func (q *Queue[T]) Wake() <-chan struct{} { return q.wake }

func (q *Queue[T]) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Forward delivers the queue to out, in order, until ctx ends, and then
// returns ctx's error. Before an item that follows drops, it sends
// dropped(n) with the number of items lost, so the consumer knows it
// missed some. A consumer that stops reading blocks only Forward, never
// the producer.
func (q *Queue[T]) Forward(ctx context.Context, out chan<- T, dropped func(n int) T) error {
	send := func(v T) bool {
		select {
		case out <- v:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		v, n, ok := q.Pop()
		if n > 0 && !send(dropped(n)) {
			return ctx.Err()
		}
		if ok {
			if !send(v) {
				return ctx.Err()
			}
			continue
		}
		if n > 0 {
			continue
		}
		select {
		case <-q.Wake():
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
