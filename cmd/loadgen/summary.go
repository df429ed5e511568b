package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// The labels --mode summary expects (--mode bench gives its runs these).
const (
	labelDirect  = "direct"       // agent batches straight to InfluxDB: the baseline
	labelGateway = "gateway"      // agent batches through the gateway
	labelHalf    = "gateway-half" // the same paced at half the gateway run's rate
	labelE2E     = "e2e"          // through the gateway, with --verify
	labelE2EBig  = "e2e-big"      // the same with Telegraf-sized batches (--batch-points 1000)
	labelCeiling = "ceiling"      // InfluxDB's own ceiling
	// labelTelegraf is the agent batches through a Telegraf relay (--peer telegraf).
	labelTelegraf = "telegraf"
	// labelDirectBig is the e2e-big run's requests sent straight to InfluxDB: the ceiling for
	// the same writes.
	labelDirectBig = "direct-big"
	// labelReadsIngest is the ingest at half load while the latest-values read is measured.
	labelReadsIngest = "reads-ingest"
)

// The budget of DESIGN.md ("Performance budget").
const (
	budgetGatewayRatio  = 1.0  // gateway req/s ÷ direct req/s, at least
	budgetTelegrafRatio = 0.5  // gateway req/s ÷ Telegraf relay req/s, at least
	budgetGatewayP99    = 10.0 // ms, at most
	budgetE2ERatio      = 0.80 // end-to-end values/s ÷ ceiling values/s, at least
	budgetReadP99       = 1.0  // ms, latest-values read handler p99 at 1k/s, at most
	budgetAlertP99      = 50.0 // ms, sample → WebSocket, at most
)

// summary is --mode summary: it reads the reports of a bench (one JSON file per run, each with its
// --round and --label) and prints the medians per label, the per-round ratios against the budget,
// and, from cpu.tsv when present, the cores each process used during each kind of run.
type summary struct {
	Runs   map[string]labelSummary `json:"runs"`
	Ratios []ratio                 `json:"ratios"`
	Lost   int64                   `json:"lost_points"`
	// Incomplete counts --verify runs that timed out before InfluxDB held every acked point.
	Incomplete int `json:"incomplete_verifies"`
	// CPUCores is the cores each process used during each kind of run (median over rounds;
	// label -> process -> cores), from cpu.tsv.
	CPUCores map[string]map[string]float64 `json:"cpu_cores,omitempty"`
	// CPUPerRequestMS is the CPU milliseconds each process used per 2xx request (median cores ÷
	// median req/s).
	CPUPerRequestMS map[string]map[string]float64 `json:"cpu_ms_per_request,omitempty"`
}

type labelSummary struct {
	Runs         int     `json:"runs"`
	RequestsPerS float64 `json:"requests_per_s"` // medians over the runs
	PointsPerS   float64 `json:"points_per_s"`
	ValuesPerS   float64 `json:"values_per_s"`
	P50          float64 `json:"p50_ms"`
	P90          float64 `json:"p90_ms"`
	P99          float64 `json:"p99_ms"`
	Non2xx       int64   `json:"non_2xx"` // summed over the runs
	E2EValuesPS  float64 `json:"e2e_values_per_s,omitempty"`
	DrainS       float64 `json:"drain_s,omitempty"`
}

type ratio struct {
	Name     string    `json:"name"`
	PerRound []float64 `json:"per_round"`
	Median   float64   `json:"median"`
	Budget   string    `json:"budget"`
	Met      bool      `json:"met"`
}

func runSummary(dir string, strict bool, stdout io.Writer) (int, error) {
	s, err := summarize(dir)
	if err != nil {
		return 1, err
	}
	printSummary(stdout, *s, dir)
	if b, err := json.MarshalIndent(s, "", "  "); err == nil {
		_ = os.WriteFile(filepath.Join(dir, "summary.json"), b, 0o644)
	}
	return summaryCode(s, strict), nil
}

// summaryCode is the exit code of a summary: 3 when a point was lost, 4 with strict when a budget
// is missed.
func summaryCode(s *summary, strict bool) int {
	switch {
	case s.Lost > 0 || s.Incomplete > 0:
		return 3
	case strict:
		for _, r := range s.Ratios {
			if !r.Met {
				return 4
			}
		}
	}
	return 0
}

// summarize reads the reports of dir (one JSON file per run, each with its --round and --label)
// and cpu.tsv.
func summarize(dir string) (*summary, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	byLabel := map[string]map[int]*report{} // label -> round -> report
	for _, f := range files {
		if filepath.Base(f) == "summary.json" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var r report
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("reading %s: %w", f, err)
		}
		if byLabel[r.Label] == nil {
			byLabel[r.Label] = map[int]*report{}
		}
		byLabel[r.Label][r.Round] = &r
	}
	if len(byLabel) == 0 {
		return nil, fmt.Errorf("no reports (*.json) in %s", dir)
	}

	s := summary{Runs: map[string]labelSummary{}}
	for label, rounds := range byLabel {
		var rps, pps, vps, p50, p90, p99, e2e, drain []float64
		var ls labelSummary
		for _, r := range rounds {
			ls.Runs++
			rps, pps, vps = append(rps, r.RequestsPerS), append(pps, r.PointsPerS), append(vps, r.ValuesPerS)
			p50, p90, p99 = append(p50, r.LatencyMS.P50), append(p90, r.LatencyMS.P90), append(p99, r.LatencyMS.P99)
			for _, n := range r.Non2xx {
				ls.Non2xx += n
			}
			if v := r.Verify; v != nil {
				s.Lost += v.LostPoints
				if !v.Complete {
					s.Incomplete++
					continue
				}
				e2e, drain = append(e2e, v.ValuesPerS), append(drain, v.DrainS)
			}
		}
		ls.RequestsPerS, ls.PointsPerS, ls.ValuesPerS = median(rps), median(pps), median(vps)
		ls.P50, ls.P90, ls.P99 = median(p50), median(p90), median(p99)
		ls.E2EValuesPS, ls.DrainS = median(e2e), median(drain)
		s.Runs[label] = ls
	}

	// Ratios per round: the runs of one round ran minutes apart at most, so a round's ratio is
	// fairer on a noisy machine than a ratio of medians taken over different times.
	perRound := func(num, den string, f func(n, d *report) (float64, bool)) []float64 {
		var out []float64
		for _, round := range slices.Sorted(maps.Keys(byLabel[num])) {
			n, d := byLabel[num][round], byLabel[den][round]
			if d == nil && num == den {
				d = n
			}
			if d == nil {
				continue
			}
			if v, ok := f(n, d); ok {
				out = append(out, v)
			}
		}
		return out
	}
	add := func(name, budget string, vals []float64, met func(float64) bool) {
		if len(vals) == 0 {
			return
		}
		m := median(vals)
		s.Ratios = append(s.Ratios, ratio{Name: name, PerRound: vals, Median: m, Budget: budget, Met: met(m)})
	}
	add("gateway req/s ÷ Telegraf relay req/s", fmt.Sprintf("≥ %g×", budgetTelegrafRatio),
		perRound(labelGateway, labelTelegraf, func(n, d *report) (float64, bool) {
			return n.RequestsPerS / d.RequestsPerS, d.RequestsPerS > 0
		}), func(m float64) bool { return m >= budgetTelegrafRatio })
	add("gateway req/s ÷ direct-to-InfluxDB req/s", fmt.Sprintf("≥ %g×", budgetGatewayRatio),
		perRound(labelGateway, labelDirect, func(n, d *report) (float64, bool) {
			return n.RequestsPerS / d.RequestsPerS, d.RequestsPerS > 0
		}), func(m float64) bool { return m >= budgetGatewayRatio })
	p99 := func(n, _ *report) (float64, bool) { return n.LatencyMS.P99, n.OK > 0 }
	add("gateway p99 latency, saturated (ms)", fmt.Sprintf("≤ %g ms", budgetGatewayP99),
		perRound(labelGateway, labelGateway, p99), func(m float64) bool { return m <= budgetGatewayP99 })
	add("gateway p99 latency, half load (ms)", fmt.Sprintf("≤ %g ms", budgetGatewayP99),
		perRound(labelHalf, labelHalf, p99), func(m float64) bool { return m <= budgetGatewayP99 })
	e2e := func(n, d *report) (float64, bool) {
		if n.Verify == nil || !n.Verify.Complete || d.ValuesPerS <= 0 {
			return 0, false
		}
		return n.Verify.ValuesPerS / d.ValuesPerS, true
	}
	for _, l := range []string{labelE2E, labelE2EBig} {
		if _, ok := byLabel[l]; !ok {
			continue
		}
		var points int
		for _, r := range byLabel[l] {
			points = r.PointsPerReq
		}
		name := fmt.Sprintf("end-to-end values/s ÷ ceiling (%d-point requests)", points)
		add(name, fmt.Sprintf("≥ %g%%", budgetE2ERatio*100), perRound(l, labelCeiling, e2e),
			func(m float64) bool { return m >= budgetE2ERatio })
		if l == labelE2EBig {
			// The same 1000-point writes sent straight to InfluxDB, counted to the last point.
			direct := func(n, d *report) (float64, bool) {
				if n.Verify == nil || !n.Verify.Complete || d.Verify == nil || !d.Verify.Complete || d.Verify.ValuesPerS <= 0 {
					return 0, false
				}
				return n.Verify.ValuesPerS / d.Verify.ValuesPerS, true
			}
			add(fmt.Sprintf("end-to-end values/s ÷ direct (%d-point requests)", points), fmt.Sprintf("≥ %g%%", budgetE2ERatio*100),
				perRound(l, labelDirectBig, direct), func(m float64) bool { return m >= budgetE2ERatio })
		}
	}

	if cpu := readCPU(filepath.Join(dir, "cpu.tsv")); len(cpu) > 0 {
		s.CPUCores, s.CPUPerRequestMS = map[string]map[string]float64{}, map[string]map[string]float64{}
		for label, byProc := range cpu {
			s.CPUCores[label], s.CPUPerRequestMS[label] = map[string]float64{}, map[string]float64{}
			for p, v := range byProc {
				cores := median(v)
				s.CPUCores[label][p] = cores
				if rps := s.Runs[label].RequestsPerS; rps > 0 && p != "others" {
					s.CPUPerRequestMS[label][p] = cores / rps * 1000
				}
			}
		}
	}
	return &s, nil
}

func printSummary(w io.Writer, s summary, dir string) {
	fmt.Fprintln(w, "Medians per kind of run:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "run\truns\treq/s\tpoints/s\tvalues/s\tp50 ms\tp90 ms\tp99 ms\tnon-2xx\te2e values/s\tdrain s\t")
	order := []string{labelDirect, labelTelegraf, labelGateway, labelHalf, labelReadsIngest, labelE2E, labelE2EBig, labelDirectBig, labelCeiling}
	for _, l := range slices.Sorted(maps.Keys(s.Runs)) {
		if !slices.Contains(order, l) {
			order = append(order, l)
		}
	}
	for _, l := range order {
		r, ok := s.Runs[l]
		if !ok {
			continue
		}
		e2e, drain := "", ""
		if r.E2EValuesPS > 0 {
			e2e, drain = fmt.Sprintf("%.0f", r.E2EValuesPS), fmt.Sprintf("%.1f", r.DrainS)
		}
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.0f\t%.0f\t%.2f\t%.2f\t%.2f\t%d\t%s\t%s\t\n",
			l, r.Runs, r.RequestsPerS, r.PointsPerS, r.ValuesPerS, r.P50, r.P90, r.P99, r.Non2xx, e2e, drain)
	}
	tw.Flush()

	fmt.Fprintln(w, "\nAgainst the budget (DESIGN.md; median of the per-round values):")
	for _, r := range s.Ratios {
		verdict := "MET"
		if !r.Met {
			verdict = "MISSED"
		}
		rounds := make([]string, len(r.PerRound))
		for i, v := range r.PerRound {
			rounds[i] = strconv.FormatFloat(v, 'f', 2, 64)
		}
		fmt.Fprintf(w, "  %-52s %8.2f   budget %-8s %-6s  rounds: %s\n", r.Name, r.Median, r.Budget, verdict, strings.Join(rounds, ", "))
	}
	lost := "MET"
	if s.Lost > 0 || s.Incomplete > 0 {
		lost = "MISSED"
	}
	fmt.Fprintf(w, "  %-52s %8d   budget %-8s %-6s  (incomplete verifications: %d)\n", "acknowledged points lost", s.Lost, "0", lost, s.Incomplete)

	if cpu := readCPU(filepath.Join(dir, "cpu.tsv")); len(cpu) > 0 {
		fmt.Fprintln(w, "\nCPU used during each kind of run, in cores (median; 2 cores in all):")
		procs := map[string]bool{}
		for _, byProc := range cpu {
			for p := range byProc {
				procs[p] = true
			}
		}
		names := slices.Sorted(maps.Keys(procs))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "run\t%s\t\n", strings.Join(names, "\t"))
		for _, l := range order {
			byProc, ok := cpu[l]
			if !ok {
				continue
			}
			cells := make([]string, len(names))
			for i, p := range names {
				cells[i] = "-"
				if v, ok := byProc[p]; ok {
					cells[i] = fmt.Sprintf("%.2f", median(v))
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t\n", l, strings.Join(cells, "\t"))
		}
		tw.Flush()
		fmt.Fprintln(w, "\nCPU milliseconds per 2xx request at saturation (median cores ÷ median req/s):")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "run\t%s\t\n", strings.Join(names, "\t"))
		for _, l := range []string{labelDirect, labelTelegraf, labelGateway} {
			per, ok := s.CPUPerRequestMS[l]
			if !ok {
				continue
			}
			cells := make([]string, len(names))
			for i, p := range names {
				cells[i] = "-"
				if v, ok := per[p]; ok {
					cells[i] = fmt.Sprintf("%.3f", v)
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t\n", l, strings.Join(cells, "\t"))
		}
		tw.Flush()
		var others []float64
		for _, byProc := range cpu {
			others = append(others, byProc["others"]...)
		}
		if m := median(others); m > 0.25 {
			fmt.Fprintf(w, "Note: other work took %.2f cores (median) while measuring: the absolute rates are low by that much;\n"+
				"compare the per-round ratios, and rerun on a quieter machine for the absolute numbers.\n", m)
		}
	}
}

// readCPU reads lines "round label process cpu_seconds wall_seconds" into cores per label and
// process, one value per round.
func readCPU(path string) map[string]map[string][]float64 {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	out := map[string]map[string][]float64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) != 5 {
			continue
		}
		cpu, err1 := strconv.ParseFloat(fs[3], 64)
		wall, err2 := strconv.ParseFloat(fs[4], 64)
		if err1 != nil || err2 != nil || wall <= 0 {
			continue
		}
		if out[fs[1]] == nil {
			out[fs[1]] = map[string][]float64{}
		}
		out[fs[1]][fs[2]] = append(out[fs[1]][fs[2]], cpu/wall)
	}
	return out
}

// median returns the median of vs (the mean of the middle two for an even count), 0 for none.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
