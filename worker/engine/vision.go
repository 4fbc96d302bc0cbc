package engine

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"

	"github.com/hybridgroup/yzma/pkg/llama"
	"github.com/hybridgroup/yzma/pkg/mtmd"

	"github.com/beekeeper-hive/beekeeper/llamaruntime"
)

// Images in prompts. With a projector (Config.Projector, the model's mmproj GGUF) a
// chat's prompt text holds MediaMarker where each image goes, and Sampling.Images the
// encoded images in the same order. Prepare decodes and tokenizes them with llama.cpp's
// mtmd on the request's goroutine (thread-safe, per mtmd.h); the scheduler, which owns
// the context, encodes them with the projector and decodes the whole prompt into the
// sequence's cache in one go (mtmd's helper), then samples as for any prompt.

// ErrNoProjector is returned by Prepare for images on an engine loaded without one.
var ErrNoProjector = errors.New("images need a multimodal projector: start the worker with --mmproj FILE")

// ImageError says why an image of a request cannot be read; the request's fault.
type ImageError struct {
	Index int // 0-based, in prompt order
	Msg   string
}

func (e *ImageError) Error() string { return fmt.Sprintf("image %d: %s", e.Index+1, e.Msg) }

// mediaToken stands, in a sequence's record of its cache, for each position an image
// fills: no prompt token equals it, so the prompt cache reuses at most the text before
// a request's first image (whose cache is exactly a text-only prompt's).
const mediaToken llama.Token = -1

// media is a prepared prompt's chunks: text and images, as mtmd tokenized them.
type media struct {
	chunks  atomic.Uintptr // mtmd.InputChunks; 0 once freed
	nTokens int            // prompt tokens, image tokens included (usage)
}

// free releases the chunks, once; safe from any goroutine.
func (m *media) free() {
	if c := m.chunks.Swap(0); c != 0 {
		mtmd.InputChunksFree(mtmd.InputChunks(c))
	}
}

// reusable is the part of the job's prompt the prompt cache may serve: none of a prompt
// with images, which mtmd's helper reads from position 0 (so such a request takes the
// sequence whose cache is worth least, and empties it).
func (j *Job) reusable() []llama.Token {
	if j.media != nil {
		return nil
	}
	return j.tokens
}

// release frees what the job holds outside Go's heap, once it is done or dropped.
func (j *Job) release() {
	if j.media != nil {
		j.media.free()
	}
}

// loadProjector loads the projector at path for the engine's model. On a model with
// GPU layers it runs on the GPU too.
func (e *Engine) loadProjector(path, libDir string) error {
	if err := CheckModelFile(path); err != nil {
		return err
	}
	dir, err := llamaruntime.Load(libDir)
	if err != nil {
		return err
	}
	if err := llamaruntime.LoadVision(dir); err != nil {
		return err
	}
	params := mtmd.ContextParamsDefault()
	params.UseGPU = e.gpuLayers > 0
	params.Threads = int32(e.threads)
	params.PrintTimings = false
	llamaruntime.VisionErrors() // forget older lines
	mctx, err := mtmd.InitFromFile(path, e.model, params)
	if err != nil {
		if why := llamaruntime.VisionErrors(); why != "" {
			err = fmt.Errorf("%w: %s", err, why)
		}
		return &ModelError{Path: path, Err: fmt.Errorf("llama.cpp refused the projector: %w", err)}
	}
	if !mtmd.SupportVision(mctx) {
		_ = mtmd.Free(mctx)
		return &ModelError{Path: path, Err: errors.New("the projector reads no images (an audio projector?): name the model's vision mmproj")}
	}
	e.mctx, e.marker = mctx, mtmd.GetMarker(mctx)
	return nil
}

// freeProjector frees the projector's context, if any (it refers to the model: before it).
func (e *Engine) freeProjector() {
	if e.mctx != 0 {
		_ = mtmd.Free(e.mctx)
		e.mctx = 0
	}
}

// Vision reports whether the engine takes images (it was loaded with a projector).
func (e *Engine) Vision() bool { return e.mctx != 0 }

// MediaMarker is the text that stands for one image in a prompt ("<__media__>").
func (e *Engine) MediaMarker() string { return e.marker }

// prepareMedia is Prepare for a prompt with images: mtmd decodes each image (PNG, JPEG,
// BMP, GIF, ...), resizes it for the projector and splits the prompt into text and
// image chunks. The job's tokens record the positions the prompt fills: the text chunks'
// tokens, mediaToken for each image position.
func (e *Engine) prepareMedia(prompt string, parseSpecial bool, images [][]byte) (*Job, error) {
	if e.mctx == 0 {
		return nil, ErrNoProjector
	}
	if n := strings.Count(prompt, e.marker); n != len(images) {
		return nil, fmt.Errorf("the prompt holds %d image markers (%q) for %d images: remove the marker from the text", n, e.marker, len(images))
	}
	bitmaps := make([]mtmd.Bitmap, 0, len(images))
	defer func() {
		for _, b := range bitmaps {
			mtmd.BitmapFree(b)
		}
	}()
	for i, img := range images {
		if len(img) == 0 {
			return nil, &ImageError{Index: i, Msg: "it is empty"}
		}
		w := mtmd.BitmapInitFromBuf(e.mctx, &img[0], uint64(len(img)), false, mtmd.InitOptDefault())
		runtime.KeepAlive(img)
		if w.Bitmap == 0 {
			return nil, &ImageError{Index: i, Msg: "llama.cpp could not decode it: send a PNG, JPEG, GIF or BMP image"}
		}
		bitmaps = append(bitmaps, w.Bitmap)
		if mtmd.BitmapIsAudio(w.Bitmap) {
			return nil, &ImageError{Index: i, Msg: "it is audio, not an image"}
		}
	}
	chunks := mtmd.InputChunksInit()
	m := &media{}
	m.chunks.Store(uintptr(chunks))
	text := mtmd.NewInputText(prompt, true, parseSpecial)
	rc := mtmd.Tokenize(e.mctx, chunks, text, bitmaps)
	runtime.KeepAlive(text)
	if rc != 0 {
		m.free()
		if rc == 2 {
			return nil, errors.New("llama.cpp could not prepare an image for the projector")
		}
		return nil, fmt.Errorf("llama.cpp could not tokenize the prompt with its images (mtmd_tokenize returned %d)", rc)
	}
	var tokens []llama.Token
	n := mtmd.InputChunksSize(chunks)
	for i := range n {
		c := mtmd.InputChunksGet(chunks, i)
		m.nTokens += int(mtmd.InputChunkGetNTokens(c))
		if mtmd.InputChunkGetType(c) == mtmd.InputChunkTypeText {
			tokens = append(tokens, mtmd.InputChunkGetTokensText(c)...)
			continue
		}
		for range mtmd.InputChunkGetNPos(c) {
			tokens = append(tokens, mediaToken)
		}
	}
	if n == 0 || mtmd.InputChunkGetType(mtmd.InputChunksGet(chunks, n-1)) != mtmd.InputChunkTypeText {
		m.free() // the first token is sampled from the last text token's logits
		return nil, errors.New("the prompt must end with text after its last image")
	}
	// The cache holds a cell per token: that, not the positions, must fit.
	if m.nTokens >= e.ctxSize {
		m.free()
		return nil, &ContextExceededError{PromptTokens: m.nTokens, ContextSize: e.ctxSize}
	}
	job := &Job{tokens: tokens, media: m, maxNew: e.ctxSize - m.nTokens}
	// A job that never reaches the scheduler (429, a client gone before its turn) frees
	// its chunks when collected; the scheduler frees them as soon as they are read.
	runtime.AddCleanup(job, func(m *media) { m.free() }, m)
	return job, nil
}

// readMedia reads the prompt of every sequence whose request holds images, whole, with
// mtmd's helper: text chunks are decoded, images encoded by the projector and their
// embeddings decoded, into the sequence's cache from position 0, in batches of its own.
// It runs between steps on the scheduler's goroutine (mtmd and the context are not
// thread-safe), so running streams wait for it once. The first token is sampled at once,
// before the next decode overwrites the logits.
func (s *scheduler) readMedia() {
	for _, q := range s.seqs {
		if q.state != seqPrompt || q.req.job.media == nil || q.req.ctx.Err() != nil {
			continue // a request whose client left: dropCancelled ends it
		}
		m := q.req.job.media
		chunks := mtmd.InputChunks(m.chunks.Load())
		var past llama.Pos
		rc := int32(-1)
		if chunks != 0 {
			rc = mtmd.HelperEvalChunks(s.e.mctx, s.lctx, chunks, 0, q.id, int32(s.e.nBatch), true, &past)
		}
		m.free()
		if rc != 0 {
			_, _ = llama.MemorySeqRm(s.mem, q.id, -1, -1)
			q.cached = q.cached[:0]
			s.finish(q, "", fmt.Errorf("mtmd_helper_eval_chunks returned %d", rc))
			continue
		}
		// The positions the helper used are the record; they match the chunks' count.
		rec := q.prompt
		for len(rec) < int(past) {
			rec = append(rec, mediaToken)
		}
		q.cached = append(q.cached[:0], rec[:past]...)
		q.nRead = len(q.prompt)
		q.logitIdx = -1 // the last output: the prompt's last token
		s.sample(q)
	}
}
