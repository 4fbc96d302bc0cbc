package wire

import "time"

// Hive reports: a hive tells the Queen which models it can start for spawn orders, so
// the Queen's gateway can load a model on request and GET /v1/models can list what may
// be named, not only what runs (issue 12).
//
//	POST /v1/hives   HiveReport → 200 HiveInfo (the report as the Queen holds it)
//	GET  /v1/hives   → {"hives": [HiveInfo...]}
//
// A hive sends its report when it starts taking a Queen's orders and again every
// HiveReportInterval; the Queen forgets a hive whose report is older than HiveReportTTL.
const PathHives = "/v1/hives"

// HiveReportInterval is how often a hive repeats its report; HiveReportTTL how long the
// Queen holds one (three missed reports).
const (
	HiveReportInterval = 20 * time.Second
	HiveReportTTL      = 3 * HiveReportInterval
)

// MaxHiveModels bounds the models one report lists.
const MaxHiveModels = 1024

// HiveModel is one model a hive can start.
type HiveModel struct {
	Name      string `json:"name"`                   // as workers serve it (ModelName)
	Path      string `json:"path,omitempty"`         // the GGUF file on the hive (for people; never dialled)
	SizeBytes int64  `json:"size_bytes"`             // the file's size: the default load timeout grows with it
	MemBytes  uint64 `json:"memory_bytes,omitempty"` // estimated host memory of a worker serving it (models.EstimateMemory, CPU only)
}

// HiveReport is the body of POST /v1/hives.
type HiveReport struct {
	Hive   string      `json:"hive"`
	Models []HiveModel `json:"models"`
	// Memory figures for placement; 0 = not reported.
	TotalRAM  uint64 `json:"total_ram_bytes,omitempty"`
	FreeRAM   uint64 `json:"free_ram_bytes,omitempty"`
	BudgetRAM uint64 `json:"budget_ram_bytes,omitempty"` // memory the hive may still give workers
	// Workers is the hive's live workers; MaxWorkers its cap (0 = none).
	Workers    int `json:"workers,omitempty"`
	MaxWorkers int `json:"max_workers,omitempty"`
}

// HiveInfo is a report as the Queen holds it.
type HiveInfo struct {
	HiveReport
	ReportedAt time.Time `json:"reported_at"`
}

// HiveList answers GET /v1/hives.
type HiveList struct {
	Hives []HiveInfo `json:"hives"`
}

// Model statuses in GET /v1/models at a Queen (Model.Status).
const (
	ModelLoaded   = "loaded"   // an online worker serves it
	ModelLoading  = "loading"  // a spawn order for it is under way
	ModelLoadable = "loadable" // some hive can start it on request
)

// CodeModelLoadFailed is the code of the answer to requests held while a model loaded
// and the load failed; CodeLoadTimeout of those held past the load timeout.
const (
	CodeModelLoadFailed = "model_load_failed"
	CodeLoadTimeout     = "load_timeout"
)
