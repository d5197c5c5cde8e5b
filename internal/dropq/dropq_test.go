package dropq

import (
	"context"
	"errors"
	"testing"
)

func TestQueue(t *testing.T) {
	q := New[int](3)
	if _, d, ok := q.Pop(); ok || d != 0 {
		t.Fatalf("empty queue: ok %v dropped %d", ok, d)
	}
	for i := 1; i <= 5; i++ {
		q.Push(i)
	}
	select {
	case <-q.Wake():
	default:
		t.Fatal("no wake-up after a push")
	}
	v, d, ok := q.Pop()
	if !ok || v != 3 || d != 2 {
		t.Fatalf("Pop = %d, dropped %d, %v; want 3, 2, true (1 and 2 dropped)", v, d, ok)
	}
	q.PushFront(v)
	for _, want := range []int{3, 4, 5} {
		if v, d, ok := q.Pop(); !ok || v != want || d != 0 {
			t.Fatalf("Pop = %d, %d, %v; want %d", v, d, ok, want)
		}
	}
	if _, _, ok := q.Pop(); ok {
		t.Fatal("queue not empty")
	}
}

// TestForward: items arrive in order; items dropped while the consumer
// was away are announced by one dropped(n) before the next item; Forward
// ends with its context.
func TestForward(t *testing.T) {
	q := New[int](2)
	for i := 1; i <= 5; i++ { // 1, 2 and 3 dropped
		q.Push(i)
	}
	out := make(chan int)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Forward(ctx, out, func(n int) int { return -n }) }()
	for _, want := range []int{-3, 4, 5} {
		if got := <-out; got != want {
			t.Fatalf("got %d, want %d", got, want)
		}
	}
	q.Push(6)
	if got := <-out; got != 6 {
		t.Fatalf("after waiting: got %d, want 6", got)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Forward returned %v, want context.Canceled", err)
	}
}
