package ui

import (
	"strings"
	"time"

	"github.com/beekeeper-hive/beekeeper/chat"
)

// streamRenderer coalesces a stream's pieces and repaints the accumulated text on the UI
// thread at most once per interval. Add and Close run on the stream goroutine.
type streamRenderer struct {
	th   *chat.Throttle
	text strings.Builder // owned by the throttle's flush, which runs one at a time
}

func newStreamRenderer(interval time.Duration, do func(func()), paint func(text string)) *streamRenderer {
	r := &streamRenderer{}
	r.th = chat.NewThrottle(interval, func(pending string) {
		r.text.WriteString(pending)
		snapshot := r.text.String()
		do(func() { paint(snapshot) })
	})
	return r
}

func (r *streamRenderer) Add(piece string) { r.th.Add(piece) }
func (r *streamRenderer) Close()           { r.th.Close() }
