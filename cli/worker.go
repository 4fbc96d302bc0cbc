package cli

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/beekeeper-hive/beekeeper/internal/httpguard"
	"github.com/beekeeper-hive/beekeeper/wire"
	"github.com/beekeeper-hive/beekeeper/worker"
)

// runWorker is `beekeeper worker`: flags into worker.Config, signals into a context, and
// the error of worker.Run into the exit code the spawner acts on.
func runWorker(args []string) int {
	var cfg worker.Config
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.StringVar(&cfg.ModelPath, "model", "", "GGUF model file to serve (required)")
	fs.IntVar(&cfg.Port, "port", 0, "TCP port to listen on (required)")
	fs.StringVar(&cfg.Host, "host", wire.DefaultHost, "address to listen on; loopback unless a remote Queen must reach the worker")
	fs.StringVar(&cfg.WorkerID, "worker-id", "", "worker id (default worker-<type>-<port>, or worker-<type>-<host>-<port> off loopback)")
	fs.StringVar(&cfg.WorkerType, "worker-type", wire.DefaultWorkerType, "worker type")
	fs.StringVar(&cfg.QueenURL, "queen-url", "", "Queen to heartbeat to (default none: Queenless until a Queen adopts the worker)")
	fs.StringVar(&cfg.AdvertiseHost, "advertise-host", "", "host the Queen reaches this worker at (default --host)")
	fs.StringVar(&cfg.SpawnedBy, "spawned-by", "", "who started the worker: gui or hive-<id>")
	fs.StringVar(&cfg.SpawnOrder, "spawn-order", "", "the Queen's spawn order this worker was started for (sent when it registers itself)")
	fs.IntVar(&cfg.CtxSize, "ctx-size", 0, "context size per slot in tokens (default the model's, at most 4096)")
	fs.IntVar(&cfg.Threads, "threads", 0, "CPU threads (default 1 for a model under 256 MiB, else the physical cores)")
	fs.IntVar(&cfg.Parallel, "parallel", 1, "requests generated at once, decoded together in one batch (slots)")
	fs.DurationVar(&cfg.IdleTTL, "ttl", 0, "stop after this long with no request, e.g. 10m (default 0: keep running); a hive then loads the model again on request")
	fs.BoolVar(&cfg.Embeddings, "embeddings", false, "also serve /v1/embeddings (a second context; pooling from the model, mean when it names none)")
	fs.StringVar(&cfg.Projector, "mmproj", "", "the model's multimodal projector (mmproj GGUF): chats may then hold image_url parts (data: URLs); needs beekeeper runtime install --vision")
	fs.StringVar(&cfg.GPULayers, "gpu-layers", "auto", "layers on the GPU: auto (as many as fit in free device memory), all, or a count; 0 = CPU only")
	fs.IntVar(&cfg.Queue, "queue", 0, "requests that may wait for a slot before 429 (default 4 per slot; -1 none)")
	fs.StringVar(&cfg.APIToken, "api-token", "",
		"deprecated, shows the token to every local user in ps: set $"+wire.EnvAPIToken+" instead (bearer token required on every endpoint but /health, and sent to the Queen)")
	allowedHosts := fs.String("allowed-hosts", os.Getenv(envAllowedHosts),
		"comma-separated Host names accepted besides loopback and this machine's names and addresses (default $"+envAllowedHosts+"; * = any)")
	allowedOrigins := fs.String("allowed-origins", os.Getenv(envAllowedOrigins),
		"comma-separated web page origins allowed to call this worker, e.g. http://localhost:3000 (default $"+envAllowedOrigins+"; none: only same-origin loopback pages)")
	fs.IntVar(&cfg.MaxConnsPerClient, "max-conns-per-client", httpguard.DefaultMaxConnsPerClient, "connections one client address may hold open at once (-1 = no cap)")
	fs.DurationVar(&cfg.BodyTimeout, "body-timeout", httpguard.DefaultBodyTimeout, "time a client has to send a request body")
	fs.StringVar(&cfg.LlamaLib, "llama-lib", "", "folder of the llama.cpp libraries (default $BEEKEEPER_LLAMA_LIB, then the runtime cache)")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return wire.ExitOK
		}
		return wire.ExitBadArgs
	}
	if fs.NArg() > 0 {
		return fail(wire.ExitBadArgs, "worker: unexpected argument %q (flags only; see beekeeper worker -h)", fs.Arg(0))
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "api-token" {
			fmt.Fprintf(os.Stderr, "beekeeper: worker: --api-token is deprecated (any local user reads it in ps): set $%s instead\n", wire.EnvAPIToken)
		}
	})
	cfg.APIToken = envDefault(cfg.APIToken, wire.EnvAPIToken)
	cfg.AllowedHosts, cfg.AllowedOrigins = splitList(*allowedHosts), splitList(*allowedOrigins)
	// A spawner hands the worker its identity key in the environment; the worker writes
	// it (or the one it makes) to its key file for the spawner's registrations.
	cfg.WorkerKey, cfg.KeyFile = os.Getenv(wire.EnvWorkerKey), true

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := worker.Run(ctx, cfg); err != nil {
		code := worker.ExitCode(err)
		return fail(code, "worker: %v (%s)", err, wire.ExitReason(code))
	}
	return wire.ExitOK
}

// Environment defaults of the Host and Origin allow-lists (as OLLAMA_ORIGINS): they reach
// the workers a hive spawns too, which inherit its environment.
const (
	envAllowedHosts   = "BEEKEEPER_ALLOWED_HOSTS"
	envAllowedOrigins = "BEEKEEPER_ALLOWED_ORIGINS"
)

// envDefault is value, or else the environment variable name: secrets are not flag
// defaults, which -h would print.
func envDefault(value, name string) string {
	if value != "" {
		return value
	}
	return os.Getenv(name)
}

// splitList splits a comma-separated flag value, dropping empty entries.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
