package hive

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/beekeeper-hive/beekeeper/queenclient"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// Spawn orders (CONTRACT §4.7): with a Queen set and Options.ResolveModel given, the hive
// long-polls the Queen for the pending orders it may take, takes those for models it has,
// spawns each worker and reports it. Nothing is spawned twice for one order: the Queen
// lets one hive take it, the worker's entry records the order (so a restarted hive finds
// the worker it already started), and the worker's registration completes the order even
// if the hive goes before it can report.

const (
	orderPoll      = 25 * time.Second // how long one long-poll waits at the Queen
	orderRenew     = 10 * time.Second // lease renewal while a worker loads (the Queen's lease is 30 s)
	orderBackoff   = time.Second      // first retry after a failed poll, doubled up to orderBackoffMax
	orderBackoffMx = 15 * time.Second
)

// serveOrders runs until ctx ends; the hive's WaitGroup owns it.
func (h *Hive) serveOrders(ctx context.Context) {
	backoff := orderBackoff
	var client *queenclient.Client
	var clientFor string
	for ctx.Err() == nil {
		url, token, changed := h.queenForOrders()
		if url == "" {
			select { // Queenless: nothing to serve until a Queen is set
			case <-ctx.Done():
			case <-changed:
			}
			continue
		}
		if client == nil || clientFor != url+"\x00"+token {
			c, err := queenclient.New(url, token, queenclient.Options{})
			if err != nil {
				h.log.Warn("spawn orders: bad Queen URL", "url", url, "err", err)
				waitOrChange(ctx, changed, orderBackoffMx)
				continue
			}
			client, clientFor = c, url+"\x00"+token
		}
		// A Queen change ends the poll at once: the next one goes to the new Queen.
		pollCtx, cancel := context.WithCancel(ctx)
		stop := context.AfterFunc(ctx, cancel)
		go func() {
			select {
			case <-changed:
				cancel()
			case <-pollCtx.Done():
			}
		}()
		orders, err := client.SpawnOrders(pollCtx, wire.OrderPending, h.opts.HiveID, orderPoll)
		if err != nil {
			cancel()
			stop()
			if ctx.Err() == nil && !errors.Is(err, context.Canceled) {
				h.log.Debug("spawn orders: poll failed", "queen", url, "err", err)
				waitOrChange(ctx, changed, backoff+rand.N(backoff/2))
				backoff = min(2*backoff, orderBackoffMx)
			}
			continue
		}
		backoff = orderBackoff
		for _, o := range orders {
			if pollCtx.Err() != nil {
				break
			}
			h.takeOrder(pollCtx, client, o)
		}
		cancel()
		stop()
	}
}

// queenForOrders returns the Queen to serve and a channel closed when it changes.
func (h *Hive) queenForOrders() (url, token string, changed <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.opts.QueenURL, h.opts.QueenToken, h.queenChanged
}

func waitOrChange(ctx context.Context, changed <-chan struct{}, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-changed:
	case <-t.C:
	}
}

// takeOrder serves one pending order, if this machine has its model.
func (h *Hive) takeOrder(ctx context.Context, c *queenclient.Client, o wire.SpawnOrder) {
	path, ok := h.opts.ResolveModel(o.Model)
	if !ok {
		return // another hive may have it; the order waits for one
	}
	log := h.log.With("order", o.OrderID, "model", o.Model)
	if _, err := c.ClaimSpawnOrder(ctx, o.OrderID, h.opts.HiveID); err != nil {
		var apiErr *wire.APIError
		if !errors.As(err, &apiErr) || (apiErr.Detail.Code != wire.CodeOrderTaken && apiErr.Detail.Code != wire.CodeOrderEnded) {
			log.Warn("spawn order: claim failed", "err", err)
		}
		return // another hive was first, or it ended meanwhile
	}
	// Started for this order already (a claim before this hive restarted, whose lease
	// ran out while it was down)? Then the worker is the answer.
	if e, ok := h.liveEntryForOrder(o.OrderID); ok {
		h.reportOrder(ctx, c, o.OrderID, e.ID, "", log)
		return
	}
	log.Info("spawn order taken", "path", path)
	renewCtx, stopRenew := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { // renews the lease while the worker loads; ends with stopRenew
		defer close(done)
		t := time.NewTicker(orderRenew)
		defer t.Stop()
		for {
			select {
			case <-renewCtx.Done():
				return
			case <-t.C:
				_, err := c.ClaimSpawnOrder(renewCtx, o.OrderID, h.opts.HiveID)
				var apiErr *wire.APIError
				switch {
				case err == nil || renewCtx.Err() != nil:
				case errors.As(err, &apiErr) && apiErr.Detail.Code == wire.CodeOrderEnded:
					return // the worker registered: the order is done, nothing to renew
				default:
					log.Warn("spawn order: lease renewal failed", "err", err)
				}
			}
		}
	}()
	e, err := h.Spawn(ctx, SpawnRequest{
		ModelPath: path, WorkerType: o.WorkerType, CtxSize: o.CtxSize,
		RegisterWithQueen: true, SpawnOrder: o.OrderID,
	}, nil)
	stopRenew()
	<-done
	if ctx.Err() != nil {
		// Closing, or the Queen changed: leave the order taken. Its lease runs out and
		// it goes back to pending, or the worker's registration completes it.
		return
	}
	if err != nil {
		log.Warn("spawn order failed", "err", err)
		h.reportOrder(ctx, c, o.OrderID, "", err.Error(), log)
		return
	}
	log.Info("spawn order done", "worker", e.ID)
	h.reportOrder(ctx, c, o.OrderID, e.ID, "", log)
}

func (h *Hive) reportOrder(ctx context.Context, c *queenclient.Client, id, workerID, errText string, log interface {
	Warn(string, ...any)
}) {
	if _, err := c.ReportSpawnOrder(ctx, id, h.opts.HiveID, workerID, errText); err != nil {
		// A worker's registration completes its order anyway; an unreported failure
		// stays taken until the lease runs out, and then another hive may try.
		log.Warn("spawn order: report failed", "err", err)
	}
}

// liveEntryForOrder finds the live worker started for order id.
func (h *Hive) liveEntryForOrder(id string) (Entry, bool) {
	for _, e := range h.reg.List() {
		if e.SpawnOrder == id && e.State.Live() {
			return e, true
		}
	}
	return Entry{}, false
}
