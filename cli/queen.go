package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/beekeeper-hive/beekeeper/internal/httpguard"
	"github.com/beekeeper-hive/beekeeper/queen"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// envQueenToken passes the token without putting it on the command line (where ps shows it).
const envQueenToken = wire.EnvQueenToken

// envWorkerNetworks is --worker-networks's default.
const envWorkerNetworks = "BEEKEEPER_WORKER_NETWORKS"

func runQueen(args []string) int {
	fs := flag.NewFlagSet("queen", flag.ContinueOnError)
	addr := fs.String("addr", wire.DefaultQueenAddr, "address to listen on (host:port)")
	token := fs.String("token", "", "bearer token required on every endpoint but /health (default $"+envQueenToken+"; the flag shows it in ps)")
	interval := fs.Duration("heartbeat-interval", wire.DefaultHeartbeatInterval, "heartbeat interval handed to workers")
	advertise := fs.String("advertise-url", "", "URL handed to workers as queen_url (default: the address a spawner used to reach this Queen)")
	retention := fs.Duration("retention", 10*time.Minute, "how long an offline worker stays listed before it is removed")
	insecure := fs.Bool("insecure", false, "listen beyond loopback without a token (anyone who reaches the port can register workers and read prompts)")
	allowedHosts := fs.String("allowed-hosts", os.Getenv(envAllowedHosts),
		"comma-separated Host names accepted besides loopback, this machine's names and addresses and the --advertise-url host (default $"+envAllowedHosts+"; * = any)")
	allowedOrigins := fs.String("allowed-origins", os.Getenv(envAllowedOrigins),
		"comma-separated web page origins allowed to call this Queen, e.g. http://localhost:3000 (default $"+envAllowedOrigins+"; none: only same-origin loopback pages)")
	networks := fs.String("worker-networks", os.Getenv(envWorkerNetworks),
		"comma-separated CIDRs workers may be registered and reached in (default $"+envWorkerNetworks+"; empty: any loopback or private address)")
	maxConns := fs.Int("max-conns-per-client", httpguard.DefaultMaxConnsPerClient, "connections one client address may hold open at once (-1 = no cap)")
	bodyTimeout := fs.Duration("body-timeout", httpguard.DefaultBodyTimeout, "time a client has to send a request body")
	loadTimeout := fs.Duration("load-timeout", 0, "how long a request for a model that is not loaded waits while a hive loads it (default 60s plus 1s per 100 MB of model)")
	verbose := fs.Bool("v", false, "log debug detail")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: beekeeper queen [--addr 127.0.0.1:7833] [--heartbeat-interval 5s] [--advertise-url URL] [--worker-networks CIDRS] [--insecure]")
		fmt.Fprintln(fs.Output(), "the token comes from $"+envQueenToken+" (--token shows it to every local user in ps)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	*token = envDefault(*token, envQueenToken)
	if *loadTimeout < 0 {
		return fail(2, "--load-timeout must not be negative (0 = from the model's size)")
	}
	if *interval <= 0 || *retention <= 0 {
		return fail(2, "--heartbeat-interval and --retention must be positive durations such as 5s or 10m")
	}
	workerNets, err := queen.ParseNetworks(*networks)
	if err != nil {
		return fail(2, "--worker-networks: %v", err)
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	q, err := queen.New(queen.Config{
		Addr:              *addr,
		AdvertiseURL:      *advertise,
		Token:             *token,
		Insecure:          *insecure,
		AllowedHosts:      splitList(*allowedHosts),
		AllowedOrigins:    splitList(*allowedOrigins),
		WorkerNetworks:    workerNets,
		MaxConnsPerClient: *maxConns,
		BodyTimeout:       *bodyTimeout,
		HeartbeatInterval: *interval,
		Retention:         *retention,
		LoadTimeout:       *loadTimeout,
		Logger:            logger,
	})
	if err != nil {
		return fail(2, "%v", err)
	}
	if err := q.CheckListen(*addr); err != nil {
		return fail(2, "%v", err) // before listening: the port is never open without a token
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fail(1, "listen on %s: %v (is another Queen running? pick another --addr)", *addr, err)
	}
	if host, _, _ := net.SplitHostPort(ln.Addr().String()); !wire.IsLoopback(host) && *token == "" && *insecure {
		logger.Warn("listening beyond loopback without a token (--insecure): anyone who reaches this port can register workers and read their prompts")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	url := *advertise
	if url == "" {
		url = "http://" + ln.Addr().String()
	}
	logger.Info("queen listening", "url", url, "heartbeat_interval", *interval, "token", *token != "")
	if err := q.Serve(ctx, ln); err != nil {
		if errors.Is(err, queen.ErrNoToken) {
			return fail(2, "%v", err)
		}
		return fail(1, "%v", err)
	}
	logger.Info("queen stopped")
	return 0
}
