package app

import (
	"context"
	"errors"

	"github.com/beekeeper-hive/beekeeper/models"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// The app as a local OpenAI endpoint (issue 12): with a Queen on, any model a hive can
// start (this app's models folder and recent models among them) may be named by a
// client; it is loaded on request and unloaded when idle. The Queen screen shows the
// endpoint's URL and each model's status from EndpointStatus.

// Model statuses on the Queen screen.
const (
	ModelLoaded   = "loaded"   // a worker serves it and has requests in flight
	ModelIdle     = "idle"     // a worker serves it, with nothing in flight
	ModelLoading  = "loading"  // a hive is starting a worker for it
	ModelLoadable = "loadable" // a hive can start it on the next request
)

// EndpointModel is one model a client of the endpoint may name.
type EndpointModel struct {
	Name    string
	Status  string   // ModelLoaded, ModelIdle, ModelLoading or ModelLoadable
	Where   string   // the hive that can load it (loadable, loading), else "beekeeper"
	Workers []string // the online workers serving it
}

// EndpointStatus is the endpoint's URL (the base a client puts before /v1) and its
// models, sorted by name.
type EndpointStatus struct {
	URL    string
	Models []EndpointModel
}

// EndpointStatus asks the current Queen for the models it can serve and its workers'
// load. "no Queen" when the app runs Queenless.
func (a *App) EndpointStatus(ctx context.Context) (EndpointStatus, error) {
	a.mu.Lock()
	view := a.view
	a.mu.Unlock()
	if view == nil {
		return EndpointStatus{}, errors.New("no Queen: turn the embedded Queen on in the Queen screen")
	}
	var list wire.ModelList
	if err := getJSON(ctx, view.url+wire.PathModels, view.token, &list); err != nil {
		return EndpointStatus{}, err
	}
	workers, err := a.QueenWorkers(ctx)
	if err != nil {
		return EndpointStatus{}, err
	}
	st := EndpointStatus{URL: view.url}
	for _, m := range list.Data {
		em := EndpointModel{Name: m.ID, Status: m.Status, Where: m.OwnedBy}
		if m.Status == wire.ModelLoaded || m.Status == "" {
			em.Status = ModelIdle
			for _, w := range workers {
				if w.State == wire.StateOnline && w.Model == m.ID {
					em.Workers = append(em.Workers, w.WorkerID)
					if w.ActiveRequests > 0 {
						em.Status = ModelLoaded
					}
				}
			}
		}
		st.Models = append(st.Models, em)
	}
	return st, nil
}

// listModels is what the hive reports to the Queen as loadable: the recent models,
// then the models folder (the files findModel resolves).
func (a *App) listModels() []string {
	s := a.Settings()
	return models.List(s.ModelsFolder, s.RecentModels)
}
