package models

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Suffixes of a download in progress. Neither ends in .gguf, so a partial file never
// shows up in the library as a model.
const (
	PartSuffix    = ".part"      // the bytes received so far
	SidecarSuffix = ".part.json" // what is needed to resume, also after a restart
)

// Errors a download ends with; check them with errors.Is / errors.As.
var (
	ErrPaused   = errors.New("download paused")
	ErrCanceled = errors.New("download canceled")
	ErrExists   = errors.New("a model with that file name already exists")
	ErrDiskFull = errors.New("disk full")
	ErrNetwork  = errors.New("network error")
	ErrNotFound = errors.New("no file at that URL (404)")
)

// HTTPStatusError is an answer other than 200/206 from the download server.
type HTTPStatusError struct {
	URL    string
	Status int
}

func (e *HTTPStatusError) Error() string {
	hint := ""
	switch e.Status {
	case http.StatusUnauthorized, http.StatusForbidden:
		hint = ": the file needs a login or accepting a licence on its web page"
	case http.StatusNotFound:
		hint = ": check the URL (Hugging Face links look like .../resolve/main/FILE.gguf)"
	}
	return fmt.Sprintf("download %s: server answered %d %s%s", e.URL, e.Status, http.StatusText(e.Status), hint)
}

// Is makes a 404 match ErrNotFound.
func (e *HTTPStatusError) Is(target error) bool {
	return target == ErrNotFound && e.Status == http.StatusNotFound
}

// ChecksumError means the downloaded file is not the one expected; it is discarded.
type ChecksumError struct{ Want, Got string }

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("downloaded file has sha256 %s, expected %s: the file was discarded", e.Got, e.Want)
}

// State is where a download stands.
type State int

// Download states.
const (
	Running State = iota
	Paused
	Failed // Err says why; Resume retries from the bytes kept
	Done
	Canceled
)

func (s State) String() string {
	return [...]string{"downloading", "paused", "failed", "done", "canceled"}[s]
}

// Progress is one report of a download.
type Progress struct {
	Name        string // file name in the models folder
	State       State
	Received    int64
	Total       int64 // 0 when the server did not say
	BytesPerSec float64
	ETA         time.Duration // 0 when unknown
	Path        string        // the model's path once Done
	Err         error         // when Failed
}

// Request asks for one file.
type Request struct {
	URL    string
	Name   string // file name in the models folder; default: the URL's last path element
	SHA256 string // hex; verified when set
}

// sidecar is the resume metadata stored beside the partial file.
type sidecar struct {
	URL          string `json:"url"`
	Name         string `json:"name"`
	SHA256       string `json:"sha256,omitempty"`
	Total        int64  `json:"total,omitempty"`
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"last_modified,omitempty"`
}

// Downloader fetches models into the models folder.
type Downloader struct {
	dir    string
	client *http.Client
	// ReportEvery bounds how often progress is reported while bytes flow.
	ReportEvery time.Duration

	mu     sync.Mutex
	active map[string]*Download
}

// NewDownloader downloads into dir using hc (nil = a client whose dials and response
// headers time out, but whose body may take as long as the file needs).
func NewDownloader(dir string, hc *http.Client) *Downloader {
	if hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.ResponseHeaderTimeout = 30 * time.Second
		hc = &http.Client{Transport: tr}
	}
	return &Downloader{dir: dir, client: hc, ReportEvery: 200 * time.Millisecond, active: map[string]*Download{}}
}

// FileName picks the models-folder name for a URL: its last path element, with .gguf
// added when missing (query strings such as ?download=true are dropped).
func FileName(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%q is not an http(s) URL", rawURL)
	}
	name := path.Base(u.Path)
	if name == "/" || name == "." || name == "" {
		return "", fmt.Errorf("URL %q names no file: give the file name too", rawURL)
	}
	if !strings.EqualFold(filepath.Ext(name), ".gguf") {
		name += ".gguf"
	}
	return name, nil
}

func validName(name string) error {
	if name == "" || name != filepath.Base(name) || strings.HasPrefix(name, ".") || !strings.EqualFold(filepath.Ext(name), ".gguf") {
		return fmt.Errorf("file name %q: want a plain name ending in .gguf", name)
	}
	return nil
}

// Start begins a download. onProgress (may be nil) is called from the download's
// goroutine (never from the caller of Start or Resume); it must not block for long.
func (d *Downloader) Start(req Request, onProgress func(Progress)) (*Download, error) {
	if req.Name == "" {
		n, err := FileName(req.URL)
		if err != nil {
			return nil, err
		}
		req.Name = n
	} else if _, err := FileName(req.URL); err != nil {
		return nil, err
	}
	if err := validName(req.Name); err != nil {
		return nil, err
	}
	req.SHA256 = strings.ToLower(strings.TrimSpace(req.SHA256))
	if req.SHA256 != "" {
		if b, err := hex.DecodeString(req.SHA256); err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("sha256 %q: want 64 hex digits", req.SHA256)
		}
	}
	final := filepath.Join(d.dir, req.Name)
	if _, err := os.Stat(final); err == nil {
		return nil, fmt.Errorf("%s: %w", final, ErrExists)
	}
	if err := os.MkdirAll(d.dir, 0o755); err != nil {
		return nil, fmt.Errorf("models folder: %w", err)
	}
	dl, err := d.claim(req.Name, onProgress)
	if err != nil {
		return nil, err
	}
	// A leftover partial of another URL must not be glued to this one.
	if old, err := readSidecar(dl.side); err == nil && old.URL != req.URL {
		_ = os.Remove(dl.part)
	}
	dl.meta = sidecar{URL: req.URL, Name: req.Name, SHA256: req.SHA256}
	if err := writeSidecar(dl.side, dl.meta); err != nil {
		d.release(req.Name)
		return nil, err
	}
	dl.start()
	return dl, nil
}

// Pending lists the partial downloads in the models folder (after a restart, say), each
// as a paused Download to Resume or Cancel. Ones already active are returned as they are.
func (d *Downloader) Pending(onProgress func(Progress)) ([]*Download, error) {
	ents, err := os.ReadDir(d.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("models folder: %w", err)
	}
	var out []*Download
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), SidecarSuffix)
		if !ok || validName(name) != nil {
			continue
		}
		d.mu.Lock()
		dl := d.active[name]
		d.mu.Unlock()
		if dl != nil {
			out = append(out, dl)
			continue
		}
		dl, err := d.claim(name, onProgress)
		if err != nil {
			continue
		}
		meta, err := readSidecar(dl.side)
		if err != nil {
			d.release(name)
			continue // a damaged sidecar: leave the files for the user
		}
		dl.meta = meta
		dl.state = Paused
		dl.total = meta.Total
		if st, err := os.Stat(dl.part); err == nil {
			dl.received = st.Size()
		}
		out = append(out, dl)
	}
	return out, nil
}

func (d *Downloader) claim(name string, onProgress func(Progress)) (*Download, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, busy := d.active[name]; busy {
		return nil, fmt.Errorf("%s is already downloading: %w", name, ErrExists)
	}
	if onProgress == nil {
		onProgress = func(Progress) {}
	}
	base := filepath.Join(d.dir, name)
	dl := &Download{d: d, name: name, final: base, part: base + PartSuffix, side: base + SidecarSuffix, onProgress: onProgress}
	d.active[name] = dl
	return dl, nil
}

func (d *Downloader) release(name string) {
	d.mu.Lock()
	delete(d.active, name)
	d.mu.Unlock()
}

// Download is one file being fetched. One goroutine per run owns the transfer; Pause,
// Resume and Cancel stop or start runs.
type Download struct {
	d                  *Downloader
	name               string
	final, part, side  string
	onProgress         func(Progress)
	mu                 sync.Mutex
	meta               sidecar
	state              State
	err                error
	received, total    int64
	speed              float64
	cancel             context.CancelCauseFunc
	done               chan struct{} // closed when the current run ends
	runStart, runBytes int64         // unix nanos and bytes at the start of the run, for speed
}

// Name is the file name in the models folder.
func (dl *Download) Name() string { return dl.name }

// URL is where the file comes from.
func (dl *Download) URL() string {
	dl.mu.Lock()
	defer dl.mu.Unlock()
	return dl.meta.URL
}

// Progress is the latest report.
func (dl *Download) Progress() Progress {
	dl.mu.Lock()
	defer dl.mu.Unlock()
	return dl.progressLocked()
}

func (dl *Download) progressLocked() Progress {
	p := Progress{Name: dl.name, State: dl.state, Received: dl.received, Total: dl.total, BytesPerSec: dl.speed, Err: dl.err}
	if dl.state == Done {
		p.Path = dl.final
	}
	if dl.state == Running && dl.speed > 0 && dl.total > dl.received {
		p.ETA = time.Duration(float64(dl.total-dl.received) / dl.speed * float64(time.Second))
	}
	return p
}

func (dl *Download) report() {
	dl.mu.Lock()
	p := dl.progressLocked()
	dl.mu.Unlock()
	dl.onProgress(p)
}

// start launches a run; dl.mu must not be held.
func (dl *Download) start() {
	ctx, cancel := context.WithCancelCause(context.Background())
	done := make(chan struct{})
	dl.mu.Lock()
	dl.state, dl.err, dl.speed = Running, nil, 0
	dl.cancel, dl.done = cancel, done
	dl.mu.Unlock()
	go func() { // owned by this run: ends when the transfer ends or ctx is cancelled
		defer close(done)
		dl.report() // from here, never the caller's goroutine (it may be a UI thread)
		err := dl.transfer(ctx)
		dl.finish(ctx, err)
	}()
}

func (dl *Download) finish(ctx context.Context, err error) {
	cause := context.Cause(ctx)
	dl.mu.Lock()
	dl.speed = 0
	switch {
	case err == nil:
		dl.state = Done
	case errors.Is(cause, ErrCanceled):
		dl.state, dl.err = Canceled, ErrCanceled
	case errors.Is(cause, ErrPaused):
		dl.state, dl.err = Paused, nil
	default:
		dl.state, dl.err = Failed, err
	}
	state := dl.state
	dl.mu.Unlock()
	// Done, Canceled, and failures that discarded the file free the name for a new Start.
	if state == Done || state == Canceled || errors.As(err, new(*ChecksumError)) || errors.Is(err, ErrNotGGUF) {
		dl.d.release(dl.name)
	}
	if state == Canceled {
		dl.removeFiles()
	}
	dl.report()
}

func (dl *Download) removeFiles() {
	_ = os.Remove(dl.part)
	_ = os.Remove(dl.side)
}

// Pause stops the transfer and keeps the bytes received; Resume continues from them.
func (dl *Download) Pause() {
	dl.mu.Lock()
	if dl.state != Running {
		dl.mu.Unlock()
		return
	}
	cancel, done := dl.cancel, dl.done
	dl.mu.Unlock()
	cancel(ErrPaused)
	<-done
}

// Resume continues a paused or failed download with an HTTP Range request.
func (dl *Download) Resume() error {
	dl.mu.Lock()
	state, err := dl.state, dl.err
	dl.mu.Unlock()
	switch {
	case state == Running:
		return nil
	case state == Done || state == Canceled:
		return fmt.Errorf("%s is %s: start it again", dl.name, state)
	case errors.As(err, new(*ChecksumError)):
		return fmt.Errorf("%s: %w", dl.name, err)
	}
	dl.start()
	return nil
}

// Cancel stops the download and deletes the partial file.
func (dl *Download) Cancel() {
	dl.mu.Lock()
	state, cancel, done := dl.state, dl.cancel, dl.done
	dl.mu.Unlock()
	if state == Running {
		cancel(ErrCanceled)
		<-done
		// A Pause in flight may have cancelled the run first (the first cause wins), so
		// the run can end Paused (or Failed): finish the cancel below.
	}
	dl.mu.Lock()
	state = dl.state
	if state == Paused || state == Failed {
		dl.state, dl.err = Canceled, ErrCanceled
	}
	dl.mu.Unlock()
	if state == Paused || state == Failed {
		dl.d.release(dl.name)
		dl.removeFiles()
		dl.report()
	}
}

// Wait blocks until the current run ends and returns how: nil when the model is in
// place, ErrPaused, ErrCanceled, or the failure.
func (dl *Download) Wait(ctx context.Context) error {
	dl.mu.Lock()
	done := dl.done
	dl.mu.Unlock()
	if done != nil {
		select {
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	dl.mu.Lock()
	defer dl.mu.Unlock()
	switch dl.state {
	case Done:
		return nil
	case Paused:
		return ErrPaused
	default:
		return dl.err
	}
}

// transfer fetches the rest of the file into the partial, then verifies and renames it.
func (dl *Download) transfer(ctx context.Context) error {
	f, err := os.OpenFile(dl.part, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("open %s: %w", dl.part, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", dl.part, err)
	}
	have := st.Size()

	dl.mu.Lock()
	meta := dl.meta
	dl.mu.Unlock()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, meta.URL, nil)
	if err != nil {
		return fmt.Errorf("download %q: %w", meta.URL, err)
	}
	if have > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", have))
		// If the file changed on the server, If-Range makes it send the whole new one.
		if meta.ETag != "" {
			req.Header.Set("If-Range", meta.ETag)
		} else if meta.LastModified != "" {
			req.Header.Set("If-Range", meta.LastModified)
		}
	}
	resp, err := dl.d.client.Do(req)
	if err != nil {
		return dl.netErr(ctx, err, have)
	}
	defer resp.Body.Close()

	switch resp.StatusCode {
	case http.StatusOK:
		if have > 0 { // the whole file: start over
			if err := f.Truncate(0); err != nil {
				return fmt.Errorf("truncate %s: %w", dl.part, err)
			}
			have = 0
		}
		meta.Total = max(resp.ContentLength, 0)
	case http.StatusPartialContent:
		start, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != have {
			return fmt.Errorf("download %s: server resumed at %q, not byte %d: %w", meta.URL, resp.Header.Get("Content-Range"), have, ErrNetwork)
		}
		meta.Total = total
	case http.StatusRequestedRangeNotSatisfiable:
		if meta.Total > 0 && have == meta.Total {
			return dl.complete(meta) // everything was already here
		}
		// The partial is longer than the file: it is stale, start over next time.
		_ = f.Truncate(0)
		return fmt.Errorf("download %s: the partial file did not match the server's; press Resume to start over: %w", meta.URL, ErrNetwork)
	default:
		return &HTTPStatusError{URL: meta.URL, Status: resp.StatusCode}
	}
	meta.ETag, meta.LastModified = resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	if err := writeSidecar(dl.side, meta); err != nil {
		return err
	}
	dl.mu.Lock()
	dl.meta, dl.received, dl.total = meta, have, meta.Total
	dl.runStart, dl.runBytes = time.Now().UnixNano(), have
	dl.mu.Unlock()

	if _, err := f.Seek(have, io.SeekStart); err != nil {
		return fmt.Errorf("seek %s: %w", dl.part, err)
	}
	if err := dl.copy(ctx, f, resp.Body, have, meta.Total); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return writeErr(dl.part, err)
	}
	if err := f.Close(); err != nil {
		return writeErr(dl.part, err)
	}
	return dl.complete(meta)
}

func (dl *Download) copy(ctx context.Context, w io.Writer, r io.Reader, have, total int64) error {
	buf := make([]byte, 256<<10)
	lastReport := time.Now()
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return writeErr(dl.part, err)
			}
			have += int64(n)
			dl.mu.Lock()
			dl.received = have
			if el := time.Since(time.Unix(0, dl.runStart)).Seconds(); el > 0 {
				dl.speed = float64(have-dl.runBytes) / el
			}
			dl.mu.Unlock()
			if time.Since(lastReport) >= dl.d.ReportEvery {
				lastReport = time.Now()
				dl.report()
			}
		}
		if rerr == io.EOF {
			if total > 0 && have != total {
				return dl.netErr(ctx, io.ErrUnexpectedEOF, have)
			}
			return nil
		}
		if rerr != nil {
			return dl.netErr(ctx, rerr, have)
		}
	}
}

func (dl *Download) netErr(ctx context.Context, err error, have int64) error {
	if cause := context.Cause(ctx); cause != nil {
		return cause
	}
	return fmt.Errorf("%w after %d bytes (kept; press Resume to continue): %w", ErrNetwork, have, err)
}

func writeErr(path string, err error) error {
	if errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("%w writing %s: free some space, then press Resume (the bytes received are kept): %w", ErrDiskFull, path, err)
	}
	return fmt.Errorf("write %s: %w", path, err)
}

// complete checks the partial is a GGUF file with the expected digest, then makes it a
// model by renaming it.
func (dl *Download) complete(meta sidecar) error {
	f, err := os.Open(dl.part)
	if err != nil {
		return fmt.Errorf("verify %s: %w", dl.part, err)
	}
	defer f.Close()
	magic := make([]byte, 4)
	if _, err := io.ReadFull(f, magic); err != nil || !bytes.Equal(magic, []byte("GGUF")) {
		dl.removeFiles()
		return fmt.Errorf("%s: %w: the server sent something else (a web page?); the file was discarded", meta.URL, ErrNotGGUF)
	}
	if meta.SHA256 != "" {
		h := sha256.New()
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("verify %s: %w", dl.part, err)
		}
		if _, err := io.Copy(h, f); err != nil {
			return fmt.Errorf("verify %s: %w", dl.part, err)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != meta.SHA256 {
			dl.removeFiles()
			return &ChecksumError{Want: meta.SHA256, Got: got}
		}
	}
	f.Close()
	if _, err := os.Stat(dl.final); err == nil {
		return fmt.Errorf("%s: %w; the download is kept as %s", dl.final, ErrExists, dl.part)
	}
	if err := os.Rename(dl.part, dl.final); err != nil {
		return fmt.Errorf("finish %s: %w", dl.final, err)
	}
	_ = os.Remove(dl.side)
	return nil
}

// parseContentRange reads "bytes START-END/TOTAL" (TOTAL may be "*").
func parseContentRange(h string) (start, total int64, ok bool) {
	rest, ok := strings.CutPrefix(h, "bytes ")
	if !ok {
		return 0, 0, false
	}
	rng, tot, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, 0, false
	}
	s, _, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, 0, false
	}
	start, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	if tot != "*" {
		if total, err = strconv.ParseInt(tot, 10, 64); err != nil {
			return 0, 0, false
		}
	}
	return start, total, true
}

func readSidecar(p string) (sidecar, error) {
	var s sidecar
	b, err := os.ReadFile(p)
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("resume data %s: %w", p, err)
	}
	return s, nil
}

func writeSidecar(p string, s sidecar) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("resume data: %w", err)
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return writeErr(p, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("resume data %s: %w", p, err)
	}
	return nil
}
