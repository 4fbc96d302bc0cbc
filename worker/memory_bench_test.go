package worker_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// pssWorkers is how many workers BenchmarkPSS runs at once: their shared pages (the
// binary, the libraries, the model) are split between them in PSS.
const pssWorkers = 4

// BenchmarkPSS measures each worker's proportional set size beyond the model with
// pssWorkers workers running: first after one generation and one /metrics scrape each,
// then after busyRounds more of both, when the Go heap holds the garbage of many
// requests (it is collected only at the GC's 4 MB minimum goal). PSS counts a page
// shared by n processes as 1/n in each, so the one beekeeper binary every worker maps is
// counted once across them, not once per worker as RSS does.
func BenchmarkPSS(b *testing.B) {
	if _, err := os.Stat("/proc/self/smaps_rollup"); err != nil {
		b.Skip("needs Linux's /proc/PID/smaps_rollup")
	}
	const busyRounds = 30
	model := testenv.Model(b)
	body, _ := json.Marshal(map[string]any{"prompt": storyPrompt, "max_tokens": benchTokens,
		"temperature": 0, "ignore_eos": true, "stream": true})
	var workers []*testenv.Process
	for range pssWorkers {
		w := testenv.StartWorker(b)
		requestOnce(b, w.URL, body, true)
		scrapeOnce(b, w.URL)
		workers = append(workers, w)
	}
	bin, err := filepath.EvalSymlinks(testenv.Binary(b))
	if err != nil {
		b.Fatal(err)
	}
	measure := func() (sum, worst smapsSplit) {
		for _, w := range workers {
			s := readSmaps(b, w.Cmd.Process.Pid, bin, model)
			sum.add(s)
			if s.beyondModel() > worst.beyondModel() {
				worst = s
			}
		}
		return sum, worst
	}
	var sum, worst, busy smapsSplit
	for b.Loop() {
		sum, worst = measure()
	}
	b.StopTimer()
	for _, w := range workers {
		for range busyRounds {
			requestOnce(b, w.URL, body, true)
			scrapeOnce(b, w.URL)
		}
	}
	busy, _ = measure()
	mb := func(kb int64) float64 { return float64(kb) / 1024 / pssWorkers }
	b.ReportMetric(mb(sum.beyondModel()), "pss-MB/worker")
	b.ReportMetric(float64(worst.beyondModel())/1024, "max-pss-MB/worker")
	b.ReportMetric(mb(sum.anon), "anon-pss-MB/worker")
	b.ReportMetric(mb(sum.binary), "binary-pss-MB/worker")
	b.ReportMetric(mb(sum.libs), "libs-pss-MB/worker")
	b.ReportMetric(mb(sum.otherFile), "other-file-pss-MB/worker")
	b.ReportMetric(mb(sum.model), "model-pss-MB/worker")
	b.ReportMetric(mb(sum.rss-sum.modelRss), "rss-beyond-model-MB/worker")
	b.ReportMetric(mb(busy.beyondModel()), "busy-pss-MB/worker")
	b.ReportMetric(mb(busy.anon), "busy-anon-pss-MB/worker")
}

// scrapeOnce reads a worker's /metrics, so the metrics library's scrape path is resident.
func scrapeOnce(b *testing.B, url string) {
	resp, err := http.Get(url + wire.PathMetrics)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("/metrics: %d, %v", resp.StatusCode, err)
	}
}

// smapsSplit is one process's PSS in kB by what is mapped, from /proc/PID/smaps.
type smapsSplit struct {
	total, anon, binary, libs, otherFile, model int64 // Pss
	rss, modelRss                               int64
}

func (s smapsSplit) beyondModel() int64 { return s.total - s.model }

func (s *smapsSplit) add(o smapsSplit) {
	s.total += o.total
	s.anon += o.anon
	s.binary += o.binary
	s.libs += o.libs
	s.otherFile += o.otherFile
	s.model += o.model
	s.rss += o.rss
	s.modelRss += o.modelRss
}

// readSmaps splits a process's PSS by mapping; its total is smaps_rollup's Pss.
func readSmaps(b *testing.B, pid int, bin, model string) smapsSplit {
	var s smapsSplit
	testenv.Smaps(b, pid, func(path, field string, kb int64) {
		isModel := path == model
		if field == "Rss" {
			s.rss += kb
			if isModel {
				s.modelRss += kb
			}
		}
		if field != "Pss" {
			return
		}
		s.total += kb
		switch {
		case path == "" || strings.HasPrefix(path, "["):
			s.anon += kb
		case path == bin:
			s.binary += kb
		case isModel:
			s.model += kb
		case strings.Contains(filepath.Base(path), ".so"):
			s.libs += kb
		default:
			s.otherFile += kb
		}
	})
	if rollup := readRollupPss(b, pid); abs(rollup-s.total) > 64 { // the two reads are moments apart
		b.Fatalf("smaps Pss %d kB disagrees with smaps_rollup's %d kB", s.total, rollup)
	}
	return s
}

func readRollupPss(b *testing.B, pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "Pss:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb
		}
	}
	b.Fatal("no Pss in smaps_rollup")
	return 0
}

func abs(n int64) int64 { return max(n, -n) }
