package ingestredis

import "github.com/agentmonitor/agentmonitor/internal/stream"

// HoldShard takes every free script-call slot of agentID's shard, as calls in flight would, so
// that appends to the shard queue. queued counts the queued appends; release passes each held
// slot on (passSlot), which sends the queue in groups.
func HoldShard(a *Appender, agentID string) (queued func() int, release func()) {
	q := &a.queues[stream.ShardFor(agentID, a.cfg.Shards)]
	q.mu.Lock()
	held := a.cfg.Group.InFlight - q.busy
	q.busy = a.cfg.Group.InFlight
	q.mu.Unlock()
	queued = func() int {
		q.mu.Lock()
		defer q.mu.Unlock()
		return len(q.pending)
	}
	release = func() {
		for range held {
			a.passSlot(q)
		}
	}
	return queued, release
}
