package worker

import (
	"encoding/json"
	"testing"
)

// TestAppendJSONStringMatchesEncodingJSON guards the hand-built SSE events: every string
// must decode back to what encoding/json would have produced.
func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", "quote \" and \\ backslash", "line\nfeed\ttab\r", "\x00\x01\x1f", "café ☕ 🐝", "bad \xff utf8", "<tag>&"} {
		var back string
		if err := json.Unmarshal(appendJSONString(nil, []byte(s)), &back); err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		want, _ := json.Marshal(s)
		var wantBack string
		_ = json.Unmarshal(want, &wantBack)
		if back != wantBack {
			t.Fatalf("%q decoded to %q, want %q", s, back, wantBack)
		}
	}
}
