package health

import (
	"context"
)

// A notify command runs on every change to up or down, without holding up the checks: each
// target's commands run one after another, in the order of its changes, on a goroutine that
// exists while some are waiting. Different targets' commands run side by side.

type notifyQueue struct {
	jobs []notifyJob
}

type notifyJob struct {
	argv []string
	env  []string
}

// notifyLocked queues ev's notify command; m.mu is held.
func (m *Manager) notifyLocked(ev Event, mo *monitor) {
	port := mo.spec.Port
	if port == 0 {
		port = mo.target.Server.Port()
	}
	env := append(targetEnv(mo.target, port),
		EnvEvent+"="+ev.State.String(),
		EnvPrevious+"="+ev.Prev.String(),
		EnvReason+"="+ev.Reason,
	)
	job := notifyJob{argv: mo.spec.Notify, env: env}
	q, running := m.notifies[mo.target]
	if !running {
		q = &notifyQueue{}
		m.notifies[mo.target] = q
		m.wg.Add(1)
		go m.runNotify(mo.target, q)
	}
	if len(q.jobs) == maxQueuedNotify {
		m.logf("health: %s: notify commands are slower than its changes of state; dropping the oldest waiting one", mo.target)
		q.jobs = q.jobs[1:]
	}
	q.jobs = append(q.jobs, job)
}

// runNotify runs t's queued notify commands until none is left, or until Close.
func (m *Manager) runNotify(t Target, q *notifyQueue) {
	defer m.wg.Done()
	for {
		m.mu.Lock()
		if len(q.jobs) == 0 || m.ctx.Err() != nil {
			delete(m.notifies, t)
			m.mu.Unlock()
			return
		}
		job := q.jobs[0]
		q.jobs = q.jobs[1:]
		m.mu.Unlock()

		ctx, cancel := context.WithTimeout(m.ctx, m.notifyTimeout)
		err := runGroup(ctx, job.argv, job.env)
		cancel()
		if err != nil && m.ctx.Err() == nil {
			m.logf("health: %s: notify command failed: %v", t, err)
		}
	}
}
