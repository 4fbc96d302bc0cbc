package engine

import (
	"strings"
	"testing"
)

// TestStopperHoldsBackAndCuts feeds pieces one by one and checks what is emitted: stop
// strings never leak, even split across pieces, and UTF-8 characters are never split.
func TestStopperHoldsBackAndCuts(t *testing.T) {
	cases := []struct {
		name     string
		stops    []string
		pieces   []string
		want     string
		stopped  bool
		maxChunk []string // emitted chunks, when the split matters
	}{
		{name: "no stops", pieces: []string{"Once", " upon"}, want: "Once upon", maxChunk: []string{"Once", " upon"}},
		{name: "stop inside a piece", stops: []string{"Lily"}, pieces: []string{"There was Lily", " who"}, want: "There was ", stopped: true},
		{name: "stop split across pieces", stops: []string{"\nUser:"}, pieces: []string{"Hi.", "\n", "Us", "er:", " more"}, want: "Hi.", stopped: true},
		{name: "near miss is released", stops: []string{"\nUser:"}, pieces: []string{"a", "\nUs", "ually"}, want: "a\nUsually"},
		// The cut is at the earliest stop in the text, whatever the order of the list.
		{name: "earliest stop in the text wins over list order", stops: []string{"\n", "."}, pieces: []string{"Hi.\nBye"}, want: "Hi", stopped: true},
		{name: "earliest stop wins when a later one completes too", stops: []string{"!", "\nUser:"}, pieces: []string{"Yes", "\nUser: no!"}, want: "Yes", stopped: true},
		{name: "utf8 split across pieces", pieces: []string{"caf", "\xc3", "\xa9!"}, want: "café!", maxChunk: []string{"caf", "é!"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := stopper{}
			for _, s := range tc.stops {
				st.stops = append(st.stops, []byte(s))
			}
			var got strings.Builder
			var chunks []string
			emit := func(b []byte) error { got.Write(b); chunks = append(chunks, string(b)); return nil }
			stopped := false
			for _, p := range tc.pieces {
				var err error
				if stopped, err = st.add([]byte(p), emit); err != nil {
					t.Fatal(err)
				}
				if stopped {
					break
				}
			}
			if !stopped {
				_ = st.flush(emit)
			}
			if got.String() != tc.want || stopped != tc.stopped {
				t.Fatalf("got %q (stopped %v), want %q (stopped %v)", got.String(), stopped, tc.want, tc.stopped)
			}
			if tc.maxChunk != nil && strings.Join(chunks, "|") != strings.Join(tc.maxChunk, "|") {
				t.Fatalf("chunks %q, want %q", chunks, tc.maxChunk)
			}
		})
	}
}

func TestFallbackPrompt(t *testing.T) {
	got := FallbackPrompt([]Message{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Hi"}, {Role: "assistant", Content: "Hello."}, {Role: "user", Content: " Tell a story "}}, nil)
	want := "Be brief.\n\nUser: Hi\nAssistant: Hello.\nUser: Tell a story\nAssistant:"
	if got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}
