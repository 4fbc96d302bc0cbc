#!/usr/bin/env bash
# Sets everything up (see setup.sh) and runs the whole test suite with -race, under Xvfb
# so that the real-window test has a display. Extra arguments go to `go test`.
set -euo pipefail
source "$(dirname "$0")/setup.sh"
setup_all "${TEST_APT_PACKAGES[@]}"
cd "$BEEKEEPER_ROOT"
export BEEKEEPER_BIN="$BEEKEEPER_ROOT/bin/beekeeper"
echo "==> gofmt, go vet, staticcheck"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt would change: $unformatted" >&2; exit 1; fi
go vet -tags migrated_fynedo ./...
GOOS=windows go vet -tags migrated_fynedo ./spawner ./localregistry ./llamaruntime ./internal/dirs
CGO_ENABLED=0 GOOS=darwin go vet -tags headless . ./cli
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 -tags migrated_fynedo ./...

# The other platforms (docs/platforms.md): linux/amd64 is bin/beekeeper (setup.sh built
# it); the whole app for Windows with mingw-w64 (internal/wintest runs it under Wine); the
# headless commands for both Macs, which must need neither Fyne nor cgo.
echo "==> cross builds"
start=$SECONDS
if go list -deps -tags headless . | grep -q '^fyne.io/'; then
  echo "the headless build imports Fyne:" >&2
  go list -deps -tags headless . | grep '^fyne.io/' >&2
  exit 1
fi
CGO_ENABLED=1 CC=x86_64-w64-mingw32-gcc GOOS=windows GOARCH=amd64 \
  go build -tags "migrated_fynedo no_emoji" -o dist/windows-amd64/beekeeper.exe .
for arch in arm64 amd64; do
  CGO_ENABLED=0 GOOS=darwin GOARCH=$arch go build -tags headless -o "dist/darwin-$arch/beekeeper" .
done
# The same headless build for this machine must refuse to open a window, and say why.
CGO_ENABLED=0 go build -tags headless -o dist/linux-amd64-headless/beekeeper .
if msg=$(dist/linux-amd64-headless/beekeeper 2>&1) || [[ "$msg" != *"no desktop app"* ]]; then
  echo "the headless build without a subcommand: $msg" >&2
  exit 1
fi
for f in bin/beekeeper dist/windows-amd64/beekeeper.exe dist/darwin-arm64/beekeeper dist/darwin-amd64/beekeeper; do
  echo "    $f ($(du -h "$f" | cut -f1))"
done
echo "    built in $((SECONDS - start)) s"
export BEEKEEPER_WIN_BIN="$BEEKEEPER_ROOT/dist/windows-amd64/beekeeper.exe"

# internal/debpkg installs the .deb with dpkg -i (and removes it after) when this runs as
# root on a machine without a beekeeper package of its own, as CI does; otherwise it
# unpacks it with dpkg-deb -x. See docs/platforms.md.
if [ "$(id -u)" = 0 ] && ! dpkg-query -W -f='${Status}' beekeeper 2>/dev/null | grep -q "install ok installed"; then
  export BEEKEEPER_DEB_INSTALL=1
fi
echo "==> go test -race"
# One package at a time (-p 1): the integration tests start real workers, Queens and a
# real window on free ports, and two packages at once on this 2-core machine would race
# each other for ports and CPU rather than test anything. -noreset: the X server does
# not reset when one test's app closes its last connection and the next one connects.
xvfb-run -a -s "-screen 0 1280x800x24 -noreset" \
  go test -race -tags migrated_fynedo -p 1 -timeout 25m -count=1 "${@:-./...}"
