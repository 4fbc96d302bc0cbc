package worker

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/png"
	"strings"
	"testing"
)

// pngHeader is a PNG's signature and IHDR chunk claiming w×h pixels: enough for its
// size to be read, as a decompression bomb's would be.
func pngHeader(w, h uint32) []byte {
	ihdr := binary.BigEndian.AppendUint32(nil, w)
	ihdr = binary.BigEndian.AppendUint32(ihdr, h)
	ihdr = append(ihdr, 8, 2, 0, 0, 0)
	chunk := append([]byte("IHDR"), ihdr...)
	b := []byte("\x89PNG\r\n\x1a\n")
	b = binary.BigEndian.AppendUint32(b, uint32(len(ihdr)))
	b = append(b, chunk...)
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(chunk))
}

func TestImageFromURL(t *testing.T) {
	var small bytes.Buffer
	if err := png.Encode(&small, image.NewGray(image.Rect(0, 0, 3, 2))); err != nil {
		t.Fatal(err)
	}
	b64 := base64.StdEncoding.EncodeToString(small.Bytes())
	for _, c := range []struct {
		name, url, wantErr string
	}{
		{"png", "data:image/png;base64," + b64, ""},
		{"no media type", "data:;base64," + b64, ""},
		{"upper case", "DATA:IMAGE/PNG;BASE64," + b64, ""},
		{"no padding", "data:image/png;base64," + strings.TrimRight(b64, "="), ""},
		{"http", "http://127.0.0.1/x.png", "does not download"},
		{"HTTPS", "HTTPS://example.org/x.png", "does not download"},
		{"no scheme", "cat.png", "not a data: URL"},
		{"ftp", "ftp://example.org/x.png", "not a data: URL"},
		{"no comma", "data:image/png;base64" + b64, "no comma"},
		{"percent-encoded", "data:image/png,%89PNG", "not base64"},
		{"svg", "data:image/svg+xml;base64,PHN2Zy8+", "not a PNG, JPEG, GIF or BMP"},
		{"audio", "data:audio/wav;base64,UklGRg==", "not an image"},
		{"empty", "data:image/png;base64,", "empty"},
		{"huge png", "data:image/png;base64," + base64.StdEncoding.EncodeToString(pngHeader(20000, 20000)), "20000×20000"},
		{"too many pixels", "data:image/png;base64," + base64.StdEncoding.EncodeToString(pngHeader(8000, 8000)), "megapixels"},
	} {
		t.Run(c.name, func(t *testing.T) {
			img, err := imageFromURL(c.url)
			switch {
			case c.wantErr == "" && (err != nil || !bytes.Equal(img, small.Bytes())):
				t.Fatalf("%v (%d bytes)", err, len(img))
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Fatalf("error %v, want one saying %q", err, c.wantErr)
			}
		})
	}
}
