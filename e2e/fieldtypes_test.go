package e2e_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/stream"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

// drainedAndNoDeadLetters waits until the influx-writer group has read and acknowledged every
// entry of the metrics streams, then checks that the dead-letter stream is empty.
func (s *system) drainedAndNoDeadLetters(t *testing.T) {
	t.Helper()
	testenv.Eventually(t, 60*time.Second, func() string {
		for _, key := range stream.StreamKeys(s.prefix, 2) {
			groups, err := s.rdb.XInfoGroups(context.Background(), key).Result()
			if err != nil {
				return fmt.Sprintf("XINFO GROUPS %s: %v", key, err)
			}
			found := false
			for _, g := range groups {
				if g.Name != "influx-writer" {
					continue
				}
				found = true
				if g.Lag != 0 || g.Pending != 0 {
					return fmt.Sprintf("%s: influx-writer lag %d, pending %d; want 0 and 0", key, g.Lag, g.Pending)
				}
			}
			if !found {
				return fmt.Sprintf("%s: no influx-writer group yet", key)
			}
		}
		return ""
	})
	entries, err := s.rdb.XRange(context.Background(), stream.DeadLetterKey(s.prefix), "-", "+").Result()
	if err != nil {
		t.Fatalf("XRANGE dead letters: %v", err)
	}
	for _, e := range entries {
		t.Errorf("dead letter from accepted data: %v", e.Values)
	}
}

// post sends body to the JSON route (json) or to /api/v2/write as agent a.
func (s *system) post(a agent, json bool, body string) (int, string) {
	s.t.Helper()
	if json {
		code, b, _ := s.do("POST", "/api/v1/agents/"+a.ID+"/metrics", "Bearer "+a.APIKey, []byte(body))
		return code, string(b)
	}
	code, b, _ := s.do("POST", "/api/v2/write", "Token "+a.APIKey, []byte(body), "Content-Type", "text/plain")
	return code, string(b)
}

// Agent A's write of a field with another type is refused with 400 naming the field and its
// type, and agent B, whose write fixed the type, keeps every point: none is dead-lettered.
func TestFieldTypeConflictKeepsOtherAgentsPoints(t *testing.T) {
	s := newSystem(t, options{writers: 1})
	a, b := s.registerAgent("types-a"), s.registerAgent("types-b")
	start := time.Now().Add(-time.Minute)
	l := newLedger()
	s.load(b, 1, start, l, nil) // fixes cpu…procs fields a…e as floats
	if l.total() != 6 {
		t.Fatalf("agent B's first batch: %d points acknowledged (other answers %v), want 6", l.total(), l.other)
	}

	for _, tc := range []struct {
		json       bool
		body, want string
	}{
		{true, `{"points":[{"measurement":"disk","tags":{"host":"a"},"fields":{"a":"full"}}]}`,
			`point 0: field \"a\" of measurement \"disk\" is float; this point sends string`},
		{false, "disk,host=a b=1.5\ndisk,host=a a=3i", `line 2: field \"a\" of measurement \"disk\" is float; this point sends integer`},
		{true, `{"points":[{"measurement":"disk","fields":{"agent":"` + b.ID + `"}}]}`, `point 0: field key \"agent\" is reserved`},
	} {
		if code, body := s.post(a, tc.json, tc.body); code != http.StatusBadRequest || !strings.Contains(body, tc.want) {
			t.Errorf("agent A posts %q = %d %s, want 400 containing %s", tc.body, code, body, tc.want)
		}
	}

	s.load(b, 20, start.Add(time.Millisecond), l, nil)
	if l.total() != 6*21 {
		t.Fatalf("agent B: %d points acknowledged (other answers %v), want %d", l.total(), l.other, 6*21)
	}
	s.waitAllPoints(t, b.ID, 6*21, 60*time.Second)
	s.drainedAndNoDeadLetters(t)
	if n := s.countPoints(a.ID); n != 0 {
		t.Errorf("InfluxDB holds %d points of agent A, want 0 (every request was refused)", n)
	}
}

// The property a 2xx promises: for every request the gateway answered 2xx, every point is in
// InfluxDB after the drain, and no dead letter comes from accepted data; over a mix of valid and
// type-conflicting requests from several agents, in JSON and line protocol, including racing
// first writes of new fields with different types.
func TestFieldTypeEveryAcceptedPointLands(t *testing.T) {
	s := newSystem(t, options{writers: 1})
	agents := []agent{s.registerAgent("mix-0"), s.registerAgent("mix-1"), s.registerAgent("mix-2")}
	base := time.Now().Add(-2 * time.Minute).UnixNano()

	// The types of disk: free float, used integer, path string, ok boolean.
	if code, body := s.post(agents[0], false, fmt.Sprintf("disk,host=h free=1.5,used=2i,path=\"/\",ok=t %d", base)); code != http.StatusNoContent {
		t.Fatalf("first write = %d %s, want 204", code, body)
	}
	acked := make([]int, len(agents))
	acked[0] = 1

	// request returns the body of request i of agent k: each point at its own time, so that
	// every accepted point is a distinct point in InfluxDB. Kinds rotate through valid and
	// conflicting requests; a conflicting request also holds valid points, none of which may land.
	request := func(k, i int) (json bool, body string, points int, valid bool) {
		ts := func(p int) int64 { return base + int64(k)<<32 + int64(i)<<8 + int64(p) + 1 }
		race := fmt.Sprintf("r%d", i/7) // a new field that every agent writes at about the same time
		switch i % 7 {
		case 0: // valid JSON: integral numbers for the integer field become integers
			return true, fmt.Sprintf(`{"points":[{"measurement":"disk","tags":{"host":"h"},"fields":{"free":%d.25,"used":%d,"path":"/x","ok":false},"time":%d},`+
				`{"measurement":"disk","tags":{"host":"h"},"fields":{"used":7},"time":%d}]}`, i, i, ts(0), ts(1)), 2, true
		case 1: // valid line protocol
			return false, fmt.Sprintf("disk,host=h free=%d,used=%di %d\ndisk,host=h ok=true %d", i, i, ts(0), ts(1)), 2, true
		case 2: // JSON: a string for the float field, after a valid point
			return true, fmt.Sprintf(`{"points":[{"measurement":"disk","fields":{"free":1},"time":%d},{"measurement":"disk","fields":{"free":"full"},"time":%d}]}`, ts(0), ts(1)), 2, false
		case 3: // line protocol: a float for the integer field
			return false, fmt.Sprintf("disk used=1i %d\ndisk used=2.5 %d", ts(0), ts(1)), 2, false
		case 4: // JSON: a fractional number for the integer field
			return true, fmt.Sprintf(`{"points":[{"measurement":"disk","fields":{"used":1.5},"time":%d}]}`, ts(0)), 1, false
		case 5: // a new field, first written by every agent with a different type at once
			types := []string{"1.5", `"s"`, "true"}
			return false, fmt.Sprintf("race,host=h %s=%s %d", race, types[k%len(types)], ts(0)), 1, true
		default: // a field named agent
			return true, fmt.Sprintf(`{"points":[{"measurement":"disk","fields":{"agent":"x","free":2},"time":%d}]}`, ts(0)), 1, false
		}
	}

	const perAgent = 42
	var wg sync.WaitGroup
	var mu sync.Mutex
	raceWinners := map[string]int{} // race field → accepted requests
	for k := range agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perAgent {
				json, body, points, valid := request(k, i)
				code, answer := s.post(agents[k], json, body)
				mu.Lock()
				switch {
				case code == http.StatusNoContent:
					acked[k] += points
					if !valid {
						t.Errorf("agent %d request %d %q = 204, want 400", k, i, body)
					}
					if i%7 == 5 {
						raceWinners[fmt.Sprintf("r%d", i/7)]++
					}
				case code == http.StatusBadRequest && (strings.Contains(answer, "this point sends") || strings.Contains(answer, `field key \"agent\" is reserved`)):
					if valid && i%7 != 5 {
						t.Errorf("agent %d request %d %q = %d %s, want 204", k, i, body, code, answer)
					}
				default:
					t.Errorf("agent %d request %d %q = %d %s, want 204 or a 400 naming the field", k, i, body, code, answer)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	// Every racing field was accepted for exactly one agent: the three agents' types differ, and
	// exactly one type wins.
	if len(raceWinners) != perAgent/7 {
		t.Errorf("race fields accepted at all: %v, want all %d", raceWinners, perAgent/7)
	}
	for f, n := range raceWinners {
		if n != 1 {
			t.Errorf("race field %s accepted %d times, want 1 (one type wins)", f, n)
		}
	}

	for k, a := range agents {
		s.waitAllPoints(t, a.ID, acked[k], 60*time.Second)
	}
	s.drainedAndNoDeadLetters(t)
}
