package cli

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/beekeeper-hive/beekeeper/llamaruntime"
)

func runRuntime(args []string) int {
	fs := flag.NewFlagSet("runtime", flag.ContinueOnError)
	dir := fs.String("dir", "", "folder to install into or look in (default: the cache folder)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: beekeeper runtime install|where [--dir DIR]")
		fs.PrintDefaults()
	}
	if len(args) == 0 {
		fs.Usage()
		return 2
	}
	verb := args[0]
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	switch verb {
	case "install":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
		defer stop()
		logf := func(format string, a ...any) { fmt.Printf(format+"\n", a...) }
		if _, err := llamaruntime.Install(ctx, *dir, logf); err != nil {
			return fail(1, "%v", err)
		}
		return 0
	case "where":
		found, err := llamaruntime.Locate(*dir)
		if err != nil {
			return fail(1, "%v", err)
		}
		fmt.Println(found)
		return 0
	}
	fs.Usage()
	return 2
}
