package ui

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2/test"

	"github.com/beekeeper-hive/beekeeper/hive"
	"github.com/beekeeper-hive/beekeeper/internal/testenv"
)

// chatOnce opens the Chat tab on worker id (the row's chat button), sends text with an
// 8-token limit and waits for the streamed answer; it returns the conversation's id and
// the answer.
func (tu *testUI) chatOnce(t *testing.T, id, convID, text string) (string, string) {
	t.Helper()
	var v *chatView
	tu.onUI(func() {
		if v = tu.chat; v == nil {
			t.Fatal("the app has no chat screen")
		}
		if convID != "" {
			v.open(convID)
		}
		tu.openChat(id)
		if tu.tabs.Selected() != tu.tabChat {
			t.Fatalf("openChat selected %q, want Chat", tu.tabs.Selected().Text)
		}
		if tu.tabChat.Content != v {
			t.Fatalf("the Chat tab shows %T, not the chat screen", tu.tabChat.Content)
		}
	})
	tu.waitFor(t, "worker "+id+" chosen and reachable in Chat", 15*time.Second, func() bool {
		sel := v.targetSel.Selected
		return strings.HasPrefix(sel, id+" ·") && strings.HasSuffix(sel, "· reachable")
	})
	var before int
	tu.onUI(func() {
		before = len(v.conv.Messages)
		v.temp.SetText("0")
		v.maxTokens.SetText("8")
		test.Type(v.input, text)
		test.Tap(v.send)
	})
	tu.waitFor(t, "the streamed answer", 20*time.Second, func() bool {
		return len(v.conv.Messages) == before+2 && v.cancel == nil
	})
	var answer, gotConv, errText string
	var tokens int
	tu.onUI(func() {
		m := v.conv.Messages[len(v.conv.Messages)-1]
		answer, errText, gotConv = m.Content, m.Error, v.conv.ID
		if m.Metrics != nil {
			tokens = m.Metrics.CompletionTokens
		}
	})
	if errText != "" || answer == "" || tokens != 8 {
		t.Fatalf("answer %q (%d tokens), error %q", answer, tokens, errText)
	}
	return gotConv, answer
}

// TestStateSurvivesRestart is the promise "close the app with workers running, start it
// again: the same rows, same ids, still chatting", end to end: app core + UI, spawn,
// chat, quit (the worker outlives it), a new core + UI on the same state folder, the
// same row ready with the same id and pid, and the same conversation goes on with it.
func TestStateSurvivesRestart(t *testing.T) {
	home := t.TempDir()
	t.Setenv("BEEKEEPER_HOME", home)
	t.Cleanup(func() { stopAll(t, home) }) // runs last: after both apps closed

	first := openTestUI(t, home, false) // the default: workers outlive the app
	quitFirst := first.shutdown(t)
	t.Cleanup(quitFirst)
	first.spawnViaDialog(t, testenv.Model(t))
	first.waitFor(t, "the row to reach ready", 60*time.Second, func() bool {
		return len(first.workers.rows) == 1 && first.workers.rows[0].state == hive.StateReady
	})
	before := first.onlyRow(t)
	convID, _ := first.chatOnce(t, before.id, "", "Once upon a time")
	quitFirst()
	if !processAlive(atoi(t, before.cells[colPID])) {
		t.Fatalf("worker %s (pid %s) did not outlive the app", before.id, before.cells[colPID])
	}

	second := openTestUI(t, home, false)
	t.Cleanup(second.shutdown(t))
	// The first frame shows the re-adopted row: no wait for an event.
	var rows []workerRow
	second.onUI(func() { rows = append(rows, second.workers.rows...) })
	if len(rows) != 1 || rows[0].id != before.id {
		t.Fatalf("after restart the table shows %d rows (%v), want worker %s", len(rows), rows, before.id)
	}
	second.waitFor(t, "the re-adopted row ready", 10*time.Second, func() bool {
		r := second.workers.rows[0]
		return r.state == hive.StateReady
	})
	after := second.onlyRow(t)
	for _, col := range []int{colID, colModel, colPort, colPID} {
		if after.cells[col] != before.cells[col] {
			t.Errorf("column %s: %q before the restart, %q after", colTitles[col], before.cells[col], after.cells[col])
		}
	}
	gotConv, answer := second.chatOnce(t, after.id, convID, "Lily went to the park")
	if gotConv != convID {
		t.Fatalf("the reply went to conversation %s, want the reopened %s", gotConv, convID)
	}
	t.Logf("after the restart worker %s answered: %q", after.id, answer)
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("%q is not a number: %v", s, err)
	}
	return n
}
