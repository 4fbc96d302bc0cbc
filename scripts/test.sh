#!/usr/bin/env bash
# Sets everything up (see setup.sh) and runs the whole test suite with -race, under Xvfb
# so that the real-window test has a display. Extra arguments go to `go test`.
set -euo pipefail
source "$(dirname "$0")/setup.sh"
setup_all
cd "$BEEKEEPER_ROOT"
export BEEKEEPER_BIN="$BEEKEEPER_ROOT/bin/beekeeper"
echo "==> go vet"
go vet -tags migrated_fynedo ./...
echo "==> go test -race"
xvfb-run -a -s "-screen 0 1280x800x24" \
  go test -race -tags migrated_fynedo -timeout 25m -count=1 "${@:-./...}"
