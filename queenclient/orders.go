package queenclient

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/beekeeper-hive/beekeeper/wire"
)

// Spawn orders (docs/protocol.md §4.7, wire/spawn.go): the requester's and the hive's side.

// longPollSlack is how much longer than its wait a long-poll may take before the client
// gives up on the Queen.
const longPollSlack = 10 * time.Second

// maxOrderListBody bounds what a long-poll reads of the Queen's answer.
const maxOrderListBody = 64 << 20

func orderPath(id string) string { return wire.PathSpawnOrders + "/" + url.PathEscape(id) }

// OrderSpawn posts an order.
//
// The client picks the order id when req has none, so the retries of a request whose
// answer was lost order nothing twice.
func (c *Client) OrderSpawn(ctx context.Context, req wire.SpawnOrderRequest) (wire.SpawnOrder, error) {
	if req.OrderID == "" {
		req.OrderID = wire.NewOrderID()
	}
	var out wire.SpawnOrder
	err := c.do(ctx, http.MethodPost, wire.PathSpawnOrders, req, &out)
	return out, err
}

// SpawnOrder gets one order (IsNotFound(err) for an unknown id).
func (c *Client) SpawnOrder(ctx context.Context, id string) (wire.SpawnOrder, error) {
	var out wire.SpawnOrder
	err := c.do(ctx, http.MethodGet, orderPath(id), nil, &out)
	return out, err
}

// SpawnOrders lists orders: state "" = all; hive != "" = the pending ones that hive may take;
// wait > 0 long-polls (the request's own timeout must exceed wait).
//
// A long-poll answers as soon as an order matches, or empty once wait passes (the Queen
// caps wait at 60 s). It is one attempt, not retried: the caller polls again anyway. Its
// timeout is wait plus ten seconds, not the client's per-request Timeout.
func (c *Client) SpawnOrders(ctx context.Context, state wire.SpawnOrderState, hive string, wait time.Duration) ([]wire.SpawnOrder, error) {
	q := url.Values{}
	if state != "" {
		q.Set("state", string(state))
	}
	if hive != "" {
		q.Set("hive", hive)
	}
	path := wire.PathSpawnOrders
	var out wire.SpawnOrderList
	if wait <= 0 {
		if len(q) > 0 {
			path += "?" + q.Encode()
		}
		err := c.do(ctx, http.MethodGet, path, nil, &out)
		return out.Orders, err
	}
	q.Set("wait", wait.String())
	path += "?" + q.Encode()
	ctx, cancel := context.WithTimeout(ctx, wait+longPollSlack)
	defer cancel()
	err := c.longGet(ctx, path, &out)
	return out.Orders, err
}

// WaitSpawnOrders is a hive's long-poll: the pending orders hive may take, once the
// Queen's orders have changed after version since (or wait passes), and the version to
// pass next time. A hive that declines what it got (it lacks the model) is therefore
// not answered again until something changes.
func (c *Client) WaitSpawnOrders(ctx context.Context, hive string, since uint64, wait time.Duration) (wire.SpawnOrderList, error) {
	q := url.Values{}
	q.Set("hive", hive)
	q.Set("since", strconv.FormatUint(since, 10))
	q.Set("wait", wait.String())
	ctx, cancel := context.WithTimeout(ctx, wait+longPollSlack)
	defer cancel()
	var out wire.SpawnOrderList
	err := c.longGet(ctx, wire.PathSpawnOrders+"?"+q.Encode(), &out)
	return out, err
}

// longGet is one GET that may take long: it goes through the client without an overall
// timeout (the stream client), bound by ctx alone, with no retries.
func (c *Client) longGet(ctx context.Context, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return fmt.Errorf("queen GET %s: %w", path, err)
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", wire.BearerPrefix+c.token)
	}
	resp, err := c.stream.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("queen GET %s: %w", path, ctx.Err())
		}
		return &UnreachableError{URL: c.base, Err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxOrderListBody))
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("queen GET %s: %w", path, ctx.Err())
		}
		return &UnreachableError{URL: c.base, Err: err}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("queen GET %s: %w", path, wire.DecodeError(resp.StatusCode, body))
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("queen GET %s: decode answer: %w", path, err)
	}
	return nil
}

// ClaimSpawnOrder takes (or renews) an order for hive.
func (c *Client) ClaimSpawnOrder(ctx context.Context, id string, claim wire.SpawnClaim) (wire.SpawnOrder, error) {
	var out wire.SpawnOrder
	err := c.do(ctx, http.MethodPost, orderPath(id)+"/claim", claim, &out)
	return out, err
}

// ReportSpawnOrder reports the outcome: res.WorkerID when it runs, else res.Error.
func (c *Client) ReportSpawnOrder(ctx context.Context, id string, res wire.SpawnResult) (wire.SpawnOrder, error) {
	if res.WorkerID != "" {
		res.Error = ""
	}
	var out wire.SpawnOrder
	err := c.do(ctx, http.MethodPost, orderPath(id)+"/result", res, &out)
	return out, err
}

// CancelSpawnOrder cancels a pending order.
func (c *Client) CancelSpawnOrder(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, orderPath(id), nil, nil)
}
