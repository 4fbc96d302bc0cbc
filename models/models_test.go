package models

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
)

func TestInspectTestModel(t *testing.T) {
	info, err := Inspect(testenv.Model(t))
	if err != nil {
		t.Fatal(err)
	}
	if info.Architecture != "llama" || info.Layers != 5 || info.ContextLength != 2048 {
		t.Fatalf("arch/layers/ctx = %q/%d/%d, want llama/5/2048", info.Architecture, info.Layers, info.ContextLength)
	}
	if info.Name != "stories260K" || info.Quantization != "F32" || info.HasChatTemplate {
		t.Fatalf("name/quant/template = %q/%q/%v", info.Name, info.Quantization, info.HasChatTemplate)
	}
	if info.Parameters < 250_000 || info.Parameters > 350_000 {
		t.Fatalf("parameters = %d, want ~260K", info.Parameters)
	}
}

func TestLibraryListsUnreadableFilesWithReason(t *testing.T) {
	dir := t.TempDir()
	lib, err := OpenLibrary(filepath.Join(dir, "models"), filepath.Join(dir, "models.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(lib.Dir(), "junk.gguf"), []byte("not a model at all"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(lib.Dir(), "half.gguf"+PartSuffix), []byte("GGUF"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := lib.Add(testenv.Model(t)); err != nil {
		t.Fatal(err)
	}
	list := lib.List()
	if len(list) != 2 {
		t.Fatalf("library lists %d models, want 2 (junk + test model; never the .part): %+v", len(list), list)
	}
	if list[0].Name != "junk" || !errors.Is(list[0].Err, ErrNotGGUF) {
		t.Fatalf("junk.gguf listed as %+v, want ErrNotGGUF", list[0])
	}
	if list[1].Err != nil || list[1].Architecture != "llama" {
		t.Fatalf("test model listed as %+v", list[1])
	}

	// The added file survives a reopen.
	lib2, err := OpenLibrary(lib.Dir(), filepath.Join(dir, "models.json"))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(lib2.List()); n != 2 {
		t.Fatalf("reopened library lists %d, want 2", n)
	}

	// In use: refused, file kept. Added file: forgotten, file kept. Folder file: deleted.
	inUse := func(p string) bool { return p == testenv.Model(t) }
	if _, err := lib2.Delete(testenv.Model(t), inUse); !errors.Is(err, ErrInUse) {
		t.Fatalf("delete of a model in use: %v, want ErrInUse", err)
	}
	if what, err := lib2.Delete(testenv.Model(t), nil); err != nil || what != Forgotten {
		t.Fatalf("delete added model: %v %v, want Forgotten", what, err)
	}
	if _, err := os.Stat(testenv.Model(t)); err != nil {
		t.Fatalf("the user's own file was touched: %v", err)
	}
	if what, err := lib2.Delete(filepath.Join(lib.Dir(), "junk.gguf"), nil); err != nil || what != FileDeleted {
		t.Fatalf("delete folder model: %v %v", what, err)
	}
	if n := len(lib2.List()); n != 0 {
		t.Fatalf("after deletes the library lists %d, want 0", n)
	}
}

// modelServer serves the test model with Range support (http.ServeContent). When
// cutAfter > 0, the first full (non-Range) request is cut after that many bytes.
type modelServer struct {
	*httptest.Server
	data     []byte
	cutAfter int64
	cut      atomic.Bool
	ranges   atomic.Int32
	// hold, when set, makes requests without Range send half the file and then wait for
	// the client to go away: a slow transfer to pause in the middle.
	hold atomic.Bool
}

func newModelServer(t *testing.T) *modelServer {
	t.Helper()
	data, err := os.ReadFile(testenv.Model(t))
	if err != nil {
		t.Fatal(err)
	}
	s := &modelServer{data: data}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /m/stories260K.gguf", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Range") != "" {
			s.ranges.Add(1)
		}
		if r.Header.Get("Range") == "" && s.hold.Load() {
			w.Header().Set("Content-Length", strconv.Itoa(len(s.data)))
			w.Header().Set("ETag", `"v1"`)
			w.WriteHeader(http.StatusOK)
			w.Write(s.data[:len(s.data)/2])
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return
		}
		if r.Header.Get("Range") == "" && s.cutAfter > 0 && !s.cut.Swap(true) {
			w.Header().Set("Content-Length", strconv.Itoa(len(s.data)))
			w.Header().Set("ETag", `"v1"`)
			w.WriteHeader(http.StatusOK)
			w.Write(s.data[:s.cutAfter])
			w.(http.Flusher).Flush()
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close() // the transfer dies mid-file
			}
			return
		}
		w.Header().Set("ETag", `"v1"`)
		http.ServeContent(w, r, "stories260K.gguf", time.Unix(1700000000, 0), bytes.NewReader(s.data))
	})
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func sha(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

type recorder struct {
	mu   sync.Mutex
	seen []Progress
}

func (r *recorder) add(p Progress) {
	r.mu.Lock()
	r.seen = append(r.seen, p)
	r.mu.Unlock()
}

func (r *recorder) all() []Progress {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Progress(nil), r.seen...)
}

func waitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestDownloadFullWithProgress(t *testing.T) {
	srv := newModelServer(t)
	d := NewDownloader(t.TempDir(), srv.Client())
	d.ReportEvery = 0 // every read reports
	var rec recorder
	dl, err := d.Start(Request{URL: srv.URL + "/m/stories260K.gguf?download=true", SHA256: sha(srv.data)}, rec.add)
	if err != nil {
		t.Fatal(err)
	}
	if err := dl.Wait(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(d.dir, "stories260K.gguf"))
	if err != nil || !bytes.Equal(got, srv.data) {
		t.Fatalf("downloaded file differs from the served one (err %v)", err)
	}
	seen := rec.all()
	last := seen[len(seen)-1]
	if last.State != Done || last.Received != int64(len(srv.data)) || last.Total != int64(len(srv.data)) || last.Path == "" {
		t.Fatalf("last progress %+v, want Done with all bytes", last)
	}
	var mid bool
	for _, p := range seen {
		if p.State == Running && p.Received > 0 && p.Received < p.Total && p.BytesPerSec > 0 {
			mid = true
		}
	}
	if !mid {
		t.Fatalf("no progress event in the middle of the transfer: %+v", seen)
	}
	for _, suffix := range []string{PartSuffix, SidecarSuffix} {
		if _, err := os.Stat(filepath.Join(d.dir, "stories260K.gguf"+suffix)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s left behind after success", suffix)
		}
	}
}

func TestDownloadCutThenResumedAfterRestart(t *testing.T) {
	srv := newModelServer(t)
	srv.cutAfter = int64(len(srv.data)) / 3
	dir := t.TempDir()
	d := NewDownloader(dir, srv.Client())
	dl, err := d.Start(Request{URL: srv.URL + "/m/stories260K.gguf", SHA256: sha(srv.data)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = dl.Wait(waitCtx(t))
	if !errors.Is(err, ErrNetwork) {
		t.Fatalf("cut transfer ended with %v, want ErrNetwork", err)
	}
	part := filepath.Join(dir, "stories260K.gguf"+PartSuffix)
	st, err := os.Stat(part)
	if err != nil || st.Size() == 0 {
		t.Fatalf("partial data not kept after the cut: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "stories260K.gguf")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a partial file masquerades as the model")
	}

	// A new Downloader (the app restarted) finds the partial and resumes it with Range.
	d2 := NewDownloader(dir, srv.Client())
	pending, err := d2.Pending(nil)
	if err != nil || len(pending) != 1 || pending[0].Progress().Received != st.Size() {
		t.Fatalf("pending after restart = %v, %v; want one with %d bytes", pending, err, st.Size())
	}
	if err := pending[0].Resume(); err != nil {
		t.Fatal(err)
	}
	if err := pending[0].Wait(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	if srv.ranges.Load() == 0 {
		t.Fatal("resume did not use an HTTP Range request")
	}
	got, _ := os.ReadFile(filepath.Join(dir, "stories260K.gguf"))
	if !bytes.Equal(got, srv.data) {
		t.Fatal("resumed file is not byte-identical to the served one")
	}
}

func TestDownloadPauseResume(t *testing.T) {
	srv := newModelServer(t)
	srv.hold.Store(true)
	dir := t.TempDir()
	d := NewDownloader(dir, srv.Client())
	d.ReportEvery = 0
	half := make(chan struct{})
	var once sync.Once
	dl, err := d.Start(Request{URL: srv.URL + "/m/stories260K.gguf"}, func(p Progress) {
		if p.Received >= int64(len(srv.data)/2) {
			once.Do(func() { close(half) })
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-half:
	case <-waitCtx(t).Done():
		t.Fatal("no progress to half the file")
	}
	dl.Pause()
	if err := dl.Wait(waitCtx(t)); !errors.Is(err, ErrPaused) {
		t.Fatalf("after Pause, Wait = %v, want ErrPaused", err)
	}
	if p := dl.Progress(); p.State != Paused || p.Received != int64(len(srv.data)/2) {
		t.Fatalf("paused progress %+v", p)
	}
	if err := dl.Resume(); err != nil {
		t.Fatal(err)
	}
	if err := dl.Wait(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(dir, "stories260K.gguf"))
	if !bytes.Equal(got, srv.data) {
		t.Fatal("paused and resumed file differs")
	}
}

func TestDownloadCancelRemovesPartial(t *testing.T) {
	srv := newModelServer(t)
	srv.hold.Store(true)
	dir := t.TempDir()
	d := NewDownloader(dir, srv.Client())
	d.ReportEvery = 0
	started := make(chan struct{})
	var once sync.Once
	dl, err := d.Start(Request{URL: srv.URL + "/m/stories260K.gguf"}, func(p Progress) {
		if p.Received > 0 {
			once.Do(func() { close(started) })
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	<-started
	dl.Cancel()
	if err := dl.Wait(waitCtx(t)); !errors.Is(err, ErrCanceled) {
		t.Fatalf("Wait after Cancel = %v", err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 0 {
		t.Fatalf("cancel left files: %v", ents)
	}
}

func TestDownloadWrongSHA256Rejected(t *testing.T) {
	srv := newModelServer(t)
	dir := t.TempDir()
	d := NewDownloader(dir, srv.Client())
	dl, err := d.Start(Request{URL: srv.URL + "/m/stories260K.gguf", SHA256: strings.Repeat("ab", 32)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = dl.Wait(waitCtx(t))
	var ce *ChecksumError
	if !errors.As(err, &ce) || ce.Got != sha(srv.data) {
		t.Fatalf("wrong sha256 gave %v, want *ChecksumError with the real digest", err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 0 {
		t.Fatalf("a rejected download left files: %v", ents)
	}
}

func TestDownload404Reported(t *testing.T) {
	srv := newModelServer(t)
	d := NewDownloader(t.TempDir(), srv.Client())
	dl, err := d.Start(Request{URL: srv.URL + "/m/missing.gguf"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = dl.Wait(waitCtx(t))
	var he *HTTPStatusError
	if !errors.Is(err, ErrNotFound) || !errors.As(err, &he) || he.Status != 404 {
		t.Fatalf("404 gave %v", err)
	}
	if p := dl.Progress(); p.State != Failed {
		t.Fatalf("state %v after 404, want failed", p.State)
	}
}

func TestDownloadRejectsBadInput(t *testing.T) {
	d := NewDownloader(t.TempDir(), nil)
	for name, req := range map[string]Request{
		"not http":   {URL: "ftp://x/y.gguf"},
		"no file":    {URL: "https://example.com/"},
		"bad sha":    {URL: "https://example.com/a.gguf", SHA256: "xyz"},
		"path name":  {URL: "https://example.com/a.gguf", Name: "../a.gguf"},
		"not a gguf": {URL: "https://example.com/a.gguf", Name: "a.bin"},
	} {
		if _, err := d.Start(req, nil); err == nil {
			t.Errorf("%s: Start accepted %+v", name, req)
		}
	}
}

func TestFileNameFromHuggingFaceURL(t *testing.T) {
	got, err := FileName("https://huggingface.co/org/repo/resolve/main/model-Q4_K_M.gguf?download=true")
	if err != nil || got != "model-Q4_K_M.gguf" {
		t.Fatalf("FileName = %q, %v", got, err)
	}
}

// A Cancel pressed while a Pause is in flight must still cancel: the run's first cause
// (ErrPaused) must not leave it Paused with its partial files kept.
func TestDownloadCancelDuringPauseCancels(t *testing.T) {
	srv := newModelServer(t)
	srv.hold.Store(true)
	for i := 0; i < 20; i++ {
		dir := t.TempDir()
		d := NewDownloader(dir, srv.Client())
		d.ReportEvery = 0
		started := make(chan struct{})
		var once sync.Once
		dl, err := d.Start(Request{URL: srv.URL + "/m/stories260K.gguf"}, func(p Progress) {
			if p.Received > 0 {
				once.Do(func() { close(started) })
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		<-started
		// What Pause does first, without waiting for the run to end: the Pause is in flight.
		dl.mu.Lock()
		pause := dl.cancel
		dl.mu.Unlock()
		pause(ErrPaused)
		dl.Cancel()
		if err := dl.Wait(waitCtx(t)); !errors.Is(err, ErrCanceled) {
			t.Fatalf("iteration %d: Wait after Pause+Cancel = %v, want ErrCanceled", i, err)
		}
		if p := dl.Progress(); p.State != Canceled {
			t.Fatalf("iteration %d: state %v, want canceled", i, p.State)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Fatalf("iteration %d: cancel left files: %v", i, ents)
		}
		// The name is free again.
		if _, err := d.Start(Request{URL: srv.URL + "/m/stories260K.gguf"}, nil); err != nil {
			t.Fatalf("iteration %d: name not released: %v", i, err)
		}
		d.mu.Lock()
		again := d.active["stories260K.gguf"]
		d.mu.Unlock()
		again.Cancel()
	}
}
