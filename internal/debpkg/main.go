// Command debpkg builds Beekeeper's Debian package with nfpm (goreleaser's packager,
// used as a library): the binary, the desktop entry and icon, and systemd user units for
// `beekeeper hive` and `beekeeper queen` with example settings files. The llama.cpp
// runtime is not in it: it depends on the machine's GPU, and is fetched on the first
// start of the hive service or by `beekeeper runtime install`.
//
//	go run ./internal/debpkg [-bin bin/beekeeper] [-out dist] [-version 0.1.0]
//
// writes dist/beekeeper_<version>_amd64.deb and prints its path.
package main

import (
	"flag"
	"fmt"
	"os"
)

func main() {
	var o options
	flag.StringVar(&o.Binary, "bin", "bin/beekeeper", "the beekeeper binary to package (bash scripts/setup.sh builds bin/beekeeper)")
	flag.StringVar(&o.OutDir, "out", "dist", "folder to write the .deb to")
	flag.StringVar(&o.Version, "version", "", "package version (default: the binary's, wire.Version)")
	flag.StringVar(&o.Arch, "arch", "", "Debian architecture (default: this machine's)")
	flag.Parse()
	path, err := build(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "debpkg:", err)
		os.Exit(1)
	}
	fmt.Println(path)
}
