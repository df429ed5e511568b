package hotcache

import "github.com/agentmonitor/agentmonitor/internal/metric"

// RecentEntry returns the recent entry Encode built, and how many samples it holds.
func RecentEntry(b *Batch) ([]byte, int) { return b.recent, b.values }

// AppendPoint is appendPoint, the reference the recent entry is checked against.
func AppendPoint(dst []byte, p *metric.Point, from int, base int64) []byte {
	return appendPoint(dst, p, from, base)
}
