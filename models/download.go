package models

import (
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
	// ErrStalled: no byte arrived for Downloader.StallTimeout. The bytes received are kept.
	ErrStalled = errors.New("download stalled")
	// ErrIncomplete: the server ended the transfer before the end of the model (it had
	// not said how long the file is, so only the GGUF header tells). Resume fetches the rest.
	ErrIncomplete = errors.New("download incomplete")
)

// maxRedirects is how many redirects a download follows (as Go's client and browsers:
// Hugging Face's resolve links take one or two).
const maxRedirects = 10

// RedirectError means the URL never led to a file: the server redirects in a loop, or
// too many times.
type RedirectError struct {
	URL  string
	Hops []string // the URLs visited, the first one first
	Loop bool     // the last hop led back to a URL already visited
}

func (e *RedirectError) Error() string {
	if e.Loop {
		return fmt.Sprintf("download %s: the server redirects in a loop (%s): the link is broken; check the URL",
			e.URL, strings.Join(e.Hops, " → "))
	}
	return fmt.Sprintf("download %s: the server redirected %d times without reaching a file: check the URL",
		e.URL, len(e.Hops)-1)
}

// SizeError means the file is not as long as the request said it would be.
type SizeError struct{ Want, Got int64 }

func (e *SizeError) Error() string {
	return fmt.Sprintf("the file is %d bytes, expected %d: it is not the file asked for (check the URL); the file was discarded", e.Got, e.Want)
}

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
	case http.StatusNotFound, http.StatusGone:
		hint = ": check the URL (Hugging Face links look like .../resolve/main/FILE.gguf)"
	case http.StatusTooManyRequests:
		hint = ": the server wants fewer requests; wait a minute, then try again"
	default:
		if e.Status >= 500 {
			hint = ": the server failed; try again later"
		}
	}
	return fmt.Sprintf("download %s: server answered %d %s%s", e.URL, e.Status, http.StatusText(e.Status), hint)
}

// Is makes a 404 match ErrNotFound.
func (e *HTTPStatusError) Is(target error) bool {
	return target == ErrNotFound && e.Status == http.StatusNotFound
}

// Transient says whether asking again later may succeed: server errors, 408 and 429.
// Other answers (404, 403, …) will not change by waiting.
func (e *HTTPStatusError) Transient() bool {
	return e.Status >= 500 || e.Status == http.StatusRequestTimeout || e.Status == http.StatusTooManyRequests
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
	Failed // Err says why; CanResume says whether Resume continues from kept bytes
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
	// CanResume: Paused, or Failed with the bytes received (or, for a full disk, the
	// resume record) kept, so Resume continues. A Failed download that cannot resume has
	// left no file behind; start it again (Retry) with Download.Request.
	CanResume bool
}

// Request asks for one file.
type Request struct {
	URL    string
	Name   string // file name in the models folder; default: the URL's last path element
	SHA256 string // hex; verified when set
	Size   int64  // bytes; verified when set (a Hub file tree lists sizes)
}

// sidecar is the resume metadata stored beside the partial file.
type sidecar struct {
	URL          string `json:"url"`
	Name         string `json:"name"`
	SHA256       string `json:"sha256,omitempty"`
	Size         int64  `json:"size,omitempty"`  // as requested
	Total        int64  `json:"total,omitempty"` // as the server said; 0 when it did not
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"last_modified,omitempty"`
}

// Downloader fetches models into the models folder.
type Downloader struct {
	dir    string
	client *http.Client
	// ReportEvery bounds how often progress is reported while bytes flow.
	ReportEvery time.Duration
	// StallTimeout ends a run that receives no byte for this long (also while waiting
	// for the answer) with ErrStalled; 0 waits forever.
	StallTimeout time.Duration

	mu     sync.Mutex
	active map[string]*Download
}

// DefaultStallTimeout is how long a download waits for the next byte.
const DefaultStallTimeout = 30 * time.Second

// NewDownloader downloads into dir using hc (nil = a client whose dials and response
// headers time out, but whose body may take as long as the file needs).
func NewDownloader(dir string, hc *http.Client) *Downloader {
	if hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.ResponseHeaderTimeout = 30 * time.Second
		hc = &http.Client{Transport: tr}
	}
	return &Downloader{dir: dir, client: hc, ReportEvery: 200 * time.Millisecond,
		StallTimeout: DefaultStallTimeout, active: map[string]*Download{}}
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
	if req.Size < 0 {
		return nil, fmt.Errorf("size %d: want the file's length in bytes, or 0 when unknown", req.Size)
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
	dl.meta = sidecar{URL: req.URL, Name: req.Name, SHA256: req.SHA256, Size: req.Size}
	// A leftover partial of the same URL is continued (If-Range guards it); one of
	// another URL, or of none, must not be glued to this one.
	if old, err := readSidecar(dl.side); err == nil && old.URL == req.URL {
		dl.meta.Total, dl.meta.ETag, dl.meta.LastModified = old.Total, old.ETag, old.LastModified
	} else if err := dl.removeFiles(); err != nil {
		d.release(dl)
		return nil, err
	}
	// The resume record is written once the server answers with the file: a URL that
	// fails leaves nothing behind.
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
			d.release(dl)
			continue // a damaged sidecar: leave the files for the user
		}
		st, err := os.Stat(dl.part)
		if err != nil || st.Size() == 0 {
			// Nothing was received: there is nothing to resume (an older version left
			// these behind for failed URLs).
			d.release(dl)
			_ = dl.removeFiles()
			continue
		}
		dl.meta = meta
		dl.state = Paused
		dl.total = meta.Total
		dl.received = st.Size()
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

// release frees dl's name for a new Start, unless a new download holds it already.
func (d *Downloader) release(dl *Download) {
	d.mu.Lock()
	if d.active[dl.name] == dl {
		delete(d.active, dl.name)
	}
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
	discarded          bool // failed and its files removed: only a new Start can retry
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

// Request is what was asked for: Start it again to retry a download that cannot resume.
func (dl *Download) Request() Request {
	dl.mu.Lock()
	defer dl.mu.Unlock()
	return Request{URL: dl.meta.URL, Name: dl.name, SHA256: dl.meta.SHA256, Size: dl.meta.Size}
}

// Progress is the latest report.
func (dl *Download) Progress() Progress {
	dl.mu.Lock()
	defer dl.mu.Unlock()
	return dl.progressLocked()
}

func (dl *Download) progressLocked() Progress {
	p := Progress{Name: dl.name, State: dl.state, Received: dl.received, Total: dl.total, BytesPerSec: dl.speed, Err: dl.err,
		CanResume: dl.state == Paused || (dl.state == Failed && !dl.discarded)}
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
	dl.state, dl.err, dl.speed, dl.discarded = Running, nil, 0, false
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
	var state State
	switch {
	case err == nil:
		state = Done
	case errors.Is(cause, ErrCanceled):
		state, err = Canceled, ErrCanceled
	case errors.Is(cause, ErrPaused):
		state, err = Paused, nil
	default:
		state = Failed
	}
	// A failure keeps the partial only when Resume can use it: a file to continue, or
	// (disk full) the record of what to fetch once space is freed.
	discard := state == Canceled || (state == Failed && (permanent(err) || (!dl.partHasBytes() && !errors.Is(err, ErrDiskFull))))
	if discard {
		_ = dl.removeFiles() // best effort: the run's own error says more
	}
	dl.mu.Lock()
	dl.speed = 0
	dl.state, dl.err, dl.discarded = state, err, discard && state == Failed
	if state == Done && dl.total > 0 {
		dl.received = dl.total // also when the bytes were already there (a 416)
	}
	dl.mu.Unlock()
	// Done, Canceled, and failures that left nothing free the name for a new Start.
	if state == Done || discard {
		dl.d.release(dl)
	}
	dl.report()
}

// permanent says whether a failure will happen again however often it is resumed: the
// file is not the one asked for, or the URL does not lead to one.
func permanent(err error) bool {
	var hs *HTTPStatusError
	if errors.As(err, &hs) {
		return !hs.Transient()
	}
	return errors.As(err, new(*ChecksumError)) || errors.As(err, new(*SizeError)) ||
		errors.As(err, new(*RedirectError)) || errors.Is(err, ErrNotGGUF)
}

// partHasBytes says whether the partial file holds something to resume from.
func (dl *Download) partHasBytes() bool {
	st, err := os.Stat(dl.part)
	return err == nil && st.Mode().IsRegular() && st.Size() > 0
}

// removeFiles deletes the partial and its resume record; the partial's error is
// returned (a missing file is not one).
func (dl *Download) removeFiles() error {
	err := os.Remove(dl.part)
	_ = os.Remove(dl.side)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove the partial download %s: %w", dl.part, err)
	}
	return nil
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

// Resume continues a paused or failed download with an HTTP Range request. A failure
// that left no partial (Progress().CanResume false) cannot resume: Start it again.
func (dl *Download) Resume() error {
	dl.mu.Lock()
	state, err, discarded := dl.state, dl.err, dl.discarded
	dl.mu.Unlock()
	switch {
	case state == Running:
		return nil
	case state == Done || state == Canceled:
		return fmt.Errorf("%s is %s: start it again", dl.name, state)
	case discarded:
		return fmt.Errorf("%s: nothing was kept to resume (%w): start the download again", dl.name, err)
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
	discarded := dl.discarded
	if state == Paused || state == Failed {
		dl.state, dl.err, dl.discarded = Canceled, ErrCanceled, false
	}
	dl.mu.Unlock()
	if state == Paused || state == Failed {
		if !discarded { // else the files may be a newer download's
			dl.d.release(dl)
			_ = dl.removeFiles()
		}
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
	have, err := dl.partSize()
	if err != nil {
		return err
	}
	dl.mu.Lock()
	meta := dl.meta
	dl.mu.Unlock()

	// The watchdog ends the request when no byte comes for StallTimeout, whether the
	// server never answers or stops halfway; each read that brings bytes resets it.
	reqCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	alive := func() {}
	if t := dl.d.StallTimeout; t > 0 {
		watch := time.AfterFunc(t, func() { stop(ErrStalled) })
		defer watch.Stop()
		alive = func() { watch.Reset(t) }
	}

	req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, meta.URL, nil)
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
	client := *dl.d.client // the caller's client, with our redirect rule
	client.CheckRedirect = checkRedirect
	resp, err := client.Do(req)
	if err != nil {
		if re := new(RedirectError); errors.As(err, &re) {
			return re
		}
		return dl.netErr(ctx, reqCtx, err, have)
	}
	defer resp.Body.Close()
	alive()

	switch resp.StatusCode {
	case http.StatusOK:
		have = 0 // the whole file, also when a Range was asked for: start over
		meta.Total = max(resp.ContentLength, 0)
	case http.StatusPartialContent:
		start, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != have {
			return fmt.Errorf("download %s: server resumed at %q, not byte %d: %w", meta.URL, resp.Header.Get("Content-Range"), have, ErrNetwork)
		}
		meta.Total = total
	case http.StatusRequestedRangeNotSatisfiable:
		// Nothing after our bytes: "bytes */N" says how long the server's file is.
		// Without it, the server has nothing after our bytes either way.
		if n, ok := unsatisfiedRange(resp.Header.Get("Content-Range")); ok {
			meta.Total = n
		} else {
			meta.Total = have
		}
		if have == meta.Total {
			return dl.complete(meta) // everything the server has is here
		}
		// The partial is longer than the file: it is stale.
		_ = os.Remove(dl.part)
		return fmt.Errorf("download %s: the partial file was longer than the server's (%d bytes); it was discarded: %w", meta.URL, meta.Total, ErrNetwork)
	default:
		return &HTTPStatusError{URL: meta.URL, Status: resp.StatusCode}
	}
	if meta.Size > 0 && meta.Total > 0 && meta.Total != meta.Size {
		return &SizeError{Want: meta.Size, Got: meta.Total}
	}
	meta.ETag, meta.LastModified = resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	// The record first: a partial on disk always has one.
	if err := writeSidecar(dl.side, meta); err != nil {
		return err
	}
	flags := os.O_WRONLY | os.O_CREATE
	if have == 0 {
		flags |= os.O_TRUNC
	}
	f, err := os.OpenFile(dl.part, flags, 0o644)
	if err != nil {
		return writeErr(dl.part, err)
	}
	defer f.Close()
	dl.mu.Lock()
	dl.meta, dl.received, dl.total = meta, have, meta.Total
	dl.runStart, dl.runBytes = time.Now().UnixNano(), have
	dl.mu.Unlock()

	if _, err := f.Seek(have, io.SeekStart); err != nil {
		return fmt.Errorf("seek %s: %w", dl.part, err)
	}
	if err := dl.copy(ctx, reqCtx, f, resp.Body, have, meta.Total, alive); err != nil {
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

// partSize is how many bytes the partial holds (0 when there is none). Only regular
// files (or devices, as /dev/full in a test) are written to: opening a FIFO would block.
func (dl *Download) partSize() (int64, error) {
	st, err := os.Stat(dl.part)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("partial download %s: %w", dl.part, err)
	case st.Mode()&(fs.ModeNamedPipe|fs.ModeSocket|fs.ModeDir) != 0:
		return 0, fmt.Errorf("partial download %s is %s, not a file: remove it, then start again", dl.part, fileKind(st.Mode()))
	}
	return st.Size(), nil
}

// checkRedirect follows up to maxRedirects redirects and refuses a loop at once.
func checkRedirect(req *http.Request, via []*http.Request) error {
	hops := make([]string, 0, len(via)+1)
	loop := false
	for _, v := range via {
		hops = append(hops, v.URL.String())
		loop = loop || v.URL.String() == req.URL.String()
	}
	hops = append(hops, req.URL.String())
	if loop || len(via) >= maxRedirects {
		return &RedirectError{URL: hops[0], Hops: hops, Loop: loop}
	}
	return nil
}

func (dl *Download) copy(ctx, reqCtx context.Context, w io.Writer, r io.Reader, have, total int64, alive func()) error {
	buf := make([]byte, 256<<10)
	lastReport := time.Now()
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			alive()
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
				return dl.netErr(ctx, reqCtx, io.ErrUnexpectedEOF, have)
			}
			return nil
		}
		if rerr != nil {
			return dl.netErr(ctx, reqCtx, rerr, have)
		}
	}
}

// netErr explains a transfer that broke off: paused or canceled (the run's cause),
// stalled (the watchdog's), or the network's error.
func (dl *Download) netErr(ctx, reqCtx context.Context, err error, have int64) error {
	if cause := context.Cause(ctx); cause != nil {
		return cause
	}
	if errors.Is(context.Cause(reqCtx), ErrStalled) {
		if have == 0 {
			return fmt.Errorf("%w: no data from the server for %v: try again later", ErrStalled, dl.d.StallTimeout)
		}
		return fmt.Errorf("%w: no data from the server for %v after %s (kept; press Resume to continue)",
			ErrStalled, dl.d.StallTimeout, FormatBytes(uint64(have)))
	}
	if have == 0 {
		return fmt.Errorf("%w before any data arrived: %w: check the connection and the URL, then try again", ErrNetwork, err)
	}
	return fmt.Errorf("%w after %s (kept; press Resume to continue): %w", ErrNetwork, FormatBytes(uint64(have)), err)
}

func writeErr(path string, err error) error {
	if errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("%w writing %s: free some space, then press Resume (the bytes received are kept): %w", ErrDiskFull, path, err)
	}
	return fmt.Errorf("write %s: %w", path, err)
}

// complete makes the partial a model once it is one: a complete GGUF file (the header
// reader checks every tensor's data is inside it), of the expected size and sha256.
// A file that ended early while the server never said its length is incomplete, and
// Resume fetches the rest; any other mismatch is permanent.
func (dl *Download) complete(meta sidecar) error {
	f, err := os.Open(dl.part)
	if err != nil {
		return fmt.Errorf("verify %s: %w", dl.part, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("verify %s: %w", dl.part, err)
	}
	size := st.Size()
	lengthKnown := meta.Total > 0
	if meta.Size > 0 && size < meta.Size && !lengthKnown {
		return fmt.Errorf("%w: the server ended the transfer after %s of %s (kept; press Resume to fetch the rest)",
			ErrIncomplete, FormatBytes(uint64(size)), FormatBytes(uint64(meta.Size)))
	}
	if meta.Size > 0 && size != meta.Size {
		return &SizeError{Want: meta.Size, Got: size}
	}
	if _, err := readGGUF(f, size); err != nil {
		cut := errors.Is(err, ErrTruncated) || errors.Is(err, errTooLarge)
		switch {
		case cut && !lengthKnown:
			// Not wrapped: this error is not "not GGUF", it is "not all of it yet".
			need := "the rest of the model"
			if he := new(headerError); errors.As(err, &he) && he.Need > 0 {
				need = "a model of " + FormatBytes(he.Need)
			}
			return fmt.Errorf("%w: the server ended the transfer after %s, before the end of %s; the bytes are kept: press Resume to fetch the rest",
				ErrIncomplete, FormatBytes(uint64(size)), need)
		case errors.Is(err, errBadMagic):
			return fmt.Errorf("%s sent something that is not a GGUF model (a web page?): %w; the file was discarded", meta.URL, err)
		case errors.Is(err, ErrNotGGUF):
			return fmt.Errorf("%s is not a complete GGUF model: %w; the file was discarded (the file on the server is damaged or cut short)", meta.URL, err)
		default:
			return fmt.Errorf("verify %s: %w", dl.part, err)
		}
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

// unsatisfiedRange reads a 416's "bytes */TOTAL".
func unsatisfiedRange(h string) (int64, bool) {
	tot, ok := strings.CutPrefix(h, "bytes */")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(tot, 10, 64)
	return n, err == nil && n >= 0
}

func readSidecar(p string) (sidecar, error) {
	var s sidecar
	// A FIFO named like a record would block the read (and the library's start).
	if st, err := os.Stat(p); err != nil {
		return s, err
	} else if !st.Mode().IsRegular() {
		return s, fmt.Errorf("resume data %s is %s, not a file", p, fileKind(st.Mode()))
	}
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
