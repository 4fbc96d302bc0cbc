package cli

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/beekeeper-hive/beekeeper/hive"
	"github.com/beekeeper-hive/beekeeper/internal/dirs"
	"github.com/beekeeper-hive/beekeeper/models"
	"github.com/beekeeper-hive/beekeeper/queenclient"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// runHive is `beekeeper hive`: this machine's hive without the window, for a server. It
// re-adopts the workers of the local registry, keeps the Queen in line with them, and
// takes the Queen's spawn orders for the models in --models, until SIGTERM/SIGINT.
// Workers keep running after it ends, as they do after the app.
func runHive(args []string) int {
	fs := flag.NewFlagSet("hive", flag.ContinueOnError)
	queenURL := fs.String("queen", "", "Queen URL to register workers with and take spawn orders from (required)")
	token := fs.String("token", "", "Queen token, also handed to the workers (default $"+wire.EnvQueenToken+"; the flag shows it in ps)")
	folder := fs.String("models", dirs.Models(), "folder of the GGUF models this hive may start for spawn orders")
	id := fs.String("id", hive.DefaultHiveID(), "this hive's name in spawn orders")
	ttl := fs.Duration("ttl", 0, "stop workers started for spawn orders after this long with no request, e.g. 10m (default 0: keep them); the next request loads them again")
	maxWorkers := fs.Int("max-workers", 0, "at most this many workers for spawn orders; one more evicts the least recently used idle one (default 0: no cap)")
	maxMemory := fs.String("max-memory", "", "memory all workers may take together, by the models' estimates, e.g. 12GiB; one more evicts the least recently used idle worker (default: no cap beyond leaving 10% of RAM free)")
	if err := fs.Parse(args); err != nil {
		return exitFlags(err)
	}
	memBudget, err := parseBytes(*maxMemory)
	if err != nil || *maxWorkers < 0 {
		return fail(wire.ExitBadArgs, "hive: --max-memory %q / --max-workers %d: give a size like 12GiB or 8000MiB and a count ≥ 0", *maxMemory, *maxWorkers)
	}
	if *queenURL == "" {
		return fail(wire.ExitBadArgs, "hive: --queen is required (the Queen to serve, e.g. http://127.0.0.1:7833)")
	}
	if !wire.ValidWorkerID(*id) {
		return fail(wire.ExitBadArgs, "hive: --id %q must be 1..%d characters of A-Z a-z 0-9 . _ -", *id, wire.MaxWorkerIDLen)
	}
	if st, err := os.Stat(*folder); err != nil || !st.IsDir() {
		return fail(wire.ExitBadArgs, "hive: models folder %s is not a folder: put the .gguf files there or pass --models DIR", *folder)
	}
	h, err := hive.Open(hive.Options{
		QueenURL:     *queenURL,
		QueenToken:   envDefault(*token, wire.EnvQueenToken),
		SpawnedBy:    *id,
		HiveID:       *id,
		ResolveModel: func(name string) (string, bool) { return models.Find(name, *folder, nil) },
		ListModels:   func() []string { return models.List(*folder, nil) },
		OrderTTL:     *ttl,
		MaxWorkers:   *maxWorkers,
		MaxMemory:    memBudget,
	})
	if err != nil {
		return fail(1, "hive: %v", err)
	}
	fmt.Printf("hive %s serving Queen %s with the models in %s (%d workers in the local registry)\n",
		*id, *queenURL, *folder, len(h.List()))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	if err := h.Close(false); err != nil {
		return fail(1, "hive: %v", err)
	}
	return 0
}

// runOrder is `beekeeper order`: ask a Queen for a worker serving a model, on whichever
// hive has it (or the one named), and wait until it serves.
func runOrder(args []string) int {
	fs := flag.NewFlagSet("order", flag.ContinueOnError)
	queenURL := fs.String("queen", "http://"+wire.DefaultQueenAddr, "Queen URL")
	token := fs.String("token", "", "Queen token (default $"+wire.EnvQueenToken+"; the flag shows it in ps)")
	model := fs.String("model", "", "model name, as workers serve it (a file stories260K.gguf is stories260K) (required)")
	hiveID := fs.String("hive", "", "only this hive may take the order (default any hive that has the model)")
	wtype := fs.String("type", wire.DefaultWorkerType, "worker type")
	ctxSize := fs.Int("ctx-size", 0, "context size (default the worker's)")
	wait := fs.Duration("wait", 2*time.Minute, "how long to wait for the worker (0: print the order and return)")
	if err := fs.Parse(args); err != nil {
		return exitFlags(err)
	}
	if *model == "" {
		return fail(wire.ExitBadArgs, "order: --model is required (a model name, e.g. stories260K)")
	}
	if *hiveID != "" && !wire.ValidWorkerID(*hiveID) {
		return fail(wire.ExitBadArgs, "order: --hive %q must be 1..%d characters of A-Z a-z 0-9 . _ -", *hiveID, wire.MaxWorkerIDLen)
	}
	c, err := queenclient.New(*queenURL, envDefault(*token, wire.EnvQueenToken), queenclient.Options{})
	if err != nil {
		return fail(wire.ExitBadArgs, "order: %v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	o, err := c.OrderSpawn(ctx, wire.SpawnOrderRequest{Model: *model, WorkerType: *wtype, Hive: *hiveID, CtxSize: *ctxSize})
	if err != nil {
		return fail(1, "order: %v", err)
	}
	id := o.OrderID
	fmt.Printf("order %s: %s\n", id, o.State)
	if *wait <= 0 {
		return 0
	}
	deadline := time.Now().Add(*wait)
	last := o.State
	for !o.Ended() {
		if time.Now().After(deadline) {
			return fail(1, "order %s still %s after %v: no hive has taken it (is a hive with model %q serving this Queen? `beekeeper hive --queen %s`)",
				o.OrderID, o.State, *wait, *model, *queenURL)
		}
		select {
		case <-ctx.Done():
			return fail(1, "order %s: interrupted while %s (the order stays; cancel it at the Queen if unwanted)", o.OrderID, o.State)
		case <-time.After(250 * time.Millisecond):
		}
		if o, err = c.SpawnOrder(ctx, id); err != nil {
			return fail(1, "order %s: %v (a restarted Queen forgets its orders: order again)", id, err)
		}
		if o.State != last {
			fmt.Printf("order %s: %s %s\n", o.OrderID, o.State, o.TakenBy)
			last = o.State
		}
	}
	if o.State == wire.OrderFailed {
		return fail(1, "order %s failed on %s: %s", o.OrderID, o.TakenBy, o.Error)
	}
	fmt.Printf("order %s: worker %s serves %s on %s\n", o.OrderID, o.WorkerID, o.Model, o.TakenBy)
	return 0
}

// parseBytes reads a size: a number with an optional unit (B, KiB, MiB, GiB, TiB; K, M,
// G, T and KB, MB, GB, TB count in 1024s too, as memory sizes do); "" is 0.
func parseBytes(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := s, ""
	if i >= 0 {
		num, unit = s[:i], strings.ToLower(strings.TrimSpace(s[i:]))
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("size %q: not a number", s)
	}
	shift := map[string]uint{"": 0, "b": 0, "k": 10, "kb": 10, "kib": 10, "m": 20, "mb": 20, "mib": 20,
		"g": 30, "gb": 30, "gib": 30, "t": 40, "tb": 40, "tib": 40}
	sh, ok := shift[unit]
	if !ok {
		return 0, fmt.Errorf("size %q: unknown unit %q", s, unit)
	}
	return uint64(v * float64(uint64(1)<<sh)), nil
}
