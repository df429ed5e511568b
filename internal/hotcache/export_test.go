package hotcache

import "github.com/agentmonitor/agentmonitor/internal/metric"

// RecentEntry returns the recent entry Encode built, and how many samples it holds.
func RecentEntry(b *Batch) ([]byte, int) { return b.recent, b.values }

// AppendPoint is appendPoint, the reference the recent entry is checked against.
func AppendPoint(dst []byte, p *metric.Point, from int, base int64) []byte {
	return appendPoint(dst, p, from, base)
}

// ScanRecent returns the tags and value (JSON) of metricName's samples in a recent entry.
func ScanRecent(entry []byte, metricName string) (tags, values []string, err error) {
	samples, err := scanRecent(nil, string(entry), metricName, 0)
	for _, s := range samples {
		tags, values = append(tags, s.tags), append(values, s.value)
	}
	return tags, values, err
}
