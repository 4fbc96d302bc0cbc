package cli

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/beekeeper-hive/beekeeper/queen"
	"github.com/beekeeper-hive/beekeeper/wire"
)

// envQueenToken passes the token without putting it on the command line (where ps shows it).
const envQueenToken = "BEEKEEPER_QUEEN_TOKEN"

func runQueen(args []string) int {
	fs := flag.NewFlagSet("queen", flag.ContinueOnError)
	addr := fs.String("addr", wire.DefaultQueenAddr, "address to listen on (host:port)")
	token := fs.String("token", os.Getenv(envQueenToken), "bearer token required on every endpoint but /health (default $"+envQueenToken+")")
	interval := fs.Duration("heartbeat-interval", wire.DefaultHeartbeatInterval, "heartbeat interval handed to workers")
	advertise := fs.String("advertise-url", "", "URL handed to workers as queen_url (default: the address a spawner used to reach this Queen)")
	retention := fs.Duration("retention", 10*time.Minute, "how long an offline worker stays listed before it is removed")
	verbose := fs.Bool("v", false, "log debug detail")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: beekeeper queen [--addr 127.0.0.1:7833] [--token T] [--heartbeat-interval 5s] [--advertise-url URL]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	if *interval <= 0 || *retention <= 0 {
		return fail(2, "--heartbeat-interval and --retention must be positive durations such as 5s or 10m")
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
		HeartbeatInterval: *interval,
		Retention:         *retention,
		Logger:            logger,
	})
	if err != nil {
		return fail(2, "%v", err)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fail(1, "listen on %s: %v (is another Queen running? pick another --addr)", *addr, err)
	}
	if host, _, _ := net.SplitHostPort(ln.Addr().String()); !wire.IsLoopback(host) && *token == "" {
		logger.Warn("listening beyond loopback without a token: anyone who reaches this port can register workers and use them; set --token")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	url := *advertise
	if url == "" {
		url = "http://" + ln.Addr().String()
	}
	logger.Info("queen listening", "url", url, "heartbeat_interval", *interval, "token", *token != "")
	if err := q.Serve(ctx, ln); err != nil {
		return fail(1, "%v", err)
	}
	logger.Info("queen stopped")
	return 0
}
