#!/usr/bin/env bash
# Sets everything up (see setup.sh) and starts the Beekeeper desktop app.
set -euo pipefail
source "$(dirname "$0")/setup.sh"
setup_all
exec "$BEEKEEPER_ROOT/bin/beekeeper" "$@"
