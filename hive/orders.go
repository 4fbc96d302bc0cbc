package hive

import (
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/beekeeper-hive/beekeeper/queenclient"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// Spawn orders (docs/protocol.md §4.7): with a Queen set and Options.ResolveModel given, the hive
// long-polls the Queen for the pending orders it may take, takes those for models it has,
// spawns each worker and reports it. One order never ends with two workers:
//   - the Queen lets one claim win, and only the claim's token renews it, so two hives
//     under one name (the app and `beekeeper hive` on one machine) cannot both hold it;
//   - the worker's entry records the order, so a restarted hive reports the worker it
//     already has; the worker's registration completes the order even if the hive goes
//     before it can report;
//   - a hive whose order ends with another worker while its own loads abandons the start;
//     one whose report is refused waits for the order's end and stops its worker only
//     if the order ended with another one. Reports are retried while the Queen is
//     unreachable, so a network cut cannot hide a duplicate.

const (
	orderPoll       = 25 * time.Second // how long one long-poll waits at the Queen
	orderRenewIdeal = 10 * time.Second // renewal when the Queen does not say its lease
	orderBackoff    = time.Second      // first retry after a failed poll, doubled up to orderBackoffMax
	orderBackoffMax = 15 * time.Second
	// A report is retried sooner: until it lands, a duplicate may run unnoticed.
	orderReportRetry    = 250 * time.Millisecond
	orderReportRetryMax = 2 * time.Second
)

// newClaimToken is the random token this hive claims orders with.
func newClaimToken() string {
	var b [16]byte
	_, _ = crand.Read(b[:]) // crypto/rand.Read never fails (it panics first)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// serveOrders runs until ctx ends; the hive's WaitGroup owns it.
func (h *Hive) serveOrders(ctx context.Context) {
	backoff := orderBackoff
	var (
		client    *queenclient.Client
		clientFor string
		since     uint64 // the Queen's order version last seen: wait for changes after it
		lastErr   string
		reported  time.Time // the last report of this hive's models to client
	)
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
				waitOrChange(ctx, changed, orderBackoffMax)
				continue
			}
			client, clientFor, since, lastErr, reported = c, url+"\x00"+token, 0, "", time.Time{}
			h.log.Info("taking the Queen's spawn orders for the models on this machine", "queen", url, "hive", h.opts.HiveID)
		}
		if reportDue(reported) && h.reportHive(ctx, client) {
			reported = time.Now()
		}
		// A Queen change ends the poll at once: the next one goes to the new Queen.
		pollCtx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-changed:
				cancel()
			case <-pollCtx.Done():
			}
		}()
		list, err := client.WaitSpawnOrders(pollCtx, h.opts.HiveID, since, min(orderPoll, wire.HiveReportInterval))
		cancel()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, context.Canceled) {
				continue
			}
			// A refusal (a bad hive id, a wrong token) will not heal by itself: say it
			// where people look, once. A Queen that is down is routine.
			var apiErr *wire.APIError
			if errors.As(err, &apiErr) && apiErr.Status < http.StatusInternalServerError && err.Error() != lastErr {
				h.log.Warn("spawn orders: the Queen refuses this hive's poll", "queen", url, "hive", h.opts.HiveID, "err", err)
			} else {
				h.log.Debug("spawn orders: poll failed", "queen", url, "err", err)
			}
			lastErr = err.Error()
			since = 0              // the Queen may have restarted, counting its versions from 0 again
			reported = time.Time{} // and forgotten this hive's models: report them again
			waitOrChange(ctx, changed, backoff+rand.N(backoff/2))
			backoff = min(2*backoff, orderBackoffMax)
			continue
		}
		if list.Version < since {
			reported = time.Time{} // a restarted Queen (versions from 0 again) lost the report
		}
		backoff, lastErr, since = orderBackoff, "", list.Version
		for _, o := range list.Orders {
			if ctx.Err() != nil {
				break
			}
			h.takeOrder(ctx, client, o)
		}
	}
}

// queenForOrders returns the Queen to serve and a channel closed when it changes.
func (h *Hive) queenForOrders() (url, token string, changed <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.opts.QueenURL, h.opts.QueenToken, h.queenChanged
}

// waitOrChange waits d, or less when ctx ends or changed (nil: never) is closed.
func waitOrChange(ctx context.Context, changed <-chan struct{}, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-changed:
	case <-t.C:
	}
}

// takeOrder serves one pending order, if this machine has its model. ctx is the hive's:
// a Queen change does not abandon a worker that is loading.
func (h *Hive) takeOrder(ctx context.Context, c *queenclient.Client, o wire.SpawnOrder) {
	path, ok := h.opts.ResolveModel(o.Model)
	if !ok {
		return // another hive may have it; the order waits for one
	}
	log := h.log.With("order", o.OrderID, "model", o.Model)
	claim := wire.SpawnClaim{Hive: h.opts.HiveID, Token: h.claimToken}
	taken, err := c.ClaimSpawnOrder(ctx, o.OrderID, claim)
	if err != nil {
		if !isOrderConflict(err) {
			log.Warn("spawn order: claim failed", "err", err)
		}
		return // another hive was first, or it ended meanwhile
	}
	// Started for this order already (a claim before this hive restarted, whose lease
	// ran out while it was down)? Then that worker is the answer.
	if e, ok := h.liveEntryForOrder(o.OrderID); ok {
		h.reportOrder(ctx, c, o.OrderID, wire.SpawnResult{WorkerID: e.ID}, log)
		return
	}
	log.Info("spawn order taken", "path", path)
	spawnCtx, abandon := context.WithCancel(ctx)
	defer abandon()
	renewed := make(chan struct{})
	go func() { // renews the claim while the worker loads; ends when spawnCtx does
		defer close(renewed)
		h.renewOrder(spawnCtx, c, o.OrderID, claim, renewEvery(taken.LeaseMS), abandon, log)
	}()
	if err := h.makeRoom(spawnCtx, o.Model, h.estimate(path)); err != nil {
		abandon()
		<-renewed
		var full *errNoRoom
		if errors.As(err, &full) && ctx.Err() == nil && !h.isClosed() {
			log.Warn("spawn order refused", "err", err)
			h.reportOrder(ctx, c, o.OrderID, wire.SpawnResult{Error: err.Error(), ErrorCode: wire.CodeNoRoom}, log)
		}
		return
	}
	e, err := h.Spawn(spawnCtx, SpawnRequest{
		ModelPath: path, WorkerType: o.WorkerType, CtxSize: o.CtxSize, TTL: h.orderTTL(o.Model),
		RegisterWithQueen: true, SpawnOrder: o.OrderID,
	}, nil)
	lost := spawnCtx.Err() != nil && ctx.Err() == nil
	abandon()
	<-renewed
	switch {
	case ctx.Err() != nil || h.isClosed():
		// Closing (Close(true) stops a loading worker before it cancels ctx): leave the
		// order taken. The lease runs out and it goes back to pending for another hive.
	case lost && err == nil:
		h.settleOrder(ctx, c, o.OrderID, e, log) // it came up just as the order ended elsewhere
	case lost:
		log.Info("spawn order ended elsewhere while the worker loaded: start abandoned")
	case err != nil:
		log.Warn("spawn order failed", "err", err)
		h.reportOrder(ctx, c, o.OrderID, wire.SpawnResult{Error: err.Error()}, log)
	default:
		if h.reportOrder(ctx, c, o.OrderID, wire.SpawnResult{WorkerID: e.ID}, log) {
			log.Info("spawn order done", "worker", e.ID)
			return
		}
		h.settleOrder(ctx, c, o.OrderID, e, log)
	}
}

// renewEvery is a third of the Queen's lease (when it says), so two renewals may fail
// before the claim runs out.
func renewEvery(leaseMS int64) time.Duration {
	if leaseMS <= 0 {
		return orderRenewIdeal
	}
	return max(time.Duration(leaseMS)*time.Millisecond/3, 50*time.Millisecond)
}

// renewOrder renews the claim every interval until ctx ends. Only an order that has
// ended with another worker (or was cancelled) makes it abandon the start: an order
// taken by another hive meanwhile (our lease ran out) may still end with our worker,
// which registers with the order id, so that case waits for the end.
func (h *Hive) renewOrder(ctx context.Context, c *queenclient.Client, id string, claim wire.SpawnClaim,
	every time.Duration, abandon func(), log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, err := c.ClaimSpawnOrder(ctx, id, claim)
		switch {
		case err == nil || ctx.Err() != nil:
		case isOrderConflict(err):
			o, err := c.SpawnOrder(ctx, id)
			if err != nil || !o.Ended() {
				continue // taken by another hive: the end decides
			}
			if !h.orderDoneByUs(o) {
				abandon()
			}
			return
		default:
			log.Warn("spawn order: renewal failed", "err", err) // the Queen may be down; keep trying
		}
	}
}

// reportOrder tells the Queen the outcome, retrying while the Queen cannot be reached
// (a report lost to a network cut must not leave a second worker unnoticed); false when
// the Queen refused it because the order is no longer this hive's.
func (h *Hive) reportOrder(ctx context.Context, c *queenclient.Client, id string, res wire.SpawnResult, log *slog.Logger) bool {
	res.Hive, res.Token = h.opts.HiveID, h.claimToken
	backoff := orderReportRetry
	for {
		_, err := c.ReportSpawnOrder(ctx, id, res)
		switch {
		case err == nil:
			return true
		case isOrderConflict(err):
			return false
		case queenclient.IsNotFound(err):
			return true // a restarted Queen forgot the order: the worker re-registers anyway
		}
		log.Warn("spawn order: report failed; retrying", "err", err)
		if waitOrChange(ctx, nil, backoff); ctx.Err() != nil {
			return true // closing: the lease or the worker's registration settles it
		}
		backoff = min(2*backoff, orderReportRetryMax)
	}
}

// settleOrder decides about e, started for order id, once the Queen refused it as the
// order's worker: it waits for the order to end, keeps e if the order ended with it,
// and stops it if the order ended with another worker (one order, one worker). A
// failed or forgotten order leaves e running: it serves, and it is nobody's duplicate.
func (h *Hive) settleOrder(ctx context.Context, c *queenclient.Client, id string, e Entry, log *slog.Logger) {
	backoff := 250 * time.Millisecond
	for {
		o, err := c.SpawnOrder(ctx, id)
		switch {
		case queenclient.IsNotFound(err):
			return
		case err == nil && o.Ended():
			if o.State == wire.OrderDone && !h.orderDoneByUs(o) {
				log.Warn("spawn order was served by another worker while this one loaded: stopping the duplicate", "worker", e.ID, "served_by", o.WorkerID)
				if err := h.Stop(ctx, e.ID); err != nil {
					log.Warn("stop the duplicate worker", "worker", e.ID, "err", err)
				}
			}
			return
		}
		if waitOrChange(ctx, nil, backoff); ctx.Err() != nil {
			return
		}
		backoff = min(2*backoff, orderBackoffMax)
	}
}

// orderDoneByUs reports whether o is done by a live worker of this hive.
func (h *Hive) orderDoneByUs(o wire.SpawnOrder) bool {
	e, ok := h.liveEntryForOrder(o.OrderID)
	return o.State == wire.OrderDone && ok && o.WorkerID == e.ID
}

func isOrderConflict(err error) bool {
	var apiErr *wire.APIError
	return errors.As(err, &apiErr) && (apiErr.Detail.Code == wire.CodeOrderTaken || apiErr.Detail.Code == wire.CodeOrderEnded)
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

// orderTTL is the idle TTL of a worker started for an order for model.
func (h *Hive) orderTTL(model string) time.Duration {
	if h.opts.OrderTTLFor != nil {
		return h.opts.OrderTTLFor(model)
	}
	return h.opts.OrderTTL
}
