package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"text/tabwriter"

	"github.com/beekeeper-hive/beekeeper/llamaruntime"
)

func runRuntime(args []string) int {
	fs := flag.NewFlagSet("runtime", flag.ContinueOnError)
	dir := fs.String("dir", "", "folder to install into or look in (default: the backend's cache folder)")
	backend := fs.String("backend", "", "prebuilt llama.cpp build: "+backendNames()+" (default: "+llamaruntime.DefaultBackend()+")")
	platform := fs.String("platform", "", "install another platform's build (win-x64, mac-arm64, mac-x64, linux-x64, linux-arm64), e.g. for Wine or to copy to that machine (default: this machine's)")
	vision := fs.Bool("vision", false, "also build llama.cpp's multimodal library (images, for workers started with --mmproj) into the build's folder: compiled from the same release's source (Linux; needs npm, git and g++)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: beekeeper runtime install [--backend B] [--platform P] [--dir DIR] [--vision] | list | where [--backend B] [--dir DIR]")
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
		if *vision && *platform != "" && *platform != llamaruntime.Platform() {
			return fail(2, "--vision builds for this machine only: drop --platform")
		}
		installed, err := llamaruntime.InstallPlatform(ctx, *platform, *backend, *dir, logf)
		if err != nil {
			return fail(1, "%v", err)
		}
		if *vision {
			if _, err := llamaruntime.InstallVision(ctx, *backend, installed, logf); err != nil {
				return fail(1, "%v", err)
			}
		}
		if *backend == "" && (*platform == "" || *platform == llamaruntime.Platform()) {
			suggestGPU(os.Stdout)
		}
		return 0
	case "where":
		var found string
		var err error
		if *dir != "" {
			found, err = llamaruntime.Locate(*dir)
		} else {
			found, err = llamaruntime.LocateBackend(*backend)
		}
		if err != nil {
			return fail(1, "%v", err)
		}
		fmt.Println(found)
		return 0
	case "list":
		listRuntimes()
		return 0
	}
	fs.Usage()
	return 2
}

// suggestGPU names the GPU build when this machine's drivers call for another than the
// default build.
func suggestGPU(w io.Writer) {
	s := llamaruntime.Suggest()
	if s.Backend == llamaruntime.DefaultBackend() {
		return
	}
	if b, err := llamaruntime.BuildFor(s.Backend); err == nil && b.Installed() {
		fmt.Fprintf(w, "this machine has %s: the %s build is installed; use it with %s=%s or in the app's Settings\n",
			s.Reason, s.Backend, llamaruntime.EnvBackend, s.Backend)
		return
	}
	fmt.Fprintf(w, "this machine has %s: `beekeeper runtime install --backend %s` for GPU offload\n", s.Reason, s.Backend)
}

// listRuntimes prints every build of this platform, installed or not, and marks the
// folder workers use.
func listRuntimes() {
	selected, err := llamaruntime.Locate("")
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BACKEND\tINSTALLED\tFOLDER")
	custom := selected != ""
	for _, b := range llamaruntime.Builds() {
		mark := ""
		if b.Dir == selected {
			mark, custom = "*", false
		}
		switch {
		case b.Installed() && llamaruntime.HasVision(b.Dir):
			fmt.Fprintf(tw, "%s%s\tyes, vision\t%s\n", b.Backend, mark, b.Dir)
		case b.Installed():
			fmt.Fprintf(tw, "%s%s\tyes\t%s\n", b.Backend, mark, b.Dir)
		case b.Backend == llamaruntime.DefaultBackend():
			fmt.Fprintf(tw, "%s%s\tno\t%s  (beekeeper runtime install)\n", b.Backend, mark, b.Dir)
		default:
			fmt.Fprintf(tw, "%s%s\tno\t%s  (beekeeper runtime install --backend %s)\n", b.Backend, mark, b.Dir, b.Backend)
		}
	}
	if custom { // $BEEKEEPER_LLAMA_LIB or $YZMA_LIB: a folder of no build above
		fmt.Fprintf(tw, "%s*\tyes\t%s\n", llamaruntime.BackendOf(selected), selected)
	}
	tw.Flush()
	if err != nil {
		fmt.Printf("\nno runtime for workers (chosen by %s): %v\n", llamaruntime.SelectedBy(), err)
	} else {
		fmt.Printf("\n* what workers use, chosen by %s; %s=NAME picks another installed build, %s=DIR your own\n",
			llamaruntime.SelectedBy(), llamaruntime.EnvBackend, llamaruntime.EnvLib)
	}
	s := llamaruntime.Suggest()
	fmt.Printf("suggested here: %s, for %s\n", s.Backend, s.Reason)
}

func backendNames() string {
	var s string
	for i, b := range llamaruntime.Builds() {
		if i > 0 {
			s += ", "
		}
		s += b.Backend
	}
	return s
}
