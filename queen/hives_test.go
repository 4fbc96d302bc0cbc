package queen

import (
	"net/http"
	"strings"
	"testing"

	"github.com/beekeeper-hive/beekeeper/wire"
)

// Hive reports: validated like every body, listed by GET /v1/hives, forgotten after
// wire.HiveReportTTL, and their models listed as loadable in GET /v1/models.
func TestHiveReports(t *testing.T) {
	_, srv, clock := newTestQueen(t, Config{})
	good := `{"hive":"hive-a","models":[{"name":"alpha","path":"/m/alpha.gguf","size_bytes":1000,"memory_bytes":2000}],"free_ram_bytes":5}`
	bad := []struct{ name, body, param string }{
		{"unknown field", `{"hive":"hive-a","models":[],"gpu":1}`, "gpu"},
		{"no hive", `{"models":[]}`, "hive"},
		{"bad hive", `{"hive":"a b","models":[]}`, "hive"},
		{"empty model name", `{"hive":"hive-a","models":[{"name":""}]}`, "models"},
		{"control in name", `{"hive":"hive-a","models":[{"name":"a\u0001"}]}`, "models"},
		{"negative size", `{"hive":"hive-a","models":[{"name":"a","size_bytes":-1}]}`, "models"},
		{"too many", `{"hive":"hive-a","models":[` + strings.Repeat(`{"name":"a"},`, wire.MaxHiveModels) + `{"name":"a"}]}`, "models"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			a := do(t, "POST", srv.URL+wire.PathHives, "", c.body)
			if a.status != http.StatusBadRequest || a.apiError(t).Detail.Param != c.param {
				t.Fatalf("%d %s, want 400 naming %s", a.status, a.body, c.param)
			}
		})
	}
	if a := do(t, "POST", srv.URL+wire.PathHives, "", good); a.status != http.StatusOK {
		t.Fatalf("report: %d %s", a.status, a.body)
	}
	hives := decode[wire.HiveList](t, do(t, "GET", srv.URL+wire.PathHives, "", nil))
	if len(hives.Hives) != 1 || hives.Hives[0].Hive != "hive-a" || hives.Hives[0].Models[0].MemBytes != 2000 {
		t.Fatalf("hives: %+v", hives)
	}
	models := decode[wire.ModelList](t, do(t, "GET", srv.URL+wire.PathModels, "", nil))
	if len(models.Data) != 1 || models.Data[0].ID != "alpha" || models.Data[0].Status != wire.ModelLoadable || models.Data[0].OwnedBy != "hive-a" {
		t.Fatalf("models: %+v", models.Data)
	}
	clock.Advance(wire.HiveReportTTL)
	if hives := decode[wire.HiveList](t, do(t, "GET", srv.URL+wire.PathHives, "", nil)); len(hives.Hives) != 0 {
		t.Fatalf("a report past its TTL is still held: %+v", hives)
	}
	// Forgotten: a request for its model is 404 again, not held.
	a := do(t, "POST", srv.URL+wire.PathChat, "", `{"model":"alpha","messages":[]}`)
	if a.status != http.StatusNotFound {
		t.Fatalf("request for a forgotten hive's model: %d %s", a.status, a.body)
	}
}
