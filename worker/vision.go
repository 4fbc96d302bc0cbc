package worker

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	_ "image/gif" // image.DecodeConfig reads their headers
	_ "image/jpeg"
	_ "image/png"
	"strings"

	"github.com/beekeeper-hive/beekeeper/worker/engine"
)

// Image limits: llama.cpp decodes the whole image before resizing it for the projector,
// so a small PNG of huge dimensions would cost gigabytes. No projector reads more than
// a few megapixels.
const (
	maxImageSide   = 8192
	maxImagePixels = 32 << 20
)

// imageFromURL returns the bytes of an image_url part's image. Only data: URLs are
// taken (data:image/png;base64,...): the worker fetches nothing itself, so a request
// can make it reach neither the network nor the machine's own services.
func imageFromURL(url string) ([]byte, error) {
	scheme, rest, ok := strings.Cut(url, ":")
	switch strings.ToLower(scheme) {
	case "data":
	case "http", "https":
		return nil, errors.New("the worker does not download images: send the image inline as a data: URL (data:image/png;base64,...)")
	default:
		if !ok {
			scheme = url
		}
		return nil, fmt.Errorf("%.40q is not a data: URL: send the image inline (data:image/png;base64,...)", scheme)
	}
	meta, payload, ok := strings.Cut(rest, ",")
	if !ok {
		return nil, errors.New("the data: URL has no comma before its data")
	}
	mediaType, isBase64 := strings.CutSuffix(strings.ToLower(meta), ";base64")
	if !isBase64 {
		return nil, errors.New("the data: URL is not base64: encode the image (data:image/png;base64,...)")
	}
	if mediaType != "" && !strings.HasPrefix(mediaType, "image/") {
		return nil, fmt.Errorf("the data: URL holds %q, not an image", mediaType)
	}
	data, err := base64.StdEncoding.DecodeString(payload)
	if err != nil {
		// Some clients leave out the padding.
		if raw, rawErr := base64.RawStdEncoding.DecodeString(strings.TrimRight(payload, "=")); rawErr == nil {
			return raw, checkImage(raw)
		}
		return nil, fmt.Errorf("the data: URL's base64 is broken: %w", err)
	}
	return data, checkImage(data)
}

// checkImage reads an image's header: it must be a format llama.cpp decodes (PNG, JPEG,
// GIF, BMP) within the size limits.
func checkImage(data []byte) error {
	if len(data) == 0 {
		return errors.New("the image is empty")
	}
	w, h, format, err := imageSize(data)
	if err != nil {
		return err
	}
	if w <= 0 || h <= 0 || w > maxImageSide || h > maxImageSide || w*h > maxImagePixels {
		return fmt.Errorf("the %s image is %d×%d: at most %d pixels a side and %d megapixels are taken", format, w, h, maxImageSide, maxImagePixels>>20)
	}
	return nil
}

// imageSize is the dimensions and format of an encoded image.
func imageSize(data []byte) (w, h int, format string, err error) {
	if len(data) >= 26 && string(data[:2]) == "BM" {
		// BITMAPINFOHEADER: width and height as int32 at 18 and 22 (height < 0: top-down).
		w, h = int(int32(binary.LittleEndian.Uint32(data[18:]))), int(int32(binary.LittleEndian.Uint32(data[22:])))
		return w, max(h, -h), "bmp", nil
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		if errors.Is(err, image.ErrFormat) {
			return 0, 0, "", errors.New("the data is not a PNG, JPEG, GIF or BMP image")
		}
		return 0, 0, "", fmt.Errorf("the image cannot be read: %w", err)
	}
	return cfg.Width, cfg.Height, format, nil
}

// withImages puts the engine's marker for each of a message's images before its text
// (the wire form keeps the text parts and the images apart, so an image goes first, as
// in most requests) and returns the decoded images.
func withImages(e *engine.Engine, i int, content string, urls []string) (string, [][]byte, error) {
	if !e.Vision() {
		return "", nil, badField("messages[%d] holds an image_url part, but this worker has no multimodal projector: "+
			"start it with --mmproj FILE (the model's mmproj GGUF), or send text parts only", i)
	}
	var images [][]byte
	var b strings.Builder
	for j, url := range urls {
		img, err := imageFromURL(url)
		if err != nil {
			return "", nil, badField("messages[%d] image_url %d: %v", i, j+1, err)
		}
		images = append(images, img)
		b.WriteString(e.MediaMarker())
	}
	if content != "" {
		b.WriteString("\n")
		b.WriteString(content)
	}
	return b.String(), images, nil
}
