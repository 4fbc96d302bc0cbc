// Package app owns the desktop app's core, free of widgets: it composes the hive (local
// workers), the embedded mini Queen, the Queen mode and the settings, so the ui package
// only draws and forwards clicks.
package app

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"fyne.io/fyne/v2"

	"github.com/beekeeper-hive/beekeeper/hive"
	"github.com/beekeeper-hive/beekeeper/internal/broadcast"
	"github.com/beekeeper-hive/beekeeper/internal/dirs"
	"github.com/beekeeper-hive/beekeeper/llamaruntime"
	"github.com/beekeeper-hive/beekeeper/models"
	"github.com/beekeeper-hive/beekeeper/queen"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// Config is what New needs; zero values take the defaults named on each field.
type Config struct {
	Prefs        fyne.Preferences // where settings persist (the Fyne app's preferences)
	StateDir     string           // the hive's registry and logs; default dirs.State()
	WorkerBinary string           // the beekeeper binary run as `worker`; default this executable
	Log          *LogRing         // the app's own log for the Logs screen; default a new one
	Logger       *slog.Logger     // default: writes to Log only
	// StatsInterval is the hive's sampling period (default 1s); tests shorten it.
	StatsInterval time.Duration
}

// App is the desktop app's core. Safe for concurrent use.
type App struct {
	cfg  Config
	log  *slog.Logger
	ring *LogRing
	hive *hive.Hive

	switchMu sync.Mutex // one Queen switch at a time

	mu       sync.Mutex
	settings Settings
	embedded *embeddedQueen          // nil unless the embedded Queen runs
	view     *QueenView              // follows the current Queen's event stream; nil when Queenless
	queenErr string                  // why the chosen Queen mode is not in effect
	subs     broadcast.Hub[struct{}] // "something changed" wake-ups, coalesced
}

type embeddedQueen struct {
	q      *queen.Queen
	url    string
	cancel context.CancelFunc
	done   chan error
}

// New loads the settings, opens the hive (re-adopting workers that outlived the last
// run) and brings the saved Queen mode back.
func New(cfg Config) (*App, error) {
	if cfg.Prefs == nil {
		return nil, errors.New("app: Config.Prefs is required (the Fyne app's Preferences())")
	}
	if cfg.StateDir == "" {
		cfg.StateDir = dirs.State()
	}
	if cfg.Log == nil {
		cfg.Log = NewLogRing(2000)
	}
	if cfg.Logger == nil {
		cfg.Logger = NewLogger(cfg.Log, nil, slog.LevelInfo)
	}
	a := &App{cfg: cfg, log: cfg.Logger, ring: cfg.Log}
	a.settings = LoadSettings(cfg.Prefs)
	s := a.settings
	if s.EmbeddedToken != "" || s.RemoteToken != "" {
		ownerOnlySettingsFile() // a file from an older version may still be world-readable
	}

	// The saved Queen's token goes to the hive at once (the Queen itself comes with
	// SetQueen below): the workers that outlived the last run were spawned with it, and
	// the re-adoption asks each who it is with it. Without it every one answers 401,
	// its identity goes unchecked, and the log tells the user to restart a healthy worker.
	var savedToken string
	if s.QueenMode != QueenOff {
		savedToken = a.queenToken(s)
	}
	h, err := hive.Open(hive.Options{
		QueenToken:    savedToken,
		StateDir:      cfg.StateDir,
		PortMin:       s.PortMin,
		PortMax:       s.PortMax,
		WorkerBinary:  cfg.WorkerBinary,
		LlamaLib:      s.RuntimeDir(),
		SpawnedBy:     wire.SpawnedByGUI,
		ResolveModel:  a.findModel,
		ListModels:    a.listModels,
		OrderTTLFor:   func(model string) time.Duration { return a.Settings().TTLFor(model) },
		StatsInterval: cfg.StatsInterval,
		Logger:        a.log,
	})
	if err != nil {
		return nil, fmt.Errorf("open the local worker registry in %s: %w", cfg.StateDir, err)
	}
	a.hive = h
	if s.QueenMode != QueenOff {
		// A Queen that cannot start (address taken) must not stop the app: the Queen
		// screen shows why, and the workers run Queenless meanwhile.
		if err := a.SetQueen(context.Background(), s.QueenMode, a.queenTarget(s), a.queenToken(s)); err != nil {
			a.log.Warn("saved Queen mode not restored", "mode", s.QueenMode, "err", err)
		}
	}
	a.log.Info("beekeeper started", "state", cfg.StateDir, "workers", len(h.List()), "queen_mode", s.QueenMode)
	if s.Backend == "" && s.LlamaLib == "" {
		go a.suggestBackend() // reads driver files and `ldconfig -p`: not on the start path
	}
	return a, nil
}

// suggestBackend tells the user, on the Logs screen, when this machine has a GPU that
// another llama.cpp build would use, and how to get that build (Settings shows it too).
func (a *App) suggestBackend() {
	sug := llamaruntime.Suggest()
	if sug.Backend == llamaruntime.BackendCPU {
		return
	}
	b, err := llamaruntime.BuildFor(sug.Backend)
	if err != nil {
		return
	}
	if b.Installed() {
		a.log.Info("GPU runtime available: choose it in Settings → llama.cpp backend", "backend", sug.Backend, "why", sug.Reason)
		return
	}
	a.log.Info("this machine has a GPU the CPU runtime leaves idle: run `beekeeper runtime install --backend "+sug.Backend+"`, then choose it in Settings",
		"backend", sug.Backend, "why", sug.Reason)
}

// Hive is the local workers.
func (a *App) Hive() *hive.Hive { return a.hive }

// Log is the app's own log, for the Logs screen.
func (a *App) Log() *LogRing { return a.ring }

// Logger is the app's logger.
func (a *App) Logger() *slog.Logger { return a.log }

// Settings returns the current settings.
// ProbeDevices asks the worker binary for the devices the chosen llama.cpp runtime sees,
// so the app never loads the libraries itself (they would stay in its memory).
func (a *App) ProbeDevices(ctx context.Context) ([]models.Device, error) {
	exe := a.cfg.WorkerBinary
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("find the beekeeper binary: %w", err)
		}
	}
	return models.ProbeDevices(ctx, exe, a.Settings().RuntimeDir())
}

func (a *App) Settings() Settings {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.settings
}

// findModel is how the hive answers a Queen's spawn order for a model name: the recent
// models first, then the models folder.
func (a *App) findModel(name string) (string, bool) {
	s := a.Settings()
	return models.Find(name, s.ModelsFolder, s.RecentModels)
}

// SaveSettings validates s, puts the port range and the runtime folder in effect at
// once (the next spawn uses them; running workers keep theirs) and persists s. A value
// the hive refuses (a folder without the llama.cpp library) changes nothing. The Queen
// fields are kept as they are: the Queen screen changes them through SetQueen. The
// heartbeat interval applies from the next start of the embedded Queen; stop-on-quit is
// read when the app closes.
func (a *App) SaveSettings(s Settings) error {
	if err := s.Validate(); err != nil {
		return err
	}
	if err := a.applySettings(s); err != nil {
		return err
	}
	a.log.Info("settings saved", "ports", fmt.Sprintf("%d-%d", s.PortMin, s.PortMax), "llama_lib", s.LlamaLib)
	a.changed()
	return nil
}

// applySettings hands the hive its part of s and stores s (all or nothing).
func (a *App) applySettings(s Settings) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	cur := a.settings
	if s.RuntimeDir() != cur.RuntimeDir() {
		if err := a.hive.SetLlamaLib(s.RuntimeDir()); err != nil {
			return &SettingsError{Field: "llama.cpp runtime folder",
				Problem: "no llama.cpp library there: choose the folder holding libllama, or leave it empty for the installed runtime", Err: err}
		}
	}
	if err := a.hive.SetPortRange(s.PortMin, s.PortMax); err != nil {
		_ = a.hive.SetLlamaLib(cur.RuntimeDir()) // it was accepted before: all or nothing
		return &SettingsError{Field: "port range", Problem: "the hive refused it", Err: err}
	}
	s.QueenMode, s.EmbeddedAddr, s.EmbeddedToken = cur.QueenMode, cur.EmbeddedAddr, cur.EmbeddedToken
	s.RemoteURL, s.RemoteToken, s.RecentModels = cur.RemoteURL, cur.RemoteToken, cur.RecentModels
	a.settings = s
	s.Save(a.cfg.Prefs)
	return nil
}

// RememberModel puts path first in the recent models.
func (a *App) RememberModel(path string) {
	a.mu.Lock()
	a.settings.RecentModels = withRecentModel(a.settings.RecentModels, path)
	a.cfg.Prefs.SetStringList(keyRecentModels, a.settings.RecentModels)
	a.mu.Unlock()
}

// QueenState is the Queen screen's picture.
type QueenState struct {
	Mode      QueenMode
	URL       string // the Queen the hive talks to; "" when Queenless
	Embedded  bool   // the embedded Queen is running
	Connected bool   // the event stream is open
	Error     string // why the mode is not in effect, or the stream's last error
	Hive      hive.QueenStatus
	Workers   []wire.Worker // the Queen's own view, all machines
}

// QueenState returns the current Queen picture.
func (a *App) QueenState() QueenState {
	a.mu.Lock()
	st := QueenState{Mode: a.settings.QueenMode, Error: a.queenErr}
	if a.embedded != nil {
		st.Embedded = true
	}
	view := a.view
	a.mu.Unlock()
	if view != nil {
		st.URL = view.url
		st.Workers = view.Workers()
		var streamErr string
		st.Connected, streamErr = view.Connected()
		if st.Error == "" {
			st.Error = streamErr
		}
	}
	st.Hive = a.hive.QueenStatus()
	return st
}

// QueenError is a Queen mode that could not be put in effect, with the fix.
type QueenError struct {
	Mode QueenMode
	Err  error
	Fix  string
}

func (e *QueenError) Error() string {
	return fmt.Sprintf("%s Queen: %v; %s", e.Mode, e.Err, e.Fix)
}

func (e *QueenError) Unwrap() error { return e.Err }

// SetQueen switches the Queen mode: target is the embedded Queen's listen address or
// the remote Queen's URL (ignored for QueenOff). Local workers are registered at the new
// Queen by the hive's sync within a second. The choice is saved even when it fails, so
// the Queen screen keeps what the user typed.
//
// The embedded Queen always has a token: an empty token keeps the saved one, or makes a
// random one on its first start (saved in the settings, whose file is made owner-only).
// The hive hands it to the workers it spawns, so no other local user or web page can
// use them.
func (a *App) SetQueen(ctx context.Context, mode QueenMode, target, token string) error {
	a.switchMu.Lock()
	defer a.switchMu.Unlock()
	a.mu.Lock()
	s := a.settings
	s.QueenMode = mode
	switch mode {
	case QueenEmbedded:
		if token == "" {
			token = s.EmbeddedToken
		}
		if token == "" {
			token = rand.Text()
			a.log.Info("embedded queen: made its token (Settings keep it; other machines' hives need it)")
		}
		s.EmbeddedAddr, s.EmbeddedToken = target, token
	case QueenRemote:
		s.RemoteURL, s.RemoteToken = target, token
	}
	a.settings = s
	ownerOnlySettingsFile()
	s.Save(a.cfg.Prefs)
	old, oldView := a.embedded, a.view
	a.embedded, a.view, a.queenErr = nil, nil, ""
	a.mu.Unlock()

	if oldView != nil {
		oldView.Close()
	}
	// Switching away from the embedded Queen stops it; switching to it with another
	// address restarts it. Point the hive away first so no sync hits a closing Queen.
	if old != nil {
		_ = a.hive.SetQueen("", "")
		old.stop()
	}

	queenURL, err := a.startMode(ctx, s)
	if err != nil {
		a.mu.Lock()
		a.queenErr = err.Error()
		a.mu.Unlock()
		_ = a.hive.SetQueen("", "")
		a.changed()
		return err
	}
	if err := a.hive.SetQueen(queenURL, token); err != nil {
		a.mu.Lock()
		a.queenErr = err.Error()
		a.mu.Unlock()
		a.changed()
		return fmt.Errorf("point the workers at %s: %w", queenURL, err)
	}
	if queenURL != "" {
		view := watchQueen(queenURL, token, a.log, a.changed)
		a.mu.Lock()
		a.view = view
		a.mu.Unlock()
	}
	a.log.Info("queen mode set", "mode", mode, "url", queenURL)
	a.changed()
	return nil
}

// ownerOnlySettingsFile makes the preferences file of the running Fyne app readable by
// its owner only (0600; Fyne makes its folder 0700): it holds Queen tokens. Fyne
// rewrites the file in place, which keeps the mode; a file not written yet is created
// empty first, so it is born owner-only. Only a store that is the app's own folder
// (named for its id) is touched: the test driver's store is the shared temp folder.
func ownerOnlySettingsFile() {
	fa := fyne.CurrentApp()
	if fa == nil || fa.Storage() == nil || fa.UniqueID() == "" {
		return
	}
	root := fa.Storage().RootURI()
	if root == nil || root.Scheme() != "file" || filepath.Base(root.Path()) != fa.UniqueID() {
		return
	}
	ownerOnlyPrefs(root.Path())
}

// ownerOnlyPrefs makes dir/preferences.json owner-only, creating it empty if missing.
func ownerOnlyPrefs(dir string) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return
	}
	path := filepath.Join(dir, "preferences.json")
	if f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); err == nil {
		_, _ = f.WriteString("{}\n")
		f.Close()
	}
	_ = os.Chmod(path, 0o600)
}

// startMode puts mode in effect and returns the Queen URL for the hive.
func (a *App) startMode(ctx context.Context, s Settings) (string, error) {
	switch s.QueenMode {
	case QueenOff:
		return "", nil
	case QueenRemote:
		u, err := NormalizeQueenURL(s.RemoteURL)
		if err != nil {
			return "", &QueenError{Mode: QueenRemote, Err: err, Fix: "enter the Queen's URL, e.g. http://queen.local:7833"}
		}
		return u, nil
	case QueenEmbedded:
		e, err := startEmbedded(s.EmbeddedAddr, s.EmbeddedToken, s.HeartbeatInterval, a.log)
		if err != nil {
			return "", err
		}
		a.mu.Lock()
		a.embedded = e
		a.mu.Unlock()
		return e.url, nil
	}
	return "", &QueenError{Mode: s.QueenMode, Err: errors.New("unknown mode"), Fix: "choose Off, Embedded or Remote"}
}

func startEmbedded(addr, token string, heartbeat time.Duration, log *slog.Logger) (*embeddedQueen, error) {
	if addr == "" {
		addr = wire.DefaultQueenAddr
	}
	q, err := queen.New(queen.Config{Addr: addr, Token: token, HeartbeatInterval: heartbeat, Logger: log.With("component", "queen")})
	if err != nil {
		return nil, &QueenError{Mode: QueenEmbedded, Err: err, Fix: "check the heartbeat interval in Settings"}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, &QueenError{Mode: QueenEmbedded, Err: err,
			Fix: "the address is taken or invalid: stop the other Queen, or enter another address such as 127.0.0.1:7834"}
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &embeddedQueen{q: q, url: "http://" + ln.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { e.done <- q.Serve(ctx, ln) }()
	log.Info("embedded queen listening", "url", e.url)
	return e, nil
}

func (e *embeddedQueen) stop() {
	e.cancel()
	<-e.done
}

// NormalizeQueenURL checks a Queen URL typed by a person and returns it without a
// trailing slash; a bare host:port gets http://.
func NormalizeQueenURL(raw string) (string, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return "", errors.New("no URL given")
	}
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("not a URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("scheme %q: use http or https", u.Scheme)
	}
	if u.Host == "" {
		return "", errors.New("the URL names no host")
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// TestQueen checks a Queen by URL and token: /health must answer, and the worker list
// must accept the token. It returns the Queen's version.
func TestQueen(ctx context.Context, rawURL, token string) (string, error) {
	u, err := NormalizeQueenURL(rawURL)
	if err != nil {
		return "", &QueenError{Mode: QueenRemote, Err: err, Fix: "enter the Queen's URL, e.g. http://queen.local:7833"}
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var health wire.QueenHealth
	if err := getJSON(ctx, u+wire.PathHealth, "", &health); err != nil {
		return "", &QueenError{Mode: QueenRemote, Err: err, Fix: "check the URL, that the Queen runs, and that this machine can reach it"}
	}
	var list wire.WorkerList
	if err := getJSON(ctx, u+wire.PathWorkers, token, &list); err != nil {
		var apiErr *wire.APIError
		if errors.As(err, &apiErr) && apiErr.Status == http.StatusUnauthorized {
			return "", &QueenError{Mode: QueenRemote, Err: err, Fix: "the token is wrong: copy the Queen's --token"}
		}
		return "", &QueenError{Mode: QueenRemote, Err: err, Fix: "the Queen answers /health but not its worker list: check its version"}
	}
	return health.Version, nil
}

func getJSON(ctx context.Context, url, token string, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", wire.BearerPrefix+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return wire.DecodeError(resp.StatusCode, body)
	}
	return json.Unmarshal(body, into)
}

// Subscribe returns a channel that receives a value after the settings or the Queen
// picture changed (coalesced), and a func that ends the subscription.
func (a *App) Subscribe() (<-chan struct{}, func()) {
	return a.subs.Subscribe(broadcast.KeepLatest, 1)
}

func (a *App) changed() { a.subs.Publish(struct{}{}) }

// Close stops the Queen watcher and the embedded Queen, and closes the hive; workers are
// stopped only when the "stop workers on quit" setting is on (otherwise the next start
// re-adopts them).
func (a *App) Close() error {
	a.switchMu.Lock()
	defer a.switchMu.Unlock()
	a.mu.Lock()
	e, view, stop := a.embedded, a.view, a.settings.StopWorkersOnQuit
	a.embedded, a.view = nil, nil
	a.mu.Unlock()
	if view != nil {
		view.Close()
	}
	err := a.hive.Close(stop)
	if e != nil {
		e.stop()
	}
	a.log.Info("beekeeper closed", "stopped_workers", stop)
	return err
}

// queenTarget is the saved address (embedded) or URL (remote) of s's Queen mode.
func (a *App) queenTarget(s Settings) string {
	if s.QueenMode == QueenRemote {
		return s.RemoteURL
	}
	return s.EmbeddedAddr
}

// queenToken is the saved token of s's Queen mode.
func (a *App) queenToken(s Settings) string {
	if s.QueenMode == QueenRemote {
		return s.RemoteToken
	}
	return s.EmbeddedToken
}
