package queenclient

import (
	"context"
	"net/http"

	"github.com/beekeeper-hive/beekeeper/wire"
)

// ReportHive tells the Queen what this hive can start (wire/hives.go).
func (c *Client) ReportHive(ctx context.Context, rep wire.HiveReport) (wire.HiveInfo, error) {
	var out wire.HiveInfo
	err := c.do(ctx, http.MethodPost, wire.PathHives, rep, &out)
	return out, err
}

// Hives lists the hives' reports the Queen holds.
func (c *Client) Hives(ctx context.Context) ([]wire.HiveInfo, error) {
	var out wire.HiveList
	err := c.do(ctx, http.MethodGet, wire.PathHives, nil, &out)
	return out.Hives, err
}
