package metric

import (
	"fmt"
	"strings"
	"time"
)

// testNow is the "now" of every test: 2026-11-25T18:00:00Z.
var testNow = time.Date(2026, 11, 25, 18, 0, 0, 0, time.UTC)

const testAgent = "3f2a9c4e-8d1b-4b7a-9e55-0c6d2f1a7b30"

// agentBatchJSON is a typical agent request: 6 points, 30 values.
var agentBatchJSON = []byte(`{"points":[
{"measurement":"cpu","tags":{"host":"web-1","cpu":"cpu-total"},"fields":{"usage_user":12.5,"usage_system":3.25,"usage_idle":83.1,"usage_iowait":0.4,"usage_percent":16.9},"time":"2026-11-25T17:59:50Z"},
{"measurement":"mem","tags":{"host":"web-1"},"fields":{"total":16777216000,"used":8388608000,"free":4194304000,"available":8388608000,"used_percent":50.0},"time":"2026-11-25T17:59:50Z"},
{"measurement":"disk","tags":{"host":"web-1","path":"/","device":"sda1"},"fields":{"total":512000000000,"used":256000000000,"free":256000000000,"used_percent":50.0,"inodes_used":1200000},"time":"2026-11-25T17:59:50Z"},
{"measurement":"diskio","tags":{"host":"web-1","name":"sda"},"fields":{"reads":123456,"writes":654321,"read_bytes":9876543210,"write_bytes":1234567890,"io_time":4567},"time":"2026-11-25T17:59:50Z"},
{"measurement":"net","tags":{"host":"web-1","interface":"eth0"},"fields":{"bytes_sent":123456789,"bytes_recv":987654321,"packets_sent":123456,"packets_recv":654321,"err_in":0},"time":"2026-11-25T17:59:50Z"},
{"measurement":"system","tags":{"host":"web-1"},"fields":{"load1":0.52,"load5":0.61,"load15":0.7,"uptime":864000,"n_cpus":8},"time":"2026-11-25T17:59:50Z"}
]}`)

// agentBatchLP is the same batch as Telegraf would send it (precision s).
var agentBatchLP = []byte(strings.Join([]string{
	"cpu,cpu=cpu-total,host=web-1 usage_user=12.5,usage_system=3.25,usage_idle=83.1,usage_iowait=0.4,usage_percent=16.9 1795629590",
	"mem,host=web-1 total=16777216000i,used=8388608000i,free=4194304000i,available=8388608000i,used_percent=50 1795629590",
	"disk,device=sda1,host=web-1,path=/ total=512000000000i,used=256000000000i,free=256000000000i,used_percent=50,inodes_used=1200000i 1795629590",
	"diskio,host=web-1,name=sda reads=123456i,writes=654321i,read_bytes=9876543210i,write_bytes=1234567890i,io_time=4567i 1795629590",
	"net,host=web-1,interface=eth0 bytes_sent=123456789i,bytes_recv=987654321i,packets_sent=123456i,packets_recv=654321i,err_in=0i 1795629590",
	"system,host=web-1 load1=0.52,load5=0.61,load15=0.7,uptime=864000i,n_cpus=8i 1795629590",
}, "\n") + "\n")

// withAgent returns a deep copy of points with the tag agent=id in its sorted place,
// replacing any agent tag: what AppendLineProtocol then DecodeLineProtocol must give.
func withAgent(points []Point, id string) []Point {
	out := make([]Point, len(points))
	for i, p := range points {
		q := p
		q.Tags = nil
		done := false
		for _, t := range p.Tags {
			if !done && t.Key >= "agent" {
				q.Tags = append(q.Tags, Tag{Key: "agent", Value: id})
				done = true
			}
			if t.Key != "agent" {
				q.Tags = append(q.Tags, t)
			}
		}
		if !done {
			q.Tags = append(q.Tags, Tag{Key: "agent", Value: id})
		}
		q.Fields = append([]Field(nil), p.Fields...)
		out[i] = q
	}
	return out
}

func dump(points []Point) string {
	var b strings.Builder
	for _, p := range points {
		fmt.Fprintf(&b, "%q %q %+v %d\n", p.Measurement, p.Tags, p.Fields, p.Time)
	}
	return b.String()
}
