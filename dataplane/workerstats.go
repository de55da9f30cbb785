package dataplane

// WorkerStats sums the counters the given workers last published (Worker.Publish), for callers
// that run workers themselves, such as the offline benchmark harness, instead of through an Engine.
func WorkerStats(ws ...*Worker) Stats {
	return (&Engine{workers: ws}).Stats()
}

// Conns returns the number of live connections in the worker's connection table and its
// capacity. Like every Worker method it must be called from the worker's own goroutine.
func (w *Worker) Conns() (live, capacity int) {
	return w.ct.Len(), w.ct.Cap()
}
