package hive

import (
	"context"
	"os"
	"time"

	"github.com/shirou/gopsutil/v4/mem"

	"github.com/beekeeper-hive/beekeeper/models"
	"github.com/beekeeper-hive/beekeeper/queenclient"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// The hive's report to the Queen (wire/hives.go): the models it can start for spawn
// orders, with their size and estimated memory, and its free memory. The Queen's
// gateway loads a model on request from it and lists it in GET /v1/models.

// reportDue reports whether a report is due: never sent to this client, or older than
// wire.HiveReportInterval.
func reportDue(last time.Time) bool {
	return last.IsZero() || time.Since(last) >= wire.HiveReportInterval
}

// reportHive sends the report; a failure is logged at debug (the poll that follows
// fails too, and says so).
func (h *Hive) reportHive(ctx context.Context, c *queenclient.Client) bool {
	if h.opts.ListModels == nil {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := c.ReportHive(ctx, h.hiveReport()); err != nil {
		h.log.Debug("hive report failed", "err", err)
		return false
	}
	return true
}

// hiveReport describes this hive now.
func (h *Hive) hiveReport() wire.HiveReport {
	rep := wire.HiveReport{Hive: h.opts.HiveID, Models: []wire.HiveModel{}}
	for _, p := range h.opts.ListModels() {
		if len(rep.Models) == wire.MaxHiveModels {
			break
		}
		st, err := os.Stat(p)
		if err != nil {
			continue
		}
		m := wire.HiveModel{Name: wire.ModelName(p), Path: p, SizeBytes: st.Size()}
		if est, err := h.estimates.Estimate(p, models.EstimateOptions{}); err == nil {
			m.MemBytes = est.CPUOnlyRAM
		}
		rep.Models = append(rep.Models, m)
	}
	if vm, err := mem.VirtualMemory(); err == nil {
		rep.TotalRAM, rep.FreeRAM = vm.Total, vm.Available
	}
	r := h.roomFor(0)
	rep.Workers, rep.MaxWorkers = r.workers, h.opts.MaxWorkers
	if r.budget != ^uint64(0) {
		rep.BudgetRAM = r.budget
	}
	return rep
}
