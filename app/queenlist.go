package app

import (
	"context"
	"errors"

	"github.com/beekeeper-hive/beekeeper/wire"
)

// QueenWorkers asks the current Queen for its workers as they are now. Their load
// figures (KV cache use, free device memory) come with heartbeats, which the event
// stream behind QueenState leaves out, so a screen that shows them asks for them.
func (a *App) QueenWorkers(ctx context.Context) ([]wire.Worker, error) {
	a.mu.Lock()
	view := a.view
	a.mu.Unlock()
	if view == nil {
		return nil, errors.New("no Queen")
	}
	var list wire.WorkerList
	if err := getJSON(ctx, view.url+wire.PathWorkers, view.token, &list); err != nil {
		return nil, err
	}
	return list.Workers, nil
}
