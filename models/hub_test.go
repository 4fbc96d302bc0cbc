package models

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/models/hubtest"
)

// newFakeHub starts a fake Hub on loopback and points HF_ENDPOINT at it (HF_TOKEN as
// given), so no test can reach the real one.
func newFakeHub(t *testing.T, token string, repos ...hubtest.Repo) (*hubtest.Server, *Hub) {
	t.Helper()
	fake := hubtest.New(repos...)
	t.Cleanup(fake.Close)
	t.Setenv("HF_ENDPOINT", fake.URL()+"/")
	t.Setenv("HF_TOKEN", token)
	return fake, NewHubFromEnv()
}

func testModelBytes(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(testenv.Model(t))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestHubSearchAsksForGGUFMostDownloadedFirst(t *testing.T) {
	fake, hub := newFakeHub(t, "",
		hubtest.Repo{ID: "Qwen/Qwen2.5-0.5B-Instruct-GGUF", Downloads: 500, Likes: 40, Tags: []string{"license:apache-2.0"}},
		hubtest.Repo{ID: "bartowski/Qwen2.5-7B-Instruct-GGUF", Downloads: 9000, Likes: 300},
		hubtest.Repo{ID: "meta-llama/Llama-Guard-GGUF", Downloads: 100, Gated: "manual"},
		hubtest.Repo{ID: "someone/qwen-safetensors", Downloads: 99999, Tags: []string{"safetensors"}, NotGGUF: true},
	)
	if hub.Endpoint != fake.URL() {
		t.Fatalf("endpoint = %q, want HF_ENDPOINT without its trailing slash %q", hub.Endpoint, fake.URL())
	}
	got, err := hub.Search(context.Background(), "qwen", 10)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range got {
		ids = append(ids, m.ID)
	}
	if want := []string{"bartowski/Qwen2.5-7B-Instruct-GGUF", "Qwen/Qwen2.5-0.5B-Instruct-GGUF"}; !slices.Equal(ids, want) {
		t.Fatalf("search ids = %q, want %q (GGUF only, most downloaded first)", ids, want)
	}
	if got[1].Downloads != 500 || got[1].Likes != 40 || got[1].License() != "apache-2.0" || got[1].Gated != "" {
		t.Fatalf("result = %+v (license %q)", got[1], got[1].License())
	}
	req := fake.Requests()[0]
	u, _ := url.Parse(strings.TrimPrefix(req, "GET "))
	q := u.Query()
	if u.Path != "/api/models" || q.Get("search") != "qwen" || q.Get("filter") != "gguf" || q.Get("sort") != "downloads" ||
		q.Get("direction") != "-1" || q.Get("limit") != "10" || !slices.Contains(q["expand"], "gated") {
		t.Fatalf("request = %s", req)
	}

	gated, err := hub.Search(context.Background(), "guard", 0)
	if err != nil || len(gated) != 1 || gated[0].Gated != "manual" {
		t.Fatalf("gated search = %+v, %v; want one result gated manual", gated, err)
	}
}

func TestHubModelReadsGatedAsTheHubSendsIt(t *testing.T) {
	for _, tc := range []struct{ json, want string }{
		{`{"id":"a/b","gated":false}`, ""},
		{`{"id":"a/b","gated":"auto"}`, "auto"},
		{`{"id":"a/b","gated":"manual"}`, "manual"},
		{`{"id":"a/b","gated":true}`, "auto"},
		{`{"id":"a/b"}`, ""},
	} {
		var m HubModel
		if err := json.Unmarshal([]byte(tc.json), &m); err != nil || m.Gated != tc.want || m.ID != "a/b" {
			t.Errorf("%s → %+v, %v; want gated %q", tc.json, m, err, tc.want)
		}
	}
}

func TestHubFilesGroupsSplitsAndKeepsSHA256(t *testing.T) {
	model := testModelBytes(t)
	part := func(i byte) []byte { return append(slices.Clone(model), i) } // distinct contents
	fake, hub := newFakeHub(t, "", hubtest.Repo{ID: "org/Big-GGUF", Files: []hubtest.File{
		{Path: "README.md", Content: []byte("# Big")},
		{Path: ".gitattributes", Content: []byte("*.gguf filter=lfs")},
		{Path: "big-Q4_K_M.gguf", Content: model},
		{Path: "Q8_0/big-Q8_0-00002-of-00003.gguf", Content: part(2)},
		{Path: "Q8_0/big-Q8_0-00001-of-00003.gguf", Content: part(1)},
		{Path: "Q8_0/big-Q8_0-00003-of-00003.gguf", Content: part(3)},
		{Path: "F16/big-F16-00001-of-00002.gguf", Content: part(9)}, // part 2 missing: unusable
		{Path: "mmproj-big-f16.gguf", Content: []byte("GGUF tiny")},
		{Path: "big-IQ2_XXS.gguf", Content: model[:len(model)/2]},
	}})
	fake.PageSize = 3 // the tree comes in pages, linked by rel="next"
	files, err := hub.Files(context.Background(), "org/Big-GGUF")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, f.Name()+"="+f.Quant)
	}
	want := []string{"big-IQ2_XXS.gguf=IQ2_XXS", "big-Q4_K_M.gguf=Q4_K_M", "big-Q8_0-00001-of-00003.gguf=Q8_0", "mmproj-big-f16.gguf=F16"}
	if !slices.Equal(names, want) {
		t.Fatalf("files = %q, want %q (smallest first, projector last, incomplete split left out)", names, want)
	}
	q4 := files[1]
	if q4.Split() || q4.Size != int64(len(model)) || q4.Parts[0].SHA256 != testenv.ModelSHA256 || q4.Path() != "big-Q4_K_M.gguf" {
		t.Fatalf("Q4_K_M = %+v", q4)
	}
	q8 := files[2]
	if !q8.Split() || len(q8.Parts) != 3 || q8.Size != 3*int64(len(model)+1) || q8.Parts[2].Path != "Q8_0/big-Q8_0-00003-of-00003.gguf" ||
		q8.Parts[1].SHA256 != hubtest.SHA256(part(2)) {
		t.Fatalf("split Q8_0 = %+v", q8)
	}
	if !files[3].Projector {
		t.Fatalf("mmproj not marked as a projector: %+v", files[3])
	}
	reqs := hub.Requests("org/Big-GGUF", q8)
	if len(reqs) != 3 || reqs[0].Name != "big-Q8_0-00001-of-00003.gguf" || reqs[0].Size != int64(len(model)+1) ||
		reqs[0].URL != fake.URL()+"/org/Big-GGUF/resolve/main/Q8_0/big-Q8_0-00001-of-00003.gguf" || reqs[0].SHA256 != hubtest.SHA256(part(1)) {
		t.Fatalf("requests = %+v", reqs)
	}
	pages := 0
	for _, r := range fake.Requests() {
		if strings.Contains(r, "/tree/main") {
			pages++
		}
	}
	if pages < 3 {
		t.Fatalf("the tree was read in %d requests; with 3 entries a page it takes more", pages)
	}
}

func TestQuantFromName(t *testing.T) {
	for name, want := range map[string]string{
		"qwen2.5-0.5b-instruct-q4_k_m.gguf":      "Q4_K_M",
		"Llama-3.2-1B-Instruct-Q8_0.gguf":        "Q8_0",
		"Meta-Llama-3-8B-Instruct.Q5_K_S.gguf":   "Q5_K_S",
		"gemma-2-2b-it-IQ3_M.gguf":               "IQ3_M",
		"model-IQ2_XXS.gguf":                     "IQ2_XXS",
		"model-IQ4_NL.gguf":                      "IQ4_NL",
		"model-IQ4_XS.gguf":                      "IQ4_XS",
		"phi-Q4_0_4_4.gguf":                      "Q4_0_4_4",
		"Qwen3-30B-A3B-UD-Q4_K_XL.gguf":          "Q4_K_XL",
		"ggml-model-f16.gguf":                    "F16",
		"model-fp16.gguf":                        "F16",
		"model-BF16-00001-of-00002.gguf":         "BF16",
		"big-Q6_K-00002-of-00005.gguf":           "Q6_K",
		"bitnet-TQ1_0.gguf":                      "TQ1_0",
		"gpt-oss-20b-MXFP4.gguf":                 "MXFP4",
		"Qwen2-7B-Instruct.gguf":                 "",
		"stories260K.gguf":                       "",
		"Q8_0-distill-then-Q4_K_M.gguf":          "Q4_K_M",
		"Mistral-7B-Instruct-v0.3.Q3_K_L.gguf":   "Q3_K_L",
		"tinyllama-1.1b-chat-v1.0.Q2_K.gguf":     "Q2_K",
		"Hermes-3-Llama-3.1-8B.IQ1_S.gguf":       "IQ1_S",
		"DeepSeek-R1-Distill-Qwen-1.5B-F32.gguf": "F32",
	} {
		if got := QuantFromName(name); got != want {
			t.Errorf("QuantFromName(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestHubGatedRepositoryNamesHFToken(t *testing.T) {
	model := testModelBytes(t)
	repo := hubtest.Repo{ID: "meta-llama/Llama-Gated-GGUF", Gated: "auto", Files: []hubtest.File{{Path: "m-Q4_K_M.gguf", Content: model}}}
	private := hubtest.Repo{ID: "me/private-GGUF", Private: true, Files: []hubtest.File{{Path: "p.gguf", Content: model}}}
	fake, hub := newFakeHub(t, "", repo, private)
	fake.Token = "hf_right"
	ctx := context.Background()

	files, err := hub.Files(ctx, repo.ID) // the file list of a gated repository is public
	if err != nil || len(files) != 1 {
		t.Fatalf("files of a gated repo = %+v, %v", files, err)
	}
	err = hub.CheckAccess(ctx, repo.ID, files[0])
	var he *HubError
	if !errors.Is(err, ErrHubAuth) || !errors.As(err, &he) || he.Status != 401 || he.Code != "GatedRepo" ||
		!strings.Contains(err.Error(), "is gated") || !strings.Contains(err.Error(), "HF_TOKEN") {
		t.Fatalf("download check without a token = %v; want a 401 GatedRepo ErrHubAuth naming HF_TOKEN", err)
	}
	if _, err := hub.Files(ctx, private.ID); !errors.Is(err, ErrHubNotFound) || !strings.Contains(err.Error(), "HF_TOKEN") {
		t.Fatalf("files of a private repo without a token = %v; want ErrHubNotFound naming HF_TOKEN", err)
	}

	wrong := &Hub{Endpoint: hub.Endpoint, Token: "hf_wrong"}
	if err := wrong.CheckAccess(ctx, repo.ID, files[0]); !errors.Is(err, ErrHubAuth) || !strings.Contains(err.Error(), "HF_TOKEN is set but gives no access") {
		t.Fatalf("with a refused token = %v", err)
	}
	right := &Hub{Endpoint: hub.Endpoint, Token: "hf_right"}
	if err := right.CheckAccess(ctx, repo.ID, files[0]); err != nil {
		t.Fatalf("with the token: %v", err)
	}
	if _, err := right.Files(ctx, private.ID); err != nil {
		t.Fatalf("files of a private repo with the token: %v", err)
	}
}

func TestHubRateLimitNamesTheWait(t *testing.T) {
	fake, hub := newFakeHub(t, "", hubtest.Repo{ID: "a/b-GGUF"})
	fake.RateLimited = true
	_, err := hub.Search(context.Background(), "b", 5)
	var he *HubError
	if !errors.Is(err, ErrHubRateLimited) || !errors.As(err, &he) || he.RetryAfter != 7*time.Second ||
		!strings.Contains(err.Error(), "wait 7s") || !strings.Contains(err.Error(), "HF_TOKEN") {
		t.Fatalf("rate limited search = %v; want ErrHubRateLimited saying wait 7s", err)
	}
}

func TestHubUnreachableSaysCheckTheConnection(t *testing.T) {
	fake, hub := newFakeHub(t, "")
	fake.Close() // nothing listens there any more
	_, err := hub.Search(context.Background(), "x", 1)
	if !errors.Is(err, ErrNetwork) || !strings.Contains(err.Error(), "HF_ENDPOINT") {
		t.Fatalf("search of a closed endpoint = %v; want ErrNetwork naming HF_ENDPOINT", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := hub.Search(ctx, "x", 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled search = %v, want context.Canceled", err)
	}
}

// The Hub redirects file downloads to a storage host: the token must reach the Hub (a
// gated file needs it) and never the storage host.
func TestHubDownloadSendsTokenToTheHubOnly(t *testing.T) {
	model := testModelBytes(t)
	fake, hub := newFakeHub(t, "hf_secret", hubtest.Repo{ID: "org/Gated-GGUF", Gated: "auto",
		Files: []hubtest.File{{Path: "sub/gated-Q4_K_M.gguf", Content: model}}})
	fake.Token = "hf_secret"
	ctx := context.Background()
	files, err := hub.Files(ctx, "org/Gated-GGUF")
	if err != nil {
		t.Fatal(err)
	}
	if err := hub.CheckAccess(ctx, "org/Gated-GGUF", files[0]); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	dl := NewDownloader(dir, hub.HTTPClient())
	req := hub.Requests("org/Gated-GGUF", files[0])[0]
	if req.SHA256 != testenv.ModelSHA256 || req.Size != int64(len(model)) {
		t.Fatalf("request = %+v, want the Hub's sha256 and size", req)
	}
	d, err := dl.Start(req, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Wait(ctx); err != nil {
		t.Fatalf("download: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "gated-Q4_K_M.gguf")); err != nil {
		t.Fatal(err)
	}
	auths := fake.CDNAuthorizations()
	if len(auths) == 0 {
		t.Fatal("the download never reached the storage host")
	}
	for _, a := range auths {
		if a != "" {
			t.Fatalf("the storage host received Authorization %q; the token must stay with the Hub", a)
		}
	}
}

func TestHubNextPageStaysOnTheHub(t *testing.T) {
	h := &Hub{Endpoint: "http://127.0.0.1:9"}
	for link, want := range map[string]string{
		`<http://127.0.0.1:9/api/models/a/b/tree/main?cursor=2>; rel="next"`: "http://127.0.0.1:9/api/models/a/b/tree/main?cursor=2",
		`</api/models/a/b/tree/main?cursor=x>; rel="next"`:                   "http://127.0.0.1:9/api/models/a/b/tree/main?cursor=x",
		`<http://127.0.0.2:9/steal>; rel="next"`:                             "",
		`<http://127.0.0.1:9/x>; rel="prev"`:                                 "",
		``:                                                                   "",
	} {
		if got := h.nextPage(link); got != want {
			t.Errorf("nextPage(%q) = %q, want %q", link, got, want)
		}
	}
}

func TestNewHubFromEnvDefaultsToHuggingFace(t *testing.T) {
	t.Setenv("HF_ENDPOINT", "")
	t.Setenv("HF_TOKEN", " hf_x \n")
	h := NewHubFromEnv() // builds URLs only: nothing is sent
	if h.Endpoint != DefaultHubEndpoint || h.Token != "hf_x" {
		t.Fatalf("hub = %+v", h)
	}
	if got := h.DownloadURL("Qwen/Qwen2.5-0.5B-Instruct-GGUF", "dir/a b.gguf"); got != "https://huggingface.co/Qwen/Qwen2.5-0.5B-Instruct-GGUF/resolve/main/dir/a%20b.gguf" {
		t.Fatalf("download URL = %s", got)
	}
	if _, err := h.Files(context.Background(), "../etc"); err == nil {
		t.Fatal("a malformed repository id was accepted")
	}
}

func TestRecommendedModelsAreComplete(t *testing.T) {
	if n := len(RecommendedModels); n < 4 || n > 6 {
		t.Fatalf("%d recommended models, want 4–6", n)
	}
	for _, r := range RecommendedModels {
		if checkRepo(r.Repo) != nil || !strings.HasSuffix(r.File, ".gguf") || r.Size <= 0 || r.License == "" || r.Title == "" {
			t.Errorf("incomplete suggestion: %+v", r)
		}
		if QuantFromName(r.File) == "" {
			t.Errorf("%s: the file name states no quantization", r.File)
		}
	}
}

func TestRoughMemoryIsAboveTheFileSize(t *testing.T) {
	if RoughMemory(0) != 0 {
		t.Fatal("no size, no estimate")
	}
	const gib = 1 << 30
	if got := RoughMemory(4 * gib); got <= 4*gib || got > 6*gib {
		t.Fatalf("RoughMemory(4 GiB) = %s", FormatBytes(got))
	}
}
