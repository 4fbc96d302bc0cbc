package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/beekeeper-hive/beekeeper/hive"
	"github.com/beekeeper-hive/beekeeper/queenclient"
	"github.com/beekeeper-hive/beekeeper/spawner"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// openHive opens the local hive the way the headless commands share: same registry and
// code as the desktop app, spawned_by "hive-<hostname>", workers left running on exit.
func openHive(queenURL, token string) (*hive.Hive, error) {
	// Passive: a short-lived command must not re-sync the whole registry against the
	// one Queen it was given (or none); the app's hive owns the background sync.
	return hive.Open(hive.Options{
		QueenURL:   queenURL,
		QueenToken: token,
		SpawnedBy:  hive.DefaultHiveID(),
		Passive:    true,
	})
}

// runSpawn is `beekeeper spawn`: start a worker, print progress, then its id, port and
// URL once it serves. With --queen it registers there at once (fast path); the worker's
// own heartbeats keep it known, and any later hive's sync registers what is pending.
func runSpawn(args []string) int {
	fs := flag.NewFlagSet("spawn", flag.ContinueOnError)
	model := fs.String("model", "", "GGUF model file (required)")
	queenURL := fs.String("queen", "", "Queen URL to register with, e.g. http://127.0.0.1:7833 (default Queenless)")
	token := fs.String("token", "", "Queen token, also handed to the worker (default $"+wire.EnvQueenToken+"; the flag shows it in ps)")
	wtype := fs.String("type", wire.DefaultWorkerType, "worker type")
	port := fs.Int("port", 0, "port (default the first free one in 8080..8200)")
	ctxSize := fs.Int("ctx-size", 0, "context size (default the worker's)")
	threads := fs.Int("threads", 0, "CPU threads (default the worker's)")
	gpuLayers := fs.String("gpu-layers", "", "layers on the GPU: auto, all, a count, 0 = CPU only (default the worker's: auto)")
	ttl := fs.Duration("ttl", 0, "stop the worker after this long with no request, e.g. 10m (default 0: keep running)")
	if err := fs.Parse(args); err != nil {
		return exitFlags(err)
	}
	if *model == "" {
		return fail(wire.ExitBadArgs, "spawn: --model is required (a .gguf file)")
	}
	h, err := openHive(*queenURL, envDefault(*token, wire.EnvQueenToken))
	if err != nil {
		return fail(1, "spawn: %v", err)
	}
	defer h.Close(false) // workers outlive the command

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e, err := h.Spawn(ctx, hive.SpawnRequest{
		ModelPath: *model, WorkerType: *wtype, Port: *port,
		CtxSize: *ctxSize, Threads: *threads, GPULayers: *gpuLayers, TTL: *ttl, RegisterWithQueen: true,
	}, func(p hive.SpawnProgress) {
		switch p.Phase {
		case hive.PhaseStarting:
			fmt.Fprintf(os.Stderr, "starting %s on port %d (pid %d)\n", p.WorkerID, p.Port, p.PID)
		case hive.PhaseRetrying:
			fmt.Fprintf(os.Stderr, "port %d was taken; trying the next\n", p.Port)
		case hive.PhaseLoading:
			fmt.Fprintf(os.Stderr, "loading %3.0f%%\n", p.Fraction*100)
		}
	})
	if err != nil {
		return fail(1, "spawn: %v", err)
	}
	fmt.Printf("%s\tport %d\t%s\tqueen %s\n", e.ID, e.Port, e.URL(), e.Sync)
	return 0
}

// runPS is `beekeeper ps`: the local registry as a table.
func runPS(args []string) int {
	fs := flag.NewFlagSet("ps", flag.ContinueOnError)
	token := fs.String("token", "", "Queen token, to show each worker's live state there (default $"+wire.EnvQueenToken+")")
	if err := fs.Parse(args); err != nil {
		return exitFlags(err)
	}
	h, err := openHive("", "")
	if err != nil {
		return fail(1, "ps: %v", err)
	}
	defer h.Close(false)
	entries := h.List()
	live := queenViews(entries, envDefault(*token, wire.EnvQueenToken))
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tPID\tPORT\tMODEL\tQUEEN\tSTARTED\tURL")
	for _, e := range entries {
		state := string(e.State)
		if e.ExitCode != nil {
			state += fmt.Sprintf(" (%d)", *e.ExitCode)
		}
		// A headless command runs no sync, so the recorded state may be old: show what
		// the Queen says now when it answers.
		queen := string(e.Sync)
		if view, ok := live[e.QueenURL]; ok && e.State.Live() {
			if w, ok := view[e.ID]; ok && w.Port == e.Port {
				queen = string(w.State)
			} else {
				queen = "unknown to queen"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n", e.ID, state, e.PID, e.Port, e.Model,
			queen, e.StartedAt.Local().Format(time.DateTime), e.URL())
	}
	tw.Flush()
	return 0
}

// queenViews lists the workers of each Queen the entries were synced with, by URL; a
// Queen that does not answer within a second is left out.
func queenViews(entries []hive.Entry, token string) map[string]map[string]wire.Worker {
	views := map[string]map[string]wire.Worker{}
	for _, e := range entries {
		if e.QueenURL == "" || views[e.QueenURL] != nil {
			continue
		}
		client, err := queenclient.New(e.QueenURL, token, queenclient.Options{})
		if err != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		workers, err := client.List(ctx)
		cancel()
		if err != nil {
			continue
		}
		byID := make(map[string]wire.Worker, len(workers))
		for _, w := range workers {
			byID[w.WorkerID] = w
		}
		views[e.QueenURL] = byID
	}
	return views
}

// runStop is `beekeeper stop ID`.
func runStop(args []string) int {
	fs := flag.NewFlagSet("stop", flag.ContinueOnError)
	if err := fs.Parse(args); err != nil {
		return exitFlags(err)
	}
	if fs.NArg() != 1 {
		return fail(wire.ExitBadArgs, "stop: give one worker id (see beekeeper ps)")
	}
	h, err := openHive("", "")
	if err != nil {
		return fail(1, "stop: %v", err)
	}
	defer h.Close(false)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := h.Stop(ctx, fs.Arg(0)); err != nil {
		return fail(1, "stop: %v", err)
	}
	fmt.Println("stopped", fs.Arg(0))
	return 0
}

// runLogs is `beekeeper logs ID [-f]`.
func runLogs(args []string) int {
	fs := flag.NewFlagSet("logs", flag.ContinueOnError)
	follow := fs.Bool("f", false, "keep printing new lines until interrupted")
	n := fs.Int("n", 200, "lines to print first")
	// Accept `logs ID -f` as well as `logs -f ID`.
	var id string
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		id, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return exitFlags(err)
	}
	if id == "" && fs.NArg() == 1 {
		id = fs.Arg(0)
	}
	if id == "" {
		return fail(wire.ExitBadArgs, "logs: give one worker id (see beekeeper ps)")
	}
	h, err := openHive("", "")
	if err != nil {
		return fail(1, "logs: %v", err)
	}
	path, err := h.LogFile(id)
	h.Close(false)
	if err != nil {
		return fail(1, "logs: %v", err)
	}
	lines, err := spawner.Tail(path, *n)
	if err != nil {
		return fail(1, "logs: %v", err)
	}
	for _, l := range lines {
		fmt.Println(l)
	}
	if *follow {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		if err := spawner.Follow(ctx, path, os.Stdout, false); err != nil {
			return fail(1, "logs: %v", err)
		}
	}
	return 0
}

func exitFlags(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return wire.ExitBadArgs
}
