package ui

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/beekeeper-hive/beekeeper/app"
	"github.com/beekeeper-hive/beekeeper/chat"
	"github.com/beekeeper-hive/beekeeper/hive"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// The Chat screen's targets: the local workers that serve and the Queen's models, found,
// probed and offered in the picker.

// chatTargets lists the local workers that serve, then the Queen's models.
func (u *UI) chatTargets() []chat.Target {
	var out []chat.Target
	token := ""
	var qs app.QueenState
	if u.core != nil {
		qs = u.core.QueenState()
		s := u.core.Settings()
		switch s.QueenMode {
		case app.QueenEmbedded:
			token = s.EmbeddedToken
		case app.QueenRemote:
			token = s.RemoteToken
		}
	}
	if u.hive != nil {
		for _, e := range u.hive.List() {
			if e.State != hive.StateReady && e.State != hive.StateStarting {
				continue
			}
			out = append(out, chat.Target{Kind: chat.TargetWorker, BaseURL: e.URL(), Model: e.Model,
				WorkerID: e.ID, ModelPath: e.ModelPath, Token: token})
		}
	}
	sortTargets(out)
	if qs.URL != "" {
		seen := map[string]bool{}
		for _, w := range qs.Workers {
			if w.State == wire.StateOnline && !seen[w.Model] {
				seen[w.Model] = true
				out = append(out, chat.Target{Kind: chat.TargetQueen, BaseURL: qs.URL, Model: w.Model, Token: token})
			}
		}
		if len(seen) == 0 { // still offer the Queen, so its state shows in the picker
			out = append(out, chat.Target{Kind: chat.TargetQueen, BaseURL: qs.URL, Token: token})
		}
	}
	return out
}

func targetKey(t chat.Target) string {
	if t.Kind == chat.TargetQueen {
		return "queen|" + t.BaseURL + "|" + t.Model
	}
	return "worker|" + t.WorkerID + "|" + t.BaseURL
}

// reach is a target's probe result.
type reach struct {
	ok     bool
	models []string
	err    string
}

func targetLabel(t chat.Target, r *reach) string {
	var s string
	if t.Kind == chat.TargetQueen {
		model := t.Model
		if model == "" {
			model = "no model online"
		}
		s = fmt.Sprintf("Queen · %s (any online worker)", model)
	} else {
		s = fmt.Sprintf("%s · %s", t.WorkerID, t.Model)
	}
	switch {
	case r == nil:
		return s + " · checking…"
	case r.ok:
		return s + " · reachable"
	default:
		return s + " · unreachable"
	}
}

// follow refreshes the targets when the hive or the Queen changes.
func (v *chatView) follow() {
	if v.u.hive == nil {
		return
	}
	events, unsub := v.u.hive.Subscribe()
	var appCh <-chan struct{}
	unsubApp := func() {}
	if v.u.core != nil {
		appCh, unsubApp = v.u.core.Subscribe()
	}
	v.u.goBackground(func(ctx context.Context) {
		defer unsub()
		defer unsubApp()
		for {
			select {
			case <-ctx.Done():
				return
			case _, ok := <-events:
				if !ok {
					return
				}
			case <-appCh:
			}
			// Coalesce a burst (a spawn sends several events) into one refresh and probe.
			settle := time.NewTimer(250 * time.Millisecond)
		drain:
			for {
				select {
				case <-ctx.Done():
					settle.Stop()
					return
				case _, ok := <-events:
					if !ok {
						events = nil
					}
				case <-appCh:
				case <-settle.C:
					break drain
				}
			}
			v.u.do(v.refreshTargets)
		}
	})
}

// refreshTargets lists the targets and probes each in the background.
func (v *chatView) refreshTargets() {
	v.probeSerial++
	serial := v.probeSerial
	v.u.goBackground(func(ctx context.Context) {
		targets := v.deps.targets()
		v.u.do(func() {
			if serial != v.probeSerial {
				return
			}
			v.targets = targets
			v.renderTargets()
		})
		for _, t := range targets {
			models, err := v.deps.client.Probe(ctx, t.BaseURL, t.Token, 2*time.Second)
			r := &reach{ok: err == nil, models: models}
			if err != nil {
				r.err = err.Error()
			}
			key := targetKey(t)
			v.u.do(func() {
				v.reach[key] = r
				v.renderTargets()
			})
		}
	})
}

// renderTargets fills the picker, keeping the conversation's own target even when it
// is gone, so the user sees it and its state.
func (v *chatView) renderTargets() {
	opts := make([]string, 0, len(v.targets)+1)
	present := false
	for _, t := range v.targets {
		opts = append(opts, targetLabel(t, v.reach[targetKey(t)]))
		if v.conv != nil && targetKey(t) == targetKey(v.conv.Target) {
			present = true
		}
	}
	if v.conv != nil && len(v.conv.Messages) == 0 && !present && len(v.targets) > 0 {
		// An empty chat's target that went away (the Queen's "no model online" entry
		// once a model came online) is nothing to keep: it picks again below.
		v.conv.Target = chat.Target{}
	}
	if v.conv != nil && v.conv.Target.BaseURL != "" && !present {
		gone := v.conv.Target
		v.targets = append(v.targets, gone)
		v.reach[targetKey(gone)] = &reach{err: "not running"}
		opts = append(opts, targetLabel(gone, v.reach[targetKey(gone)]))
	}
	v.targetSel.Options = opts
	// A new chat takes the first target that answers (or the first one, until probed),
	// so the common case, one local worker, needs no picking.
	if v.conv != nil && v.conv.Target.BaseURL == "" && len(v.targets) > 0 {
		v.conv.Target = v.targets[0]
		for _, t := range v.targets {
			if r := v.reach[targetKey(t)]; r != nil && r.ok {
				v.conv.Target = t
				break
			}
		}
	}
	if i := v.currentIndex(); i >= 0 {
		v.targetSel.SetSelectedIndex(i)
	} else {
		v.targetSel.ClearSelected()
	}
	v.targetSel.Refresh()
	v.showTargetInfo()
}

// currentIndex is the conversation target's position in v.targets, or -1.
func (v *chatView) currentIndex() int {
	if v.conv == nil || v.conv.Target.BaseURL == "" {
		return -1
	}
	for i, t := range v.targets {
		if targetKey(t) == targetKey(v.conv.Target) {
			return i
		}
	}
	return -1
}

func (v *chatView) targetChanged() {
	i := v.targetSel.SelectedIndex()
	if i < 0 || i >= len(v.targets) || v.conv == nil {
		return
	}
	v.conv.Target = v.targets[i]
	v.showTargetInfo()
}

func (v *chatView) showTargetInfo() {
	i := v.currentIndex()
	if i < 0 && len(v.targets) > 0 {
		v.targetInfo.SetText("Choose a worker or the Queen above.")
		return
	}
	if i < 0 {
		v.targetInfo.SetText("No target: spawn a worker on the Workers or Models screen, or set a Queen.")
		return
	}
	t := v.targets[i]
	r := v.reach[targetKey(t)]
	switch {
	case r == nil:
		v.targetInfo.SetText(t.BaseURL + ": checking…")
	case r.ok:
		v.targetInfo.SetText(fmt.Sprintf("%s serves %s", t.BaseURL, strings.Join(r.models, ", ")))
	default:
		v.targetInfo.SetText(fmt.Sprintf("%s is unreachable: %s", t.BaseURL, r.err))
	}
}

// useWorker makes workerID the target, in a new chat unless the current one is empty.
func (v *chatView) useWorker(workerID string) {
	if v.conv != nil && len(v.conv.Messages) > 0 && v.conv.Target.WorkerID != workerID {
		v.startNew()
	}
	// Take the fresh list now: a worker spawned a moment ago must not show as "not
	// running" until the background refresh lands.
	v.targets = v.deps.targets()
	for _, t := range v.targets {
		if t.Kind == chat.TargetWorker && t.WorkerID == workerID {
			v.conv.Target = t
		}
	}
	v.renderTargets()
	v.refreshTargets()
}

// currentTarget is the chosen target with its token (the stored one has none).
func (v *chatView) currentTarget() (chat.Target, bool) {
	i := v.currentIndex()
	if i < 0 {
		return chat.Target{}, false
	}
	return v.targets[i], true
}

// sortTargets orders workers by id, then the Queen's models: stable picker entries.
func sortTargets(ts []chat.Target) {
	sort.SliceStable(ts, func(i, j int) bool {
		if ts[i].Kind != ts[j].Kind {
			return ts[i].Kind == chat.TargetWorker
		}
		return targetKey(ts[i]) < targetKey(ts[j])
	})
}
