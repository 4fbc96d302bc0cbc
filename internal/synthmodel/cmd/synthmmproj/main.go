// Command synthmmproj writes a random-weight llava-style projector (mmproj) GGUF for a
// text model of a given width, to try `beekeeper worker --mmproj` without downloading one:
//
//	go run ./internal/synthmodel/cmd/synthmmproj -out /tmp/mmproj.gguf
//	beekeeper worker --model ../shared/models/stories260K.gguf --port 8080 --mmproj /tmp/mmproj.gguf
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/beekeeper-hive/beekeeper/internal/synthmodel"
)

func main() {
	p := synthmodel.TinyProjector
	out := flag.String("out", "", "the GGUF file to write (required)")
	flag.IntVar(&p.TextEmbd, "text-embd", p.TextEmbd, "the text model's embedding width (stories260K: 64)")
	flag.IntVar(&p.ImageSize, "image-size", p.ImageSize, "pixels a side images are resized to")
	seed := flag.Uint64("seed", 7, "random seed of the weights")
	flag.Parse()
	if *out == "" {
		flag.Usage()
		os.Exit(2)
	}
	if err := synthmodel.WriteProjector(*out, p, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "synthmmproj:", err)
		os.Exit(1)
	}
	fmt.Printf("wrote %s: %d×%d images in %d tokens, output %d wide\n", *out, p.ImageSize, p.ImageSize, p.ImageTokens(), p.TextEmbd)
}
