package models

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
)

// Servers on loopback that misbehave the ways real ones do (issue 15 item 13): each
// download must end in a state that says what happened, with no file marked done that
// is not the model, and no partial left behind unless Resume can use it.

// serveRaw answers with a hand-written HTTP/1.1 response and closes the connection:
// no Content-Length, so the client reads the body until the close, which looks like a
// clean end of file.
func serveRaw(w http.ResponseWriter, body []byte) {
	conn, buf, err := w.(http.Hijacker).Hijack()
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n")
	buf.Write(body)
	buf.Flush()
}

func testModel(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(testenv.Model(t))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// newDL is a Downloader on a fresh folder with a short stall timeout.
func newDL(t *testing.T, srv *httptest.Server) (*Downloader, string) {
	t.Helper()
	dir := t.TempDir()
	d := NewDownloader(dir, srv.Client())
	d.StallTimeout = 500 * time.Millisecond
	return d, dir
}

func startAndWait(t *testing.T, d *Downloader, req Request) (*Download, error) {
	t.Helper()
	dl, err := d.Start(req, nil)
	if err != nil {
		t.Fatal(err)
	}
	return dl, dl.Wait(waitCtx(t))
}

// dirHolds fails unless the folder holds exactly these names.
func dirHolds(t *testing.T, dir string, want ...string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("folder holds %q, want %q", got, want)
	}
}

// mustNotResume checks a failure that left nothing: no Resume offered, Resume refused,
// the name free for a new Start.
func mustNotResume(t *testing.T, d *Downloader, dl *Download) {
	t.Helper()
	p := dl.Progress()
	if p.State != Failed || p.CanResume {
		t.Fatalf("progress %+v, want Failed without resume", p)
	}
	if err := dl.Resume(); err == nil {
		t.Fatal("Resume accepted a download that kept nothing")
	}
	again, err := d.Start(dl.Request(), nil)
	if err != nil {
		t.Fatalf("the name is not free for a retry: %v", err)
	}
	again.Cancel()
}

// A server that sends no Content-Length and closes halfway: the body "ends" cleanly,
// but the GGUF header says the model is longer. Not done: incomplete, kept, resumable.
func TestDownloadNoLengthClosedHalfwayIsIncompleteAndResumes(t *testing.T) {
	data := testModel(t)
	var ranges atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Range") == "" {
			serveRaw(w, data[:len(data)/2])
			return
		}
		ranges.Add(1)
		http.ServeContent(w, r, "m.gguf", time.Unix(1700000000, 0), bytes.NewReader(data))
	}))
	defer srv.Close()
	d, dir := newDL(t, srv)
	dl, err := startAndWait(t, d, Request{URL: srv.URL + "/m.gguf"})
	if !errors.Is(err, ErrIncomplete) || errors.Is(err, ErrNotGGUF) {
		t.Fatalf("a transfer cut without Content-Length ended with %v, want ErrIncomplete", err)
	}
	if !strings.Contains(err.Error(), "Resume") {
		t.Errorf("the error does not say what to do: %v", err)
	}
	if p := dl.Progress(); p.State != Failed || !p.CanResume {
		t.Fatalf("progress %+v, want Failed and resumable", p)
	}
	dirHolds(t, dir, "m.gguf"+PartSuffix, "m.gguf"+SidecarSuffix)

	if err := dl.Resume(); err != nil {
		t.Fatal(err)
	}
	if err := dl.Wait(waitCtx(t)); err != nil {
		t.Fatalf("resume: %v", err)
	}
	if ranges.Load() == 0 {
		t.Fatal("resume did not ask for the rest with Range")
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "m.gguf")); !bytes.Equal(got, data) {
		t.Fatal("the resumed model is not byte-identical")
	}
}

// The same server answering a Range request with 416 "nothing after that": the file on
// the server is itself cut short. Permanent: discarded, not resumable.
func TestDownloadServersOwnFileCutShortIsDiscarded(t *testing.T) {
	data := testModel(t)
	half := data[:len(data)/2]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Range") == "" {
			serveRaw(w, half)
			return
		}
		http.ServeContent(w, r, "m.gguf", time.Unix(1700000000, 0), bytes.NewReader(half))
	}))
	defer srv.Close()
	d, dir := newDL(t, srv)
	dl, err := startAndWait(t, d, Request{URL: srv.URL + "/m.gguf"})
	if !errors.Is(err, ErrIncomplete) {
		t.Fatalf("first run: %v, want ErrIncomplete", err)
	}
	if err := dl.Resume(); err != nil {
		t.Fatal(err)
	}
	err = dl.Wait(waitCtx(t))
	if !errors.Is(err, ErrNotGGUF) || !errors.Is(err, ErrTruncated) {
		t.Fatalf("resume of a file the server has only half of: %v, want ErrNotGGUF + ErrTruncated", err)
	}
	dirHolds(t, dir)
	mustNotResume(t, d, dl)
}

// A server that stops sending: the run ends with ErrStalled after StallTimeout, keeps
// the bytes, and Resume finishes the file.
func TestDownloadStallTimesOutAndResumes(t *testing.T) {
	data := testModel(t)
	var stall atomic.Bool
	stall.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if stall.Load() {
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			w.Header().Set("ETag", `"v1"`)
			w.Write(data[:len(data)/3])
			w.(http.Flusher).Flush()
			<-r.Context().Done() // the connection stays open, and silent
			return
		}
		w.Header().Set("ETag", `"v1"`)
		http.ServeContent(w, r, "m.gguf", time.Unix(1700000000, 0), bytes.NewReader(data))
	}))
	defer srv.Close()
	d, dir := newDL(t, srv)
	start := time.Now()
	dl, err := startAndWait(t, d, Request{URL: srv.URL + "/m.gguf", SHA256: sha(data)})
	if !errors.Is(err, ErrStalled) {
		t.Fatalf("a silent server gave %v, want ErrStalled", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("the stall took %v to notice (timeout %v)", took, d.StallTimeout)
	}
	p := dl.Progress()
	if p.State != Failed || !p.CanResume || p.Received != int64(len(data)/3) {
		t.Fatalf("progress %+v, want Failed, resumable, %d bytes", p, len(data)/3)
	}
	dirHolds(t, dir, "m.gguf"+PartSuffix, "m.gguf"+SidecarSuffix)

	stall.Store(false)
	if err := dl.Resume(); err != nil {
		t.Fatal(err)
	}
	if err := dl.Wait(waitCtx(t)); err != nil {
		t.Fatalf("resume after a stall: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "m.gguf")); !bytes.Equal(got, data) {
		t.Fatal("the resumed model is not byte-identical")
	}
}

// A server that never answers: ErrStalled, and nothing kept (there is nothing to resume).
func TestDownloadSilentServerStallsWithoutLeftovers(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	defer srv.Close()
	d, dir := newDL(t, srv)
	dl, err := startAndWait(t, d, Request{URL: srv.URL + "/m.gguf"})
	if !errors.Is(err, ErrStalled) {
		t.Fatalf("a server that never answers gave %v, want ErrStalled", err)
	}
	dirHolds(t, dir)
	mustNotResume(t, d, dl)
}

func TestDownloadRedirectLoopNamesTheLoop(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/a.gguf", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/b.gguf", http.StatusFound) })
	mux.HandleFunc("/b.gguf", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/a.gguf", http.StatusFound) })
	var hops atomic.Int32
	mux.HandleFunc("/r/", func(w http.ResponseWriter, r *http.Request) { // a new URL every time
		http.Redirect(w, r, fmt.Sprintf("/r/%d.gguf", hops.Add(1)), http.StatusFound)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	d, dir := newDL(t, srv)

	dl, err := startAndWait(t, d, Request{URL: srv.URL + "/a.gguf"})
	var re *RedirectError
	if !errors.As(err, &re) || !re.Loop || !strings.Contains(err.Error(), "loop") || strings.Contains(err.Error(), "Resume") {
		t.Fatalf("a redirect loop gave %v, want a RedirectError naming the loop, not Resume", err)
	}
	if len(re.Hops) != 3 || !strings.HasSuffix(re.Hops[1], "/b.gguf") {
		t.Errorf("hops %q, want a → b → a", re.Hops)
	}
	dirHolds(t, dir)
	mustNotResume(t, d, dl)

	_, err = startAndWait(t, d, Request{URL: srv.URL + "/r/0.gguf"})
	if !errors.As(err, &re) || re.Loop || !strings.Contains(err.Error(), "redirected 10 times") {
		t.Fatalf("endless redirects gave %v, want a RedirectError after 10", err)
	}
	dirHolds(t, dir)
}

func TestDownloadHTTPErrorsLeaveNoPartial(t *testing.T) {
	for _, tc := range []struct {
		status int
		hint   string
	}{{404, "check the URL"}, {500, "try again later"}, {403, "licence"}} {
		t.Run(strconv.Itoa(tc.status), func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Error(w, "no", tc.status)
			}))
			defer srv.Close()
			d, dir := newDL(t, srv)
			dl, err := startAndWait(t, d, Request{URL: srv.URL + "/typo.gguf"})
			var he *HTTPStatusError
			if !errors.As(err, &he) || he.Status != tc.status || !strings.Contains(err.Error(), tc.hint) {
				t.Fatalf("%d gave %v, want an HTTPStatusError saying %q", tc.status, err, tc.hint)
			}
			dirHolds(t, dir)
			mustNotResume(t, d, dl)
			// After a restart nothing comes back as paused.
			if pending, err := NewDownloader(dir, nil).Pending(nil); err != nil || len(pending) != 0 {
				t.Fatalf("after a restart: %d pending (%v), want none", len(pending), err)
			}
		})
	}
}

// A 500 on the Range request of a kept partial keeps it: the next Resume may work.
func TestDownloadServerErrorDuringResumeKeepsPartial(t *testing.T) {
	data := testModel(t)
	var fail atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Range") == "" {
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			w.Write(data[:len(data)/2])
			w.(http.Flusher).Flush()
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
			return
		}
		if fail.Load() {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		http.ServeContent(w, r, "m.gguf", time.Unix(1700000000, 0), bytes.NewReader(data))
	}))
	defer srv.Close()
	d, dir := newDL(t, srv)
	dl, err := startAndWait(t, d, Request{URL: srv.URL + "/m.gguf"})
	if !errors.Is(err, ErrNetwork) {
		t.Fatalf("cut: %v", err)
	}
	fail.Store(true)
	if err := dl.Resume(); err != nil {
		t.Fatal(err)
	}
	if err := dl.Wait(waitCtx(t)); err == nil || !dl.Progress().CanResume {
		t.Fatalf("503 on resume: %v, resumable %v; want an error and the partial kept", err, dl.Progress().CanResume)
	}
	dirHolds(t, dir, "m.gguf"+PartSuffix, "m.gguf"+SidecarSuffix)
	fail.Store(false)
	if err := dl.Resume(); err != nil {
		t.Fatal(err)
	}
	if err := dl.Wait(waitCtx(t)); err != nil {
		t.Fatalf("resume once the server works: %v", err)
	}
}

// Whole files served with their length that are not complete models: discarded.
func TestDownloadRefusesFilesThatAreNotCompleteModels(t *testing.T) {
	data := testModel(t)
	pastEOF := tensorPastEOF(t)
	for _, tc := range []struct {
		name   string
		body   []byte
		req    Request
		check  func(error) bool
		inText string
	}{
		{"web page", []byte("<!doctype html><title>Sign in</title>"), Request{}, func(err error) bool { return errors.Is(err, ErrNotGGUF) }, "a web page?"},
		{"truncated GGUF", data[:len(data)-100], Request{}, func(err error) bool { return errors.Is(err, ErrTruncated) }, "past the end"},
		{"tensor past EOF", pastEOF, Request{}, func(err error) bool { return errors.Is(err, ErrTruncated) }, "past the end"},
		{"wrong sha256", data, Request{SHA256: strings.Repeat("ab", 32)}, func(err error) bool { return errors.As(err, new(*ChecksumError)) }, "expected"},
		{"wrong size", data, Request{Size: int64(len(data)) + 1}, func(err error) bool { return errors.As(err, new(*SizeError)) }, "expected"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.ServeContent(w, r, "m.gguf", time.Unix(1700000000, 0), bytes.NewReader(tc.body))
			}))
			defer srv.Close()
			d, dir := newDL(t, srv)
			req := tc.req
			req.URL = srv.URL + "/m.gguf"
			dl, err := startAndWait(t, d, req)
			if err == nil || !tc.check(err) || !strings.Contains(err.Error(), tc.inText) || !strings.Contains(err.Error(), "discarded") {
				t.Fatalf("got %v, want the %s error saying %q and that the file was discarded", err, tc.name, tc.inText)
			}
			dirHolds(t, dir)
			mustNotResume(t, d, dl)
		})
	}
}

// The right size and sha256, given: done, and the sizes are checked against the server's.
func TestDownloadChecksSizeAndDigestWhenGiven(t *testing.T) {
	data := testModel(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "m.gguf", time.Unix(1700000000, 0), bytes.NewReader(data))
	}))
	defer srv.Close()
	d, dir := newDL(t, srv)
	if _, err := startAndWait(t, d, Request{URL: srv.URL + "/m.gguf", SHA256: sha(data), Size: int64(len(data))}); err != nil {
		t.Fatal(err)
	}
	dirHolds(t, dir, "m.gguf")
}

// A partial from an older version (a 404 left a 0-byte .part and its record) does not
// come back as a paused download after a restart, and is cleaned away.
func TestPendingDropsEmptyPartials(t *testing.T) {
	dir := t.TempDir()
	if err := writeSidecar(filepath.Join(dir, "x.gguf"+SidecarSuffix), sidecar{URL: "http://127.0.0.1:1/x.gguf", Name: "x.gguf"}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "x.gguf"+PartSuffix), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	pending, err := NewDownloader(dir, nil).Pending(nil)
	if err != nil || len(pending) != 0 {
		t.Fatalf("pending = %d (%v), want none", len(pending), err)
	}
	dirHolds(t, dir)
}

// tensorPastEOF is a GGUF whose last tensor's offset points beyond the end of the file
// (its whole header is intact).
func tensorPastEOF(t testing.TB) []byte {
	tensors := synthTensors()
	file, headerEnd, _ := synthGGUF(t, synthKVs(), tensors)
	// The last tensor's offset is the header's last 8 bytes.
	binary.LittleEndian.PutUint64(file[headerEnd-8:], 1<<30)
	return file
}

func TestInspectCallsCutFilesDamaged(t *testing.T) {
	data := testModel(t)
	file, _, dataOffset := synthGGUF(t, synthKVs(), synthTensors())
	for name, b := range map[string][]byte{
		"halved":             data[:len(data)/2],
		"one byte short":     data[:len(data)-1],
		"synthetic, no data": file[:dataOffset],
		"tensor past EOF":    tensorPastEOF(t),
	} {
		t.Run(name, func(t *testing.T) {
			info, err := Inspect(writeTemp(t, b))
			if !errors.Is(err, ErrNotGGUF) || !errors.Is(err, ErrTruncated) || info.Err == nil {
				t.Fatalf("Inspect = %v, want ErrNotGGUF and ErrTruncated", err)
			}
			if !strings.Contains(err.Error(), "truncated") || !strings.Contains(err.Error(), "past the end of the file") {
				t.Fatalf("the reason does not say the file is cut: %v", err)
			}
			t.Log(err)
		})
	}
	if _, err := Inspect(writeTemp(t, file)); err != nil {
		t.Fatalf("the whole synthetic model: %v", err)
	}
}

// A FIFO named .gguf in the models folder (and one named like a resume record) must not
// hang the library or the downloader: they are refused from their mode.
func TestLibraryWithFIFOListsWithinASecond(t *testing.T) {
	dir := t.TempDir()
	lib, err := OpenLibrary(filepath.Join(dir, "models"), filepath.Join(dir, "models.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"pipe.gguf", "other.gguf" + SidecarSuffix} {
		if err := syscall.Mkfifo(filepath.Join(lib.Dir(), name), 0o644); err != nil {
			t.Skipf("mkfifo: %v", err)
		}
	}
	if err := os.WriteFile(filepath.Join(lib.Dir(), "real.gguf"), testModel(t), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	done := make(chan []Info, 1)
	go func() { done <- lib.List() }()
	select {
	case list := <-done:
		if len(list) != 2 || list[0].Name != "pipe" || !errors.Is(list[0].Err, ErrNotGGUF) || list[1].Err != nil {
			t.Fatalf("list = %+v, want the FIFO with its reason and the real model", list)
		}
		t.Log(list[0].Err)
	case <-ctx.Done():
		t.Fatal("listing a folder with a FIFO took over a second (it blocks on open)")
	}
	pending := make(chan error, 1)
	go func() { _, err := NewDownloader(lib.Dir(), nil).Pending(nil); pending <- err }()
	select {
	case err := <-pending:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Second):
		t.Fatal("Pending blocked on a FIFO named like a resume record")
	}
}

// A file added through another Library on the same list (the spawn dialog's Browse…
// opens its own) is listed without reopening.
func TestLibrarySeesFilesAddedElsewhere(t *testing.T) {
	dir := t.TempDir()
	open := func() *Library {
		lib, err := OpenLibrary(filepath.Join(dir, "models"), filepath.Join(dir, "models.json"))
		if err != nil {
			t.Fatal(err)
		}
		return lib
	}
	screen, dialog := open(), open()
	if n := len(screen.List()); n != 0 {
		t.Fatalf("a new library lists %d", n)
	}
	if err := dialog.Add(testenv.Model(t)); err != nil {
		t.Fatal(err)
	}
	if list := screen.List(); len(list) != 1 || list[0].Path != testenv.Model(t) {
		t.Fatalf("the screen's library lists %+v, want the file added elsewhere", list)
	}
	// And a removal there does not resurrect it here.
	if _, err := screen.Delete(testenv.Model(t), nil); err != nil {
		t.Fatal(err)
	}
	if n := len(dialog.List()); n != 0 {
		t.Fatalf("the other library still lists %d", n)
	}
}
