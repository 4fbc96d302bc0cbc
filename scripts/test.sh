#!/usr/bin/env bash
# Sets everything up (see setup.sh) and runs the whole test suite with -race, under Xvfb
# so that the real-window test has a display. Extra arguments go to `go test`.
set -euo pipefail
source "$(dirname "$0")/setup.sh"
setup_all
cd "$BEEKEEPER_ROOT"
export BEEKEEPER_BIN="$BEEKEEPER_ROOT/bin/beekeeper"
echo "==> gofmt, go vet, staticcheck"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt would change: $unformatted" >&2; exit 1; fi
go vet -tags migrated_fynedo ./...
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 -tags migrated_fynedo ./...
echo "==> go test -race"
# One package at a time (-p 1): the integration tests start real workers, Queens and a
# real window on free ports, and two packages at once on this 2-core machine would race
# each other for ports and CPU rather than test anything.
xvfb-run -a -s "-screen 0 1280x800x24" \
  go test -race -tags migrated_fynedo -p 1 -timeout 25m -count=1 "${@:-./...}"
