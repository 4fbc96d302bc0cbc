// Package hubtest is a fake Hugging Face Hub for tests and demos: it answers the API
// shapes the models package's Hub client reads (model search, a repository's file tree
// with LFS sha256, resolve links redirecting to a storage host) on loopback only.
package hubtest

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// File is one file of a repository.
type File struct {
	Path    string
	Content []byte
	// LFS: listed with an lfs block (oid = sha256), as the Hub stores large files;
	// default true for .gguf.
	NoLFS bool
}

// Repo is one repository the fake serves.
type Repo struct {
	ID        string // "owner/name"
	Downloads int64
	Likes     int64
	Tags      []string // "gguf" is added unless NotGGUF
	NotGGUF   bool
	Gated     string // "", "auto" or "manual": resolve links need the token
	Private   bool   // everything needs the token; without it the repository "does not exist"
	Files     []File
}

// Server is the fake Hub (URL) and its storage host (CDN), two loopback servers, so a
// redirect to storage changes host as the real one does.
type Server struct {
	Hub, CDN *httptest.Server
	Token    string // the token that opens gated and private repositories
	// PageSize > 0 pages the file tree with Link: <…>; rel="next", as the Hub does.
	PageSize int
	// RateLimited makes every API call answer 429 with Retry-After: 7.
	RateLimited bool

	mu      sync.Mutex
	repos   []Repo
	blobs   map[string][]byte // sha256 → content
	cdnAuth []string          // Authorization headers the storage host received
	log     []string          // "METHOD /path?query" of every Hub request
}

// New starts the fake with repos; Close stops it.
func New(repos ...Repo) *Server {
	s := &Server{blobs: map[string][]byte{}}
	for _, r := range repos {
		s.Add(r)
	}
	s.CDN = httptest.NewServer(http.HandlerFunc(s.serveCDN))
	s.Hub = httptest.NewServer(http.HandlerFunc(s.serveHub))
	return s
}

// URL is the Hub's endpoint (for HF_ENDPOINT).
func (s *Server) URL() string { return s.Hub.URL }

// Close stops both servers.
func (s *Server) Close() {
	s.Hub.Close()
	s.CDN.Close()
}

// Add serves one more repository.
func (s *Server) Add(r Repo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !r.NotGGUF && !slices.Contains(r.Tags, "gguf") {
		r.Tags = append([]string{"gguf"}, r.Tags...)
	}
	s.repos = append(s.repos, r)
	for _, f := range r.Files {
		s.blobs[SHA256(f.Content)] = f.Content
	}
}

// CDNAuthorizations lists the Authorization headers the storage host received ("" for
// none), one per request.
func (s *Server) CDNAuthorizations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.cdnAuth)
}

// Requests lists the Hub requests so far, as "GET /api/models?…".
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.log)
}

// SHA256 is the hex digest the fake lists for content.
func SHA256(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func (s *Server) repo(id string) (Repo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.repos {
		if r.ID == id {
			return r, true
		}
	}
	return Repo{}, false
}

func (s *Server) authorized(r *http.Request) bool {
	return s.Token != "" && r.Header.Get("Authorization") == "Bearer "+s.Token
}

// hubError answers as the Hub does: a JSON error, X-Error-Code and X-Error-Message.
func hubError(w http.ResponseWriter, status int, code, msg string) {
	if code != "" {
		w.Header().Set("X-Error-Code", code)
	}
	w.Header().Set("X-Error-Message", msg)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

func (s *Server) serveHub(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.log = append(s.log, r.Method+" "+r.URL.RequestURI())
	limited := s.RateLimited
	s.mu.Unlock()
	p := r.URL.Path
	switch {
	case strings.HasPrefix(p, "/api/") && limited:
		w.Header().Set("Retry-After", "7")
		hubError(w, http.StatusTooManyRequests, "", "You have exceeded the rate limit")
	case p == "/api/models" && r.Method == http.MethodGet:
		s.search(w, r)
	case strings.HasPrefix(p, "/api/models/") && r.Method == http.MethodGet:
		rest := strings.TrimPrefix(p, "/api/models/")
		parts := strings.SplitN(rest, "/", 5) // owner, name, "tree", "main", subpath
		if len(parts) < 4 || parts[2] != "tree" || parts[3] != "main" {
			hubError(w, http.StatusNotFound, "", "Sorry, we can't find the page you are looking for.")
			return
		}
		s.tree(w, r, parts[0]+"/"+parts[1])
	default:
		parts := strings.SplitN(strings.TrimPrefix(p, "/"), "/", 5) // owner, name, "resolve", "main", path
		if len(parts) == 5 && parts[2] == "resolve" && parts[3] == "main" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			s.resolve(w, r, parts[0]+"/"+parts[1], parts[4])
			return
		}
		hubError(w, http.StatusNotFound, "", "Sorry, we can't find the page you are looking for.")
	}
}

// search answers GET /api/models: search (substring of the id), filter (a tag), sort by
// downloads, limit, and expand (only those fields, plus id).
func (s *Server) search(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	want := strings.ToLower(q.Get("search"))
	filter := q.Get("filter")
	limit, _ := strconv.Atoi(q.Get("limit"))
	if limit <= 0 {
		limit = 1000
	}
	s.mu.Lock()
	var hits []Repo
	for _, rp := range s.repos {
		if rp.Private && !s.authorized(r) {
			continue
		}
		if want != "" && !strings.Contains(strings.ToLower(rp.ID), want) {
			continue
		}
		if filter != "" && !slices.Contains(rp.Tags, filter) {
			continue
		}
		hits = append(hits, rp)
	}
	s.mu.Unlock()
	slices.SortStableFunc(hits, func(a, b Repo) int { return int(b.Downloads - a.Downloads) })
	if len(hits) > limit {
		hits = hits[:limit]
	}
	expand := q["expand"]
	out := make([]map[string]any, 0, len(hits))
	for _, rp := range hits {
		gated := any(false)
		if rp.Gated != "" {
			gated = rp.Gated
		}
		all := map[string]any{"downloads": rp.Downloads, "likes": rp.Likes, "tags": rp.Tags, "gated": gated,
			"private": rp.Private, "pipeline_tag": "text-generation", "library_name": "gguf"}
		m := map[string]any{"_id": fmt.Sprintf("%x", sha1.Sum([]byte(rp.ID)))[:24], "id": rp.ID}
		if len(expand) == 0 { // the Hub's default fields leave out gated
			for _, k := range []string{"downloads", "likes", "tags", "private", "pipeline_tag", "library_name"} {
				m[k] = all[k]
			}
			m["modelId"] = rp.ID
		}
		for _, k := range expand {
			if v, ok := all[k]; ok {
				m[k] = v
			}
		}
		out = append(out, m)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

type treeEntry struct {
	Type string   `json:"type"`
	OID  string   `json:"oid"`
	Size int64    `json:"size"`
	Path string   `json:"path"`
	LFS  *lfsInfo `json:"lfs,omitempty"`
}

type lfsInfo struct {
	OID         string `json:"oid"`
	Size        int64  `json:"size"`
	PointerSize int    `json:"pointerSize"`
}

// tree answers GET /api/models/{repo}/tree/main[/sub]: the files (and folders) under
// sub, all levels with recursive=true, paged by PageSize with a cursor.
func (s *Server) tree(w http.ResponseWriter, r *http.Request, id string) {
	rp, ok := s.repo(id)
	if !ok || (rp.Private && !s.authorized(r)) {
		hubError(w, http.StatusUnauthorized, "RepoNotFound", "Repository not found")
		return
	}
	recursive := r.URL.Query().Get("recursive") == "true"
	var entries []treeEntry
	dirs := map[string]bool{}
	for _, f := range rp.Files {
		dir := path.Dir(f.Path)
		if dir != "." && !recursive {
			top := strings.SplitN(f.Path, "/", 2)[0]
			if !dirs[top] {
				dirs[top] = true
				entries = append(entries, treeEntry{Type: "directory", OID: gitOID([]byte(top)), Path: top})
			}
			continue
		}
		for d := dir; d != "." && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
			entries = append(entries, treeEntry{Type: "directory", OID: gitOID([]byte(d)), Path: d})
		}
		e := treeEntry{Type: "file", OID: gitOID(f.Content), Size: int64(len(f.Content)), Path: f.Path}
		if strings.HasSuffix(f.Path, ".gguf") && !f.NoLFS {
			e.LFS = &lfsInfo{OID: SHA256(f.Content), Size: int64(len(f.Content)), PointerSize: 134}
		}
		entries = append(entries, e)
	}
	if s.PageSize > 0 {
		start, _ := strconv.Atoi(r.URL.Query().Get("cursor"))
		end := min(start+s.PageSize, len(entries))
		if end < len(entries) {
			next := *r.URL
			q := next.Query()
			q.Set("cursor", strconv.Itoa(end))
			next.RawQuery = q.Encode()
			w.Header().Set("Link", fmt.Sprintf(`<%s%s>; rel="next"`, s.Hub.URL, next.RequestURI()))
		}
		entries = entries[min(start, end):end]
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(entries)
}

// resolve answers /{repo}/resolve/main/{path}: a redirect to the storage host for LFS
// files, the bytes for others; gated repositories want the token.
func (s *Server) resolve(w http.ResponseWriter, r *http.Request, id, p string) {
	rp, ok := s.repo(id)
	if !ok || (rp.Private && !s.authorized(r)) {
		hubError(w, http.StatusUnauthorized, "RepoNotFound", "Repository not found")
		return
	}
	if rp.Gated != "" && !s.authorized(r) {
		hubError(w, http.StatusUnauthorized, "GatedRepo",
			"Access to model "+id+" is restricted. You must have access to it and be authenticated to access it. Please log in.")
		return
	}
	for _, f := range rp.Files {
		if f.Path != p {
			continue
		}
		sum := SHA256(f.Content)
		w.Header().Set("X-Repo-Commit", "0123456789abcdef0123456789abcdef01234567")
		w.Header().Set("ETag", `"`+sum+`"`)
		if strings.HasSuffix(p, ".gguf") && !f.NoLFS {
			w.Header().Set("X-Linked-Size", strconv.Itoa(len(f.Content)))
			w.Header().Set("X-Linked-Etag", `"`+sum+`"`)
			http.Redirect(w, r, s.CDN.URL+"/blobs/"+sum+"?filename="+url.QueryEscape(path.Base(p)), http.StatusFound)
			return
		}
		http.ServeContent(w, r, path.Base(p), time.Unix(0, 0), bytes.NewReader(f.Content))
		return
	}
	hubError(w, http.StatusNotFound, "EntryNotFound", "Entry not found")
}

// serveCDN serves blobs by sha256 with Range support, recording who asked.
func (s *Server) serveCDN(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.cdnAuth = append(s.cdnAuth, r.Header.Get("Authorization"))
	b, ok := s.blobs[strings.TrimPrefix(r.URL.Path, "/blobs/")]
	s.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("ETag", `"`+SHA256(b)+`"`)
	http.ServeContent(w, r, r.URL.Query().Get("filename"), time.Unix(1700000000, 0), bytes.NewReader(b))
}

// gitOID is a git blob id, as the tree lists for every entry.
func gitOID(b []byte) string {
	h := sha1.New()
	fmt.Fprintf(h, "blob %d\x00", len(b))
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}
