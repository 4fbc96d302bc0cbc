package worker_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/openai/openai-go/v3"

	"github.com/beekeeper-hive/beekeeper/internal/synthmodel"
	"github.com/beekeeper-hive/beekeeper/internal/testenv"
	"github.com/beekeeper-hive/beekeeper/llamaruntime"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// Images in chats run on a real worker with a projector: the test model cannot see, so
// the projector is a synthetic one of llava's shape whose output is the test model's
// width (internal/synthmodel), its random weights enough to make different images give
// different greedy answers.

// visionWorker starts a worker with the synthetic projector (and extra flags). It skips
// the test when the runtime has no multimodal library, except under CI, where
// scripts/setup.sh builds it and its absence is a failure.
func visionWorker(t *testing.T, extra ...string) *testenv.Process {
	t.Helper()
	if dir := testenv.Runtime(t); !llamaruntime.HasVision(dir) {
		msg := "the llama.cpp runtime in " + dir + " has no " + llamaruntime.VisionFile() + ": build it with `beekeeper runtime install --vision`"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg + " (scripts/setup.sh does, and CI must have it)")
		}
		t.Skip(msg)
	}
	proj := filepath.Join(t.TempDir(), "mmproj-synth.gguf")
	if err := synthmodel.WriteProjector(proj, synthmodel.TinyProjector, 7); err != nil {
		t.Fatal(err)
	}
	return testenv.StartWorker(t, append([]string{"--mmproj", proj}, extra...)...)
}

// testPicture is a 48×40 picture: a gradient, or a checkerboard when checker is set.
func testPicture(checker bool) image.Image {
	img := image.NewRGBA(image.Rect(0, 0, 48, 40))
	for y := range 40 {
		for x := range 48 {
			c := color.RGBA{uint8(x * 5), uint8(y * 6), 128, 255}
			if checker {
				v := uint8((x/8 + y/8) % 2 * 255)
				c = color.RGBA{v, 255 - v, uint8(x * y), 255}
			}
			img.Set(x, y, c)
		}
	}
	return img
}

func pngURL(t *testing.T, img image.Image) string {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return "data:image/png;base64," + base64.StdEncoding.EncodeToString(b.Bytes())
}

func jpegURL(t *testing.T, img image.Image) string {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, nil); err != nil {
		t.Fatal(err)
	}
	return "data:image/jpeg;base64," + base64.StdEncoding.EncodeToString(b.Bytes())
}

// imageChat is a greedy chat body whose one user message holds text and images.
func imageChat(text string, urls ...string) map[string]any {
	parts := []map[string]any{{"type": "text", "text": text}}
	for _, u := range urls {
		parts = append(parts, map[string]any{"type": "image_url", "image_url": map[string]string{"url": u}})
	}
	return map[string]any{"messages": []map[string]any{{"role": "user", "content": parts}}, "temperature": 0, "max_tokens": 24}
}

func chatOK(t *testing.T, url string, body any) wire.ChatCompletion {
	t.Helper()
	status, answer := post(t, url+wire.PathChat, body)
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, answer)
	}
	c := decode[wire.ChatCompletion](t, answer)
	if len(c.Choices) != 1 || c.Choices[0].Message.Content == "" || c.Usage == nil {
		t.Fatalf("chat completion: %s", answer)
	}
	return c
}

func TestVisionChat(t *testing.T) {
	w := visionWorker(t, "--parallel", "2")
	gradient, checker := pngURL(t, testPicture(false)), pngURL(t, testPicture(true))
	const question = "What is in the picture?"

	t.Run("capabilities say vision", func(t *testing.T) {
		resp, err := http.Get(w.URL + wire.PathCapabilities)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var caps wire.Capabilities
		if err := json.NewDecoder(resp.Body).Decode(&caps); err != nil || !caps.Vision {
			t.Fatalf("capabilities %+v (%v): want vision", caps, err)
		}
	})

	t.Run("image tokens in usage", func(t *testing.T) {
		text := chatOK(t, w.URL, imageChat(question)).Usage.PromptTokens
		one := chatOK(t, w.URL, imageChat(question, gradient)).Usage.PromptTokens
		two := chatOK(t, w.URL, imageChat(question, gradient, checker)).Usage.PromptTokens
		per := synthmodel.TinyProjector.ImageTokens()
		// The marker splits the text in two, which may cost a token or two of its own.
		if one < text+per || one > text+per+4 || two != one+per {
			t.Fatalf("prompt tokens: %d text only, %d with an image, %d with two; an image is %d tokens", text, one, two, per)
		}
	})

	t.Run("the image changes the answer", func(t *testing.T) {
		a := chatOK(t, w.URL, imageChat(question, gradient)).Choices[0].Message.Content
		b := chatOK(t, w.URL, imageChat(question, checker)).Choices[0].Message.Content
		again := chatOK(t, w.URL, imageChat(question, gradient)).Choices[0].Message.Content
		if a == b || a != again {
			t.Fatalf("greedy answers: gradient %q, checkerboard %q, gradient again %q", a, b, again)
		}
		// JPEG too, and the same picture decodes to nearly the same pixels: an answer,
		// not necessarily the PNG's.
		chatOK(t, w.URL, imageChat(question, jpegURL(t, testPicture(true))))
	})

	t.Run("stream", func(t *testing.T) {
		body := imageChat(question, checker)
		body["stream"], body["stream_options"] = true, map[string]bool{"include_usage": true}
		status, answer := post(t, w.URL+wire.PathChat, body)
		if status != http.StatusOK {
			t.Fatalf("status %d: %s", status, answer)
		}
		events := sseEvents(t, answer)
		var text strings.Builder
		var usage *wire.Usage
		for _, ev := range events[:len(events)-1] {
			c := decode[wire.ChatCompletionChunk](t, []byte(ev))
			if len(c.Choices) == 1 {
				text.WriteString(c.Choices[0].Delta.Content)
			}
			if c.Usage != nil {
				usage = c.Usage
			}
		}
		whole := chatOK(t, w.URL, imageChat(question, checker))
		if text.String() != whole.Choices[0].Message.Content || usage == nil || usage.PromptTokens != whole.Usage.PromptTokens {
			t.Fatalf("streamed %q (usage %+v), whole %q (usage %+v)", text.String(), usage, whole.Choices[0].Message.Content, whole.Usage)
		}
	})

	t.Run("image and text requests side by side", func(t *testing.T) {
		// A long text stream on one sequence while an image is read into the other:
		// each answer is the one it gets alone, so neither disturbed the other's cache.
		story := map[string]any{"messages": []map[string]any{{"role": "user", "content": "Tell me a story."}},
			"temperature": 0, "max_tokens": 200, "ignore_eos": true}
		storyAlone := chatOK(t, w.URL, story).Choices[0].Message.Content
		imageAlone := chatOK(t, w.URL, imageChat(question, gradient)).Choices[0].Message.Content
		var wg sync.WaitGroup
		var storyTogether string
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, answer, err := tryPost(w.URL+wire.PathChat, story)
			if err != nil || status != http.StatusOK {
				t.Errorf("story: %d %s %v", status, answer, err)
				return
			}
			var c wire.ChatCompletion
			if err := json.Unmarshal(answer, &c); err != nil || len(c.Choices) != 1 {
				t.Errorf("story: %s %v", answer, err)
				return
			}
			storyTogether = c.Choices[0].Message.Content
		}()
		var imageTogether []string
		for range 3 {
			imageTogether = append(imageTogether, chatOK(t, w.URL, imageChat(question, gradient)).Choices[0].Message.Content)
		}
		wg.Wait()
		for _, got := range imageTogether {
			if got != imageAlone {
				t.Errorf("the image's answer beside a stream: %q, alone %q", got, imageAlone)
			}
		}
		if storyTogether != storyAlone {
			t.Errorf("the story beside image requests: %q\nalone: %q", storyTogether, storyAlone)
		}
	})

	t.Run("text after images answers as on a fresh worker", func(t *testing.T) {
		// The image requests left their caches; a text request that shares their text
		// prefix must still get exactly a fresh worker's answer.
		plain := testenv.StartWorker(t)
		body := map[string]any{"messages": []map[string]any{{"role": "user", "content": question + " Tell me."}},
			"temperature": 0, "max_tokens": 24}
		got := chatOK(t, w.URL, body).Choices[0].Message.Content
		want := chatOK(t, plain.URL, body).Choices[0].Message.Content
		if got != want {
			t.Fatalf("after image requests %q, on a fresh worker %q", got, want)
		}
	})

	t.Run("bad images", func(t *testing.T) {
		bmpHuge := make([]byte, 64)
		copy(bmpHuge, "BM")
		bmpHuge[18], bmpHuge[19], bmpHuge[20] = 0x00, 0x00, 0x01 // 65536 pixels wide
		bmpHuge[22] = 1
		for name, c := range map[string]struct{ url, want string }{
			"not an image":   {"data:image/png;base64,AAAA", "PNG, JPEG, GIF or BMP"},
			"broken base64":  {"data:image/png;base64,@@@@", "base64"},
			"not base64":     {"data:image/png,abc", "base64"},
			"not image data": {"data:text/plain;base64,aGVsbG8=", "not an image"},
			"too big":        {"data:image/bmp;base64," + base64.StdEncoding.EncodeToString(bmpHuge), "65536×1"},
			"http URL":       {"http://127.0.0.1:1/cat.png", "data: URL"},
			"https URL":      {"https://example.org/cat.png", "does not download"},
			"file URL":       {"file:///etc/passwd", "data: URL"},
		} {
			t.Run(name, func(t *testing.T) {
				status, answer := post(t, w.URL+wire.PathChat, imageChat(question, c.url))
				detail := wantError(t, status, answer, http.StatusBadRequest, wire.CodeInvalidField)
				if !strings.Contains(detail.Message, c.want) || !strings.Contains(detail.Message, "image_url") {
					t.Fatalf("%q should name %q", detail.Message, c.want)
				}
			})
		}
		t.Run("the marker in the text", func(t *testing.T) {
			status, answer := post(t, w.URL+wire.PathChat, imageChat("What is <__media__>?", gradient))
			if detail := wantError(t, status, answer, http.StatusBadRequest, wire.CodeInvalidField); !strings.Contains(detail.Message, "<__media__>") {
				t.Fatalf("%q should name the marker", detail.Message)
			}
		})
	})

	t.Run("the worker still serves", func(t *testing.T) {
		chatOK(t, w.URL, imageChat(question, gradient))
	})
}

// TestVisionNeedsProjector: a worker started without --mmproj refuses image parts with
// a 400 that names the flag.
func TestVisionNeedsProjector(t *testing.T) {
	w := testenv.StartWorker(t)
	status, answer := post(t, w.URL+wire.PathChat, imageChat("What is this?", pngURL(t, testPicture(false))))
	detail := wantError(t, status, answer, http.StatusBadRequest, wire.CodeInvalidField)
	if !strings.Contains(detail.Message, "--mmproj") || !strings.Contains(detail.Message, "image_url") {
		t.Fatalf("%q should name image_url and --mmproj", detail.Message)
	}
}

// TestVisionSDK: the official OpenAI Go SDK sends an image part, as a chat front-end
// does, and gets an answer that read it.
func TestVisionSDK(t *testing.T) {
	w := visionWorker(t)
	client := sdkClient(w.URL + "/v1")
	ask := func(parts ...openai.ChatCompletionContentPartUnionParam) *openai.ChatCompletion {
		t.Helper()
		res, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
			Model:       sdkModel,
			Messages:    []openai.ChatCompletionMessageParamUnion{openai.UserMessage(parts)},
			MaxTokens:   openai.Int(16),
			Temperature: openai.Float(0),
		})
		if err != nil {
			fatalAPI(t, err)
		}
		return res
	}
	text := ask(openai.TextContentPart("What is in the picture?"))
	withImage := ask(openai.TextContentPart("What is in the picture?"),
		openai.ImageContentPart(openai.ChatCompletionContentPartImageImageURLParam{URL: pngURL(t, testPicture(true)), Detail: "low"}))
	if withImage.Choices[0].Message.Content == "" ||
		withImage.Usage.PromptTokens < text.Usage.PromptTokens+int64(synthmodel.TinyProjector.ImageTokens()) {
		t.Fatalf("with an image: %q, %d prompt tokens (text only: %d)", withImage.Choices[0].Message.Content,
			withImage.Usage.PromptTokens, text.Usage.PromptTokens)
	}

	_, err := client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model: sdkModel,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage([]openai.ChatCompletionContentPartUnionParam{
			openai.ImageContentPart(openai.ChatCompletionContentPartImageImageURLParam{URL: "https://example.org/cat.png"}),
			openai.TextContentPart("What is this?"),
		})},
	})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest || !strings.Contains(apiErr.Message, "data: URL") {
		t.Fatalf("an https image URL through the SDK: %v", err)
	}
}
