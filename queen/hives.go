package queen

import (
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/beekeeper-hive/beekeeper/wire"
)

// The hive table: what each hive reported it can start (wire/hives.go). The gateway loads
// a model on request from it, and GET /v1/models lists its models as loadable. A report
// older than wire.HiveReportTTL is forgotten: the hive is gone or no longer serves this
// Queen.

// maxHiveReportBody bounds a report: MaxHiveModels models with long paths.
const maxHiveReportBody = 1 << 20

// maxModelPath bounds a reported model path (shown to people only).
const maxModelPath = 4096

type hiveTable struct {
	now func() time.Time
	ttl time.Duration

	mu    sync.Mutex
	hives map[string]wire.HiveInfo
}

func newHiveTable(now func() time.Time, ttl time.Duration) *hiveTable {
	return &hiveTable{now: now, ttl: ttl, hives: make(map[string]wire.HiveInfo)}
}

func (t *hiveTable) report(rep wire.HiveReport) wire.HiveInfo {
	info := wire.HiveInfo{HiveReport: rep, ReportedAt: t.now()}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.hives[rep.Hive] = info
	return info
}

// list returns the reports not yet expired, sorted by hive, and drops the expired ones.
func (t *hiveTable) list() []wire.HiveInfo {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]wire.HiveInfo, 0, len(t.hives))
	for id, h := range t.hives {
		if now.Sub(h.ReportedAt) >= t.ttl {
			delete(t.hives, id)
			continue
		}
		out = append(out, h)
	}
	slices.SortFunc(out, func(a, b wire.HiveInfo) int { return strings.Compare(a.Hive, b.Hive) })
	return out
}

// offer is one hive's offer of a model.
type offer struct {
	hive  string
	model wire.HiveModel
	free  uint64 // the hive's reported room for workers (BudgetRAM, else FreeRAM); 0 = unknown
	fits  bool   // the model's memory and one more worker fit the hive's budget now
}

// offers lists the hives that can start model, the roomiest first (unknown room last,
// then by name: stable).
func (t *hiveTable) offers(model string) []offer {
	var out []offer
	for _, h := range t.list() {
		for _, m := range h.Models {
			if m.Name == model {
				room := h.BudgetRAM
				if room == 0 {
					room = h.FreeRAM
				}
				fits := (room == 0 || m.MemBytes <= room) && (h.MaxWorkers == 0 || h.Workers < h.MaxWorkers)
				out = append(out, offer{hive: h.Hive, model: m, free: room, fits: fits})
				break
			}
		}
	}
	slices.SortStableFunc(out, func(a, b offer) int {
		switch {
		case a.fits != b.fits: // one with room first; else the chosen hive evicts
			if a.fits {
				return -1
			}
			return 1
		case a.free > b.free:
			return -1
		case a.free < b.free:
			return 1
		}
		return 0
	})
	return out
}

var hiveReportFields = jsonFields(reflect.TypeFor[wire.HiveReport]())

func decodeHiveReport(body []byte) (wire.HiveReport, error) {
	var rep wire.HiveReport
	if err := decodeStrict(body, &rep, hiveReportFields); err != nil {
		return rep, err
	}
	if err := validateHive("hive", rep.Hive); err != nil {
		return rep, err
	}
	if len(rep.Models) > wire.MaxHiveModels {
		return rep, invalidField("models", "lists %d models; at most %d", len(rep.Models), wire.MaxHiveModels)
	}
	for _, m := range rep.Models {
		switch {
		case m.Name == "" || len(m.Name) > maxModelLen || hasControl(m.Name):
			return rep, invalidField("models", "a model name must be 1..%d printable characters", maxModelLen)
		case len(m.Path) > maxModelPath || hasControl(m.Path):
			return rep, invalidField("models", "model %q: path must be at most %d printable characters", m.Name, maxModelPath)
		case m.SizeBytes < 0:
			return rep, invalidField("models", "model %q: size_bytes is negative", m.Name)
		}
	}
	if rep.Workers < 0 || rep.MaxWorkers < 0 {
		return rep, invalidField("workers", "worker counts must not be negative")
	}
	return rep, nil
}

func (q *Queen) handleHiveReport(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r, w, maxHiveReportBody)
	if err != nil {
		return err
	}
	rep, err := decodeHiveReport(body)
	if err != nil {
		return err
	}
	wire.WriteJSON(w, http.StatusOK, q.hives.report(rep))
	return nil
}

func (q *Queen) handleHives(w http.ResponseWriter, r *http.Request) error {
	wire.WriteJSON(w, http.StatusOK, wire.HiveList{Hives: q.hives.list()})
	return nil
}
