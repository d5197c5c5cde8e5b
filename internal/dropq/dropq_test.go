package dropq

import "testing"

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
