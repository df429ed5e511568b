package influx_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

func TestFieldKeys(t *testing.T) {
	ctx := context.Background()
	for _, withRP := range []bool{false, true} {
		t.Run(fmt.Sprintf("rp=%v", withRP), func(t *testing.T) {
			c, env := provisioned(t)
			if withRP {
				c = newClient(t, env.URL, env.Database+"/autogen", 30)
			}
			keys, err := c.FieldKeys(ctx)
			if err != nil || len(keys) != 0 {
				t.Fatalf("FieldKeys of an empty database = %v, %v; want none", keys, err)
			}
			now := time.Now().UnixNano()
			old := time.Now().Add(-72 * time.Hour).UnixNano() // another shard (1d shard groups)
			var b strings.Builder
			fmt.Fprintf(&b, "disk,agent=a free=1.5,used=2i,path=\"/\",ok=true %d\n", now)
			fmt.Fprintf(&b, "cpu,agent=a usage=3 %d\n", now)
			fmt.Fprintf(&b, "cpu,agent=a mixed=1i %d\n", old)
			fmt.Fprintf(&b, "cpu,agent=a mixed=\"s\" %d\n", now)
			if err := c.Write(ctx, []byte(b.String())); err != nil {
				t.Fatalf("Write: %v", err)
			}
			keys, err = c.FieldKeys(ctx)
			if err != nil {
				t.Fatalf("FieldKeys: %v", err)
			}
			var got []string
			for _, k := range keys {
				got = append(got, k.Measurement+"."+k.Field+":"+k.Type)
			}
			slices.Sort(got)
			want := []string{"cpu.mixed:integer", "cpu.mixed:string", "cpu.usage:float",
				"disk.free:float", "disk.ok:boolean", "disk.path:string", "disk.used:integer"}
			if !slices.Equal(got, want) {
				t.Errorf("FieldKeys = %v, want %v", got, want)
			}
		})
	}
}

func TestFieldKeysBeforeProvisioning(t *testing.T) {
	env := testenv.Influx(t)
	c := newClient(t, env.URL, env.Database, 30)
	if keys, err := c.FieldKeys(context.Background()); err != nil || len(keys) != 0 {
		t.Fatalf("FieldKeys of a database not created yet = %v, %v; want none and no error", keys, err)
	}
}

func TestFieldKeysUnreachable(t *testing.T) {
	c := newClient(t, closedURL(t), "nothing", 30)
	if _, err := c.FieldKeys(context.Background()); err == nil {
		t.Fatal("FieldKeys with no server = nil error, want one")
	}
}
