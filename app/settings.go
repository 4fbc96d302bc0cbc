package app

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"fyne.io/fyne/v2"

	"github.com/beekeeper-hive/beekeeper/internal/dirs"
	"github.com/beekeeper-hive/beekeeper/llamaruntime"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// QueenMode is where the app's workers are registered.
type QueenMode string

// The Queen modes of the Queen screen.
const (
	QueenOff      QueenMode = "off"      // Queenless: workers run, nobody routes
	QueenEmbedded QueenMode = "embedded" // the mini Queen inside this app (dev mode)
	QueenRemote   QueenMode = "remote"   // a Queen elsewhere, by URL
)

// Settings are the user's choices, persisted with Fyne preferences.
type Settings struct {
	ModelsFolder      string
	PortMin, PortMax  int
	LlamaLib          string // "" = the installed runtime (or $BEEKEEPER_LLAMA_LIB)
	Backend           string // installed llama.cpp build: cpu, vulkan, cuda; "" = auto ($BEEKEEPER_BACKEND, else cpu)
	StopWorkersOnQuit bool   // default off: workers outlive the app and are re-adopted
	HeartbeatInterval time.Duration
	// IdleTTL stops a worker the app started for a request to its endpoint (a model
	// loaded on request) after that long unused; 0 keeps it. ModelTTL overrides it per
	// model name. Workers started with the Spawn button keep running.
	IdleTTL  time.Duration
	ModelTTL map[string]time.Duration

	QueenMode     QueenMode
	EmbeddedAddr  string
	EmbeddedToken string
	RemoteURL     string
	RemoteToken   string

	RecentModels []string // newest first
}

// maxRecentModels bounds the spawn dialog's recent list.
const maxRecentModels = 8

// Preference keys.
const (
	keyModelsFolder  = "models_folder"
	keyPortMin       = "port_min"
	keyPortMax       = "port_max"
	keyLlamaLib      = "llama_lib"
	keyBackend       = "llama_backend"
	keyStopOnQuit    = "stop_workers_on_quit"
	keyHeartbeatMS   = "queen_heartbeat_ms"
	keyQueenMode     = "queen_mode"
	keyEmbeddedAddr  = "queen_embedded_addr"
	keyEmbeddedToken = "queen_embedded_token"
	keyRemoteURL     = "queen_remote_url"
	keyRemoteToken   = "queen_remote_token"
	keyRecentModels  = "recent_models"
	keyIdleTTLMS     = "load_idle_ttl_ms"
	keyModelTTL      = "load_model_ttl" // "name=duration" per entry
)

// DefaultIdleTTL is how long a model loaded on request stays loaded unused, as
// Ollama's keep_alive default.
const DefaultIdleTTL = 5 * time.Minute

// maxTTL bounds the idle TTLs the settings take.
const maxTTL = 30 * 24 * time.Hour

// ParseModelTTLs reads "name = duration" lines (blank lines ignored) as the Settings
// screen shows them.
func ParseModelTTLs(text string) (map[string]time.Duration, error) {
	out := map[string]time.Duration{}
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		name, dur, ok := strings.Cut(line, "=")
		name, dur = strings.TrimSpace(name), strings.TrimSpace(dur)
		d, err := time.ParseDuration(dur)
		if !ok || name == "" || err != nil || d < 0 || d > maxTTL {
			return nil, &SettingsError{Field: "idle time per model", Problem: fmt.Sprintf("%q: write one model per line as name = duration, e.g. stories260K = 30m (0 keeps it loaded)", line)}
		}
		out[name] = d
	}
	return out, nil
}

// FormatModelTTLs writes m as ParseModelTTLs reads it, sorted by name.
func FormatModelTTLs(m map[string]time.Duration) string {
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(&b, "%s = %s\n", name, m[name])
	}
	return b.String()
}

// TTLFor is the idle TTL of a model loaded on request.
func (s Settings) TTLFor(model string) time.Duration {
	if d, ok := s.ModelTTL[model]; ok {
		return d
	}
	return s.IdleTTL
}

// DefaultSettings are the settings of a first start.
func DefaultSettings() Settings {
	return Settings{
		ModelsFolder:      dirs.Models(),
		PortMin:           wire.DefaultPortMin,
		PortMax:           wire.DefaultPortMax,
		HeartbeatInterval: wire.DefaultHeartbeatInterval,
		IdleTTL:           DefaultIdleTTL,
		QueenMode:         QueenOff,
		EmbeddedAddr:      wire.DefaultQueenAddr,
	}
}

// LoadSettings reads the settings from p, defaults filling what was never saved.
func LoadSettings(p fyne.Preferences) Settings {
	d := DefaultSettings()
	s := Settings{
		ModelsFolder:      p.StringWithFallback(keyModelsFolder, d.ModelsFolder),
		PortMin:           p.IntWithFallback(keyPortMin, d.PortMin),
		PortMax:           p.IntWithFallback(keyPortMax, d.PortMax),
		LlamaLib:          p.String(keyLlamaLib),
		Backend:           p.String(keyBackend),
		StopWorkersOnQuit: p.Bool(keyStopOnQuit),
		HeartbeatInterval: time.Duration(p.IntWithFallback(keyHeartbeatMS, int(d.HeartbeatInterval/time.Millisecond))) * time.Millisecond,
		QueenMode:         QueenMode(p.StringWithFallback(keyQueenMode, string(d.QueenMode))),
		EmbeddedAddr:      p.StringWithFallback(keyEmbeddedAddr, d.EmbeddedAddr),
		EmbeddedToken:     p.String(keyEmbeddedToken),
		RemoteURL:         p.String(keyRemoteURL),
		RemoteToken:       p.String(keyRemoteToken),
		RecentModels:      p.StringList(keyRecentModels),
		IdleTTL:           time.Duration(p.IntWithFallback(keyIdleTTLMS, int(d.IdleTTL/time.Millisecond))) * time.Millisecond,
	}
	if m, err := ParseModelTTLs(strings.Join(p.StringList(keyModelTTL), "\n")); err == nil {
		s.ModelTTL = m
	}
	if s.Validate() != nil {
		// A hand-edited or older preferences file must not stop the app: keep what is
		// valid and reset the rest.
		if s.PortMin < 1 || s.PortMax > 65535 || s.PortMin > s.PortMax {
			s.PortMin, s.PortMax = d.PortMin, d.PortMax
		}
		if s.HeartbeatInterval < 100*time.Millisecond {
			s.HeartbeatInterval = d.HeartbeatInterval
		}
		if s.IdleTTL < 0 || s.IdleTTL > maxTTL {
			s.IdleTTL = d.IdleTTL
		}
		switch s.QueenMode {
		case QueenOff, QueenEmbedded, QueenRemote:
		default:
			s.QueenMode = QueenOff
		}
		// A build this platform lacks goes back to auto; one not installed (any more)
		// is kept: the worker's error names its install command.
		if _, err := llamaruntime.BuildFor(s.Backend); err != nil {
			s.Backend = ""
		}
	}
	return s
}

// SettingsError names the field that is wrong and what it must be; Err is the cause
// when a part of the app refused the value (e.g. hive.ErrRuntimeMissing).
type SettingsError struct {
	Field, Problem string
	Err            error
}

func (e *SettingsError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("setting %s: %s: %v", e.Field, e.Problem, e.Err)
	}
	return fmt.Sprintf("setting %s: %s", e.Field, e.Problem)
}

func (e *SettingsError) Unwrap() error { return e.Err }

// Validate checks the settings, naming the field and the fix.
func (s Settings) Validate() error {
	switch {
	case s.PortMin < 1 || s.PortMin > 65535:
		return &SettingsError{Field: "port range", Problem: "the first port must be between 1 and 65535"}
	case s.PortMax < 1 || s.PortMax > 65535:
		return &SettingsError{Field: "port range", Problem: "the last port must be between 1 and 65535"}
	case s.PortMin > s.PortMax:
		return &SettingsError{Field: "port range", Problem: "the first port must not be above the last"}
	case s.HeartbeatInterval < 100*time.Millisecond || s.HeartbeatInterval > 10*time.Minute:
		return &SettingsError{Field: "heartbeat interval", Problem: "must be between 100ms and 10m, e.g. 5s"}
	case s.IdleTTL < 0 || s.IdleTTL > maxTTL:
		return &SettingsError{Field: "unload idle models after", Problem: "a duration from 0 (keep them loaded) to 720h, e.g. 5m"}
	case s.ModelsFolder != "" && !filepath.IsAbs(s.ModelsFolder):
		return &SettingsError{Field: "models folder", Problem: "must be an absolute path"}
	case s.LlamaLib != "" && !filepath.IsAbs(s.LlamaLib):
		return &SettingsError{Field: "llama.cpp runtime folder", Problem: "must be an absolute path, or empty for the installed runtime"}
	}
	if err := s.validateBackend(); err != nil {
		return err
	}
	switch s.QueenMode {
	case QueenOff, QueenEmbedded, QueenRemote:
	default:
		return &SettingsError{Field: "Queen mode", Problem: "must be off, embedded or remote"}
	}
	return nil
}

// validateBackend checks that the chosen build exists here and, unless a runtime folder
// overrides it, is installed.
func (s Settings) validateBackend() error {
	if s.Backend == "" {
		return nil
	}
	b, err := llamaruntime.BuildFor(s.Backend)
	if err != nil {
		return &SettingsError{Field: "llama.cpp backend", Problem: "no such build on this machine; choose auto", Err: err}
	}
	if s.LlamaLib == "" && !b.Installed() {
		return &SettingsError{Field: "llama.cpp backend",
			Problem: fmt.Sprintf("the %s build is not installed: run `beekeeper runtime install --backend %s`, or choose auto", b.Backend, b.Backend)}
	}
	return nil
}

// RuntimeDir is the llama.cpp folder to hand the hive (as LlamaLib was): the runtime
// folder when set, else the chosen backend's install, else "" (each worker then locates
// the runtime itself: $BEEKEEPER_LLAMA_LIB, $BEEKEEPER_BACKEND, the CPU build).
func (s Settings) RuntimeDir() string {
	if s.LlamaLib != "" || s.Backend == "" {
		return s.LlamaLib
	}
	if dir, err := llamaruntime.LocateBackend(s.Backend); err == nil {
		return dir // $BEEKEEPER_LLAMA_LIB and $YZMA_LIB still win, as in the worker
	}
	if b, err := llamaruntime.BuildFor(s.Backend); err == nil {
		return b.Dir // not installed (any more): the worker's error names the install command
	}
	return ""
}

// Save writes the settings to p.
func (s Settings) Save(p fyne.Preferences) {
	p.SetString(keyModelsFolder, s.ModelsFolder)
	p.SetInt(keyPortMin, s.PortMin)
	p.SetInt(keyPortMax, s.PortMax)
	p.SetString(keyLlamaLib, s.LlamaLib)
	p.SetString(keyBackend, s.Backend)
	p.SetBool(keyStopOnQuit, s.StopWorkersOnQuit)
	p.SetInt(keyHeartbeatMS, int(s.HeartbeatInterval/time.Millisecond))
	p.SetString(keyQueenMode, string(s.QueenMode))
	p.SetString(keyEmbeddedAddr, s.EmbeddedAddr)
	p.SetString(keyEmbeddedToken, s.EmbeddedToken)
	p.SetString(keyRemoteURL, s.RemoteURL)
	p.SetString(keyRemoteToken, s.RemoteToken)
	p.SetStringList(keyRecentModels, s.RecentModels)
	p.SetInt(keyIdleTTLMS, int(s.IdleTTL/time.Millisecond))
	p.SetStringList(keyModelTTL, strings.Split(strings.TrimSpace(FormatModelTTLs(s.ModelTTL)), "\n"))
}

// withRecentModel puts path first in the recent list, without duplicates.
func withRecentModel(recent []string, path string) []string {
	out := append([]string{path}, slices.DeleteFunc(slices.Clone(recent), func(p string) bool { return p == path })...)
	if len(out) > maxRecentModels {
		out = out[:maxRecentModels]
	}
	return out
}
