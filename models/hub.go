package models

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// This file is a small client for the Hugging Face Hub's public API: search GGUF
// repositories, list a repository's GGUF files with sizes and sha256, and build the
// download link the Downloader fetches. HF_ENDPOINT points it at a mirror, HF_TOKEN opens
// gated and private repositories, as in the Hub's own tools.

// DefaultHubEndpoint is the Hub itself; HF_ENDPOINT replaces it (a mirror, a test server).
const DefaultHubEndpoint = "https://huggingface.co"

// Errors a Hub call ends with; check them with errors.Is.
var (
	// ErrHubAuth: the repository is gated or private, or the token was refused.
	ErrHubAuth = errors.New("the Hub wants a token for this repository")
	// ErrHubRateLimited: too many requests; HubError.RetryAfter says how long to wait.
	ErrHubRateLimited = errors.New("the Hub limits requests")
	// ErrHubNotFound: no such repository (or file).
	ErrHubNotFound = errors.New("not found on the Hub")
)

// hubAPITimeout bounds one API call (not a download): the answers are small.
const hubAPITimeout = 30 * time.Second

// maxTreePages bounds how many pages of a repository's file list are read (the Hub
// pages at 1,000 entries; GGUF repositories have tens).
const maxTreePages = 20

// Hub talks to a Hugging Face Hub (or a mirror). The zero Client means a default one.
type Hub struct {
	Endpoint string       // "https://huggingface.co" or a mirror; no trailing slash needed
	Token    string       // sent as Authorization: Bearer to Endpoint's host only
	Client   *http.Client // nil = a client with dial and header timeouts
}

// NewHubFromEnv is the Hub that HF_ENDPOINT (default DefaultHubEndpoint) and HF_TOKEN
// name.
func NewHubFromEnv() *Hub {
	ep := strings.TrimSpace(os.Getenv("HF_ENDPOINT"))
	if ep == "" {
		ep = DefaultHubEndpoint
	}
	return &Hub{Endpoint: strings.TrimRight(ep, "/"), Token: strings.TrimSpace(os.Getenv("HF_TOKEN"))}
}

// HubModel is one repository in a search answer.
type HubModel struct {
	ID        string   `json:"id"` // "owner/name"
	Downloads int64    `json:"downloads"`
	Likes     int64    `json:"likes"`
	Tags      []string `json:"tags"`
	// Gated is "" for an open repository, else how access is granted: "auto" (accept
	// the licence on its page) or "manual" (the owner approves each request).
	Gated string `json:"-"`
}

// UnmarshalJSON reads the Hub's "gated", which is false or "auto"/"manual".
func (m *HubModel) UnmarshalJSON(b []byte) error {
	type plain HubModel
	var aux struct {
		*plain
		Gated json.RawMessage `json:"gated"`
	}
	aux.plain = (*plain)(m)
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	m.Gated = ""
	var s string
	if json.Unmarshal(aux.Gated, &s) == nil {
		m.Gated = s
	} else if t := false; json.Unmarshal(aux.Gated, &t) == nil && t {
		m.Gated = "auto"
	}
	return nil
}

// License is the licence tag ("apache-2.0"), or "" when the repository names none.
func (m HubModel) License() string {
	for _, t := range m.Tags {
		if l, ok := strings.CutPrefix(t, "license:"); ok {
			return l
		}
	}
	return ""
}

// HubPart is one file of a model in a repository.
type HubPart struct {
	Path   string // in the repository, e.g. "Q4_K_M/model-00001-of-00002.gguf"
	Size   int64
	SHA256 string // hex, from the LFS pointer; "" when the file is not in LFS
}

// Name is the file's name in the models folder: the last element of its path.
func (p HubPart) Name() string { return path.Base(p.Path) }

// HubFile is one model a repository offers: a single .gguf file, or the parts of a
// split one (model-00001-of-00003.gguf …), which llama.cpp loads from the first part
// with the others beside it.
type HubFile struct {
	Parts []HubPart // in order; one for an unsplit file
	Size  int64     // of all parts together
	Quant string    // "Q4_K_M", "IQ3_XS", "F16", …; "" when the name does not say
	// Projector: a vision projector (mmproj-*.gguf), useful only beside a model.
	Projector bool
}

// Name is the models-folder name of the file llama.cpp loads (the first part).
func (f HubFile) Name() string { return f.Parts[0].Name() }

// Path is the repository path of the first part.
func (f HubFile) Path() string { return f.Parts[0].Path }

// Split reports whether the model comes in several files.
func (f HubFile) Split() bool { return len(f.Parts) > 1 }

// RoughMemory is a rough figure for the memory a worker needs for a model file of size
// bytes before the file is here: the weights, plus a fifth for the KV cache of the
// default context, plus 256 MiB of compute buffers. It can be far off (a model without
// grouped-query attention needs more KV cache); once the file is downloaded,
// EstimateMemory reads its header and gives the real estimate.
func RoughMemory(size int64) uint64 {
	if size <= 0 {
		return 0
	}
	return uint64(size) + uint64(size)/5 + 256<<20
}

// Search lists GGUF repositories matching query (all of them for ""), most downloaded
// first, at most limit (1..100; 0 = 30).
func (h *Hub) Search(ctx context.Context, query string, limit int) ([]HubModel, error) {
	if limit <= 0 {
		limit = 30
	}
	q := url.Values{}
	if query = strings.TrimSpace(query); query != "" {
		q.Set("search", query)
	}
	q.Set("filter", "gguf")
	q.Set("sort", "downloads")
	q.Set("direction", "-1")
	q.Set("limit", strconv.Itoa(min(limit, 100)))
	// Without expand the Hub leaves out "gated"; with it, only the fields named come.
	for _, f := range []string{"downloads", "likes", "tags", "gated"} {
		q.Add("expand", f)
	}
	u := h.base() + "/api/models?" + q.Encode()
	var out []HubModel
	if _, err := h.getJSON(ctx, u, "", &out); err != nil {
		return nil, fmt.Errorf("search Hugging Face for %q: %w", query, err)
	}
	return out, nil
}

// treeEntry is one entry of the Hub's file tree answer.
type treeEntry struct {
	Type string `json:"type"` // "file" or "directory"
	Path string `json:"path"`
	Size int64  `json:"size"`
	LFS  *struct {
		OID  string `json:"oid"` // the sha256 of the content
		Size int64  `json:"size"`
	} `json:"lfs"`
}

// Files lists the GGUF models in repo ("owner/name") on its main branch, smallest
// first, vision projectors last. Split files are grouped; a split model missing parts
// is left out (it could not be loaded).
func (h *Hub) Files(ctx context.Context, repo string) ([]HubFile, error) {
	if err := checkRepo(repo); err != nil {
		return nil, err
	}
	next := h.base() + "/api/models/" + escapePath(repo) + "/tree/main?recursive=true"
	var entries []treeEntry
	for page := 0; next != ""; page++ {
		if page == maxTreePages {
			return nil, fmt.Errorf("list the files of %s: more than %d pages; pick the file by URL instead", repo, maxTreePages)
		}
		var batch []treeEntry
		resp, err := h.getJSON(ctx, next, repo, &batch)
		if err != nil {
			return nil, fmt.Errorf("list the files of %s: %w", repo, err)
		}
		entries = append(entries, batch...)
		next = h.nextPage(resp.Header.Get("Link"))
	}
	return groupFiles(entries), nil
}

// DownloadURL is the link that fetches path from repo's main branch; the Hub answers it
// with a redirect to its storage.
func (h *Hub) DownloadURL(repo, filePath string) string {
	return h.base() + "/" + escapePath(repo) + "/resolve/main/" + escapePath(filePath)
}

// Requests are the downloads that fetch f from repo (one per part), with the sizes and
// sha256 the Hub lists, so the Downloader verifies what arrives.
func (h *Hub) Requests(repo string, f HubFile) []Request {
	out := make([]Request, 0, len(f.Parts))
	for _, p := range f.Parts {
		out = append(out, Request{URL: h.DownloadURL(repo, p.Path), Name: p.Name(), SHA256: p.SHA256, Size: p.Size})
	}
	return out
}

// CheckAccess asks the Hub whether f of repo may be downloaded (a HEAD of its link, not
// following the redirect to storage), so a gated repository is explained before any
// download starts: nil, or a *HubError matching ErrHubAuth that names HF_TOKEN.
func (h *Hub) CheckAccess(ctx context.Context, repo string, f HubFile) error {
	ctx, cancel := context.WithTimeout(ctx, hubAPITimeout)
	defer cancel()
	u := h.DownloadURL(repo, f.Path())
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, u, nil)
	if err != nil {
		return fmt.Errorf("HF_ENDPOINT %q: %w", h.Endpoint, err)
	}
	c := h.HTTPClient()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Do(req)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			return err
		}
		return fmt.Errorf("%w: %s cannot be reached: %w: check the connection, or set HF_ENDPOINT to a reachable mirror", ErrNetwork, h.base(), err)
	}
	resp.Body.Close()
	if resp.StatusCode < 400 {
		return nil
	}
	return &HubError{URL: u, Repo: repo, Status: resp.StatusCode, Code: resp.Header.Get("X-Error-Code"),
		Message: hubMessage(resp.Header, nil), RetryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now()),
		TokenSet: h.Token != ""}
}

// HTTPClient is a client for downloads from this Hub: it sends the token to the Hub's
// own host only, never to the storage it redirects to, and has no overall timeout (a
// model takes as long as it takes).
func (h *Hub) HTTPClient() *http.Client {
	var c http.Client
	if h.Client != nil {
		c = *h.Client
	} else {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.ResponseHeaderTimeout = 30 * time.Second
		c.Transport = tr
	}
	base := c.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	if u, err := url.Parse(h.base()); err == nil && h.Token != "" {
		c.Transport = &hubAuth{scheme: u.Scheme, host: u.Host, token: h.Token, base: base}
	}
	return &c
}

// hubAuth adds the token to requests for the Hub's own scheme and host. It works per
// request, so each redirect is judged by where it goes: the Hub sends file downloads on
// to a storage host, which must never see the token.
type hubAuth struct {
	scheme, host, token string
	base                http.RoundTripper
}

func (t *hubAuth) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme == t.scheme && strings.EqualFold(r.URL.Host, t.host) && r.Header.Get("Authorization") == "" {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+t.token)
	}
	return t.base.RoundTrip(r)
}

func (h *Hub) base() string { return strings.TrimRight(h.Endpoint, "/") }

// HubError is an answer other than 200 from the Hub's API.
type HubError struct {
	URL        string
	Repo       string // when the call was about one repository
	Status     int
	Code       string        // the Hub's X-Error-Code ("GatedRepo", "RepoNotFound"), if any
	Message    string        // the Hub's own explanation, if any
	RetryAfter time.Duration // for 429, when the Hub said
	TokenSet   bool          // an HF_TOKEN was sent
}

func (e *HubError) Error() string {
	what := "the Hub"
	if e.Repo != "" {
		what = e.Repo
	}
	said := ""
	if e.Message != "" {
		said = "; Hugging Face said: “" + strings.TrimSuffix(e.Message, ".") + "”"
	}
	switch {
	case errors.Is(e, ErrHubNotFound):
		return fmt.Sprintf("Hugging Face has no repository %s (%d): check the name; a private one needs HF_TOKEN set to a token of an account that can see it%s", what, e.Status, said)
	case errors.Is(e, ErrHubAuth) && e.TokenSet:
		return fmt.Sprintf("Hugging Face refused access to %s (%d): HF_TOKEN is set but gives no access: accept the model's licence on its page with that account, or check the token (huggingface.co/settings/tokens)%s", what, e.Status, said)
	case errors.Is(e, ErrHubAuth):
		kind := "gated or private"
		if e.Code == "GatedRepo" {
			kind, said = "gated", "" // the Hub's message says no more than this one
		}
		return fmt.Sprintf("%s is %s (%d): accept its licence on its Hugging Face page, then set HF_TOKEN to an access token of that account (huggingface.co/settings/tokens) and start Beekeeper again%s", what, kind, e.Status, said)
	case errors.Is(e, ErrHubRateLimited):
		wait := "a minute"
		if e.RetryAfter > 0 {
			wait = e.RetryAfter.Round(time.Second).String()
		}
		hint := ""
		if !e.TokenSet {
			hint = "; requests with HF_TOKEN set get a higher limit"
		}
		return fmt.Sprintf("Hugging Face limits requests (429): wait %s, then try again%s%s", wait, hint, said)
	case e.Status >= 500:
		return fmt.Sprintf("Hugging Face failed (%d %s): try again later, or set HF_ENDPOINT to a mirror%s", e.Status, http.StatusText(e.Status), said)
	}
	return fmt.Sprintf("Hugging Face answered %d %s for %s%s", e.Status, http.StatusText(e.Status), e.URL, said)
}

// Is matches ErrHubAuth, ErrHubRateLimited and ErrHubNotFound.
func (e *HubError) Is(target error) bool {
	switch target {
	case ErrHubNotFound:
		// Without a token the Hub answers 401 RepoNotFound for a repository it will not
		// name (missing or private).
		return e.Status == http.StatusNotFound || e.Code == "RepoNotFound" || e.Code == "EntryNotFound"
	case ErrHubAuth:
		return e.Code == "GatedRepo" || ((e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden) && e.Code != "RepoNotFound")
	case ErrHubRateLimited:
		return e.Status == http.StatusTooManyRequests
	}
	return false
}

// maxAPIAnswer bounds an API answer read into memory.
const maxAPIAnswer = 32 << 20

// getJSON GETs u and decodes a 200 answer into out; other answers become *HubError.
func (h *Hub) getJSON(ctx context.Context, u, repo string, out any) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, hubAPITimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("HF_ENDPOINT %q: %w", h.Endpoint, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := h.HTTPClient().Do(req)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %s cannot be reached: %w: check the connection, or set HF_ENDPOINT to a reachable mirror", ErrNetwork, h.base(), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAPIAnswer))
	if err != nil {
		return nil, fmt.Errorf("%w: reading the answer of %s: %w", ErrNetwork, h.base(), err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &HubError{URL: u, Repo: repo, Status: resp.StatusCode, Code: resp.Header.Get("X-Error-Code"),
			Message: hubMessage(resp.Header, body), RetryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now()),
			TokenSet: h.Token != ""}
	}
	if err := json.Unmarshal(body, out); err != nil {
		return nil, fmt.Errorf("%s did not answer as the Hugging Face API does (is HF_ENDPOINT a Hub mirror?): %w", h.base(), err)
	}
	return resp, nil
}

// hubMessage is the Hub's explanation of an error: X-Error-Message, or the "error"
// field of a JSON body, cut to a sentence's length.
func hubMessage(hdr http.Header, body []byte) string {
	msg := hdr.Get("X-Error-Message")
	if msg == "" {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(body, &e) == nil {
			msg = e.Error
		}
	}
	msg = strings.TrimSpace(msg)
	if r := []rune(msg); len(r) > 200 {
		msg = string(r[:200]) + "…"
	}
	return msg
}

// retryAfter reads Retry-After: seconds or an HTTP date; 0 when absent or past.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// nextPage is the rel="next" link of a Link header when it stays on the Hub's host, so a
// pagination link cannot send the token elsewhere; "" when there is none.
func (h *Hub) nextPage(link string) string {
	for part := range strings.SplitSeq(link, ",") {
		target, params, ok := strings.Cut(part, ";")
		if !ok || !strings.Contains(strings.ReplaceAll(params, " ", ""), `rel="next"`) {
			continue
		}
		target = strings.Trim(strings.TrimSpace(target), "<>")
		next, err := url.Parse(target)
		base, berr := url.Parse(h.base())
		if err != nil || berr != nil {
			return ""
		}
		next = base.ResolveReference(next)
		if next.Scheme != base.Scheme || !strings.EqualFold(next.Host, base.Host) {
			return ""
		}
		return next.String()
	}
	return ""
}

// checkRepo accepts "owner/name" as the Hub spells repository ids.
func checkRepo(repo string) error {
	owner, name, ok := strings.Cut(repo, "/")
	if !ok || owner == "" || name == "" || strings.Contains(name, "/") || strings.Contains(repo, "..") {
		return fmt.Errorf("repository %q: want owner/name, as in Qwen/Qwen2.5-0.5B-Instruct-GGUF", repo)
	}
	return nil
}

// escapePath escapes each element of a slash-separated path.
func escapePath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/")
}

// splitName matches llama.cpp's split files: PREFIX-00001-of-00003.gguf.
var splitName = regexp.MustCompile(`(?i)^(.*)-(\d{5})-of-(\d{5})\.gguf$`)

// groupFiles keeps the .gguf files of a tree, groups split ones, and orders them.
func groupFiles(entries []treeEntry) []HubFile {
	type group struct {
		parts map[int]HubPart
		count int
	}
	var out []HubFile
	groups := map[string]*group{}
	var order []string
	for _, e := range entries {
		if e.Type != "file" || !strings.EqualFold(path.Ext(e.Path), ".gguf") {
			continue
		}
		p := HubPart{Path: e.Path, Size: e.Size}
		if e.LFS != nil {
			p.SHA256 = strings.ToLower(strings.TrimPrefix(e.LFS.OID, "sha256:"))
			if e.LFS.Size > 0 {
				p.Size = e.LFS.Size
			}
		}
		m := splitName.FindStringSubmatch(e.Path)
		if m == nil {
			out = append(out, newHubFile([]HubPart{p}))
			continue
		}
		n, _ := strconv.Atoi(m[2])
		count, _ := strconv.Atoi(m[3])
		key := strings.ToLower(m[1]) + "/" + m[3]
		g := groups[key]
		if g == nil {
			g = &group{parts: map[int]HubPart{}, count: count}
			groups[key] = g
			order = append(order, key)
		}
		g.parts[n] = p
	}
	for _, key := range order {
		g := groups[key]
		parts := make([]HubPart, 0, g.count)
		for i := 1; i <= g.count; i++ {
			p, ok := g.parts[i]
			if !ok {
				break
			}
			parts = append(parts, p)
		}
		if len(parts) == g.count && g.count > 0 {
			out = append(out, newHubFile(parts))
		}
	}
	slices.SortStableFunc(out, func(a, b HubFile) int {
		if a.Projector != b.Projector {
			if a.Projector {
				return 1
			}
			return -1
		}
		if a.Size != b.Size {
			if a.Size < b.Size {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Path(), b.Path())
	})
	return out
}

func newHubFile(parts []HubPart) HubFile {
	f := HubFile{Parts: parts}
	for _, p := range parts {
		f.Size += p.Size
	}
	name := parts[0].Name()
	f.Quant = QuantFromName(name)
	f.Projector = strings.HasPrefix(strings.ToLower(name), "mmproj")
	return f
}

// quantName matches a llama.cpp quantization type at the start of a name part, up to a
// separator: Q4_K_M, Q8_0, Q4_0_4_4, IQ2_XXS, IQ4_NL, TQ1_0, F16, BF16, MXFP4, …
var quantName = regexp.MustCompile(`^(I?Q[1-8]_(?:K(?:_(?:XXS|XS|S|M|L|XL))?|[01](?:_[48]_[48])?|XXS|XS|S|M|NL)|TQ[12]_0|BF16|FP16|F16|F32|MXFP4)(?:[-_.]|$)`)

// QuantFromName is the quantization a GGUF file name states ("Q4_K_M" from
// "qwen2.5-0.5b-instruct-q4_k_m.gguf"), upper-case; "" when it states none. The last
// one named wins: the type usually ends the name.
func QuantFromName(name string) string {
	base := strings.ToUpper(path.Base(name))
	if m := splitName.FindStringSubmatch(base); m != nil {
		base = m[1]
	}
	base = strings.TrimSuffix(base, ".GGUF")
	q := ""
	// A type starts the name or follows a separator.
	for i := 0; i < len(base); i++ {
		if i > 0 && !strings.ContainsRune("-_.", rune(base[i-1])) {
			continue
		}
		if m := quantName.FindStringSubmatch(base[i:]); m != nil {
			q = m[1]
		}
	}
	if q == "FP16" {
		q = "F16"
	}
	return q
}
