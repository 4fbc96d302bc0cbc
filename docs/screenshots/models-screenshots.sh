#!/bin/bash
# Screenshots of the Models screen in the real app under Xvfb, at 1400x900 and 800x500:
#   models-*.png         models (one damaged), a finished download and a failed one (404)
#   models-empty-*.png   the empty state
#   models-800x500-tooltip.png   a cut model name's tooltip
# Run from the repository root: bash docs/screenshots/models-screenshots.sh [OUTDIR]
# Needs Xvfb, xdotool, imagemagick (import) and python3 (a loopback file server).
# Nothing leaves this machine: the "server" is python3 -m http.server on 127.0.0.1.
set -euo pipefail
OUT=$(realpath "${1:-docs/screenshots}")
WORK=$(mktemp -d)
DISP=${DISPLAY_NUM:-91}
PORT=${PORT:-18931}
trap 'rm -rf "$WORK"' EXIT

go build -tags "migrated_fynedo no_emoji" -o "$WORK/beekeeper" .
synth() { go run ./internal/synthmodel/cmd/synthmodel -preset tiny "$@" >/dev/null; }
mkdir -p "$WORK/home/data/models" "$WORK/empty" "$WORK/srv/org/repo/resolve/main"
models=$WORK/home/data/models
cp ../shared/models/stories260K.gguf "$models/"
synth -out "$models/synthetic-tiny-llama-4-layers-for-tests.gguf"
synth -layers 2 -ctx 4096 -out "$models/tiny-2-layers.gguf"
head -c 592688 ../shared/models/stories260K.gguf >"$models/half-copied.gguf" # a damaged file
synth -layers 3 -out "$WORK/srv/org/repo/resolve/main/tiny-3-layers.gguf"

Xvfb ":$DISP" -screen 0 1400x900x24 >/dev/null 2>&1 &
XPID=$!
python3 -m http.server "$PORT" --bind 127.0.0.1 --directory "$WORK/srv" >/dev/null 2>&1 &
HPID=$!
trap 'kill $HPID $XPID 2>/dev/null; rm -rf "$WORK"' EXIT
sleep 1
export DISPLAY=":$DISP"

# shoot HOME PREFIX [URL...]: open the Models screen, start each URL, screenshot both sizes.
shoot() {
	local home=$1 prefix=$2
	shift 2
	BEEKEEPER_HOME=$home "$WORK/beekeeper" >"$WORK/app.log" 2>&1 &
	local app=$! wid=""
	for _ in $(seq 1 50); do
		wid=$(xdotool search --pid $app 2>/dev/null | tail -1) && [ -n "$wid" ] && break
		sleep 0.2
	done
	sleep 1.5
	xdotool windowsize "$wid" 1400 900
	sleep 0.5
	xdotool windowfocus "$wid"
	xdotool key --window "$wid" ctrl+3 # the Models screen
	sleep 1.5
	for url in "$@"; do
		xdotool mousemove --window "$wid" 300 127 click 1 # the URL box
		xdotool key ctrl+a
		xdotool type --delay 3 "$url"
		xdotool key Return
		sleep 2
	done
	xdotool mousemove --window "$wid" 1390 890
	sleep 0.3
	import -window "$wid" "$OUT/$prefix-1400x900.png"
	xdotool windowsize "$wid" 800 500
	sleep 1.5
	import -window "$wid" "$OUT/$prefix-800x500.png"
	if [ -n "${HOVER:-}" ]; then
		xdotool mousemove --window "$wid" $HOVER
		sleep 1.2
		import -window "$wid" "$OUT/$prefix-800x500-tooltip.png"
	fi
	kill $app
	wait $app || true
}

base="http://127.0.0.1:$PORT/org/repo/resolve/main"
shoot "$WORK/empty" models-empty
HOVER= shoot "$WORK/home" models "$base/tiny-3-layers.gguf" "$base/modle-Q4_K_M.gguf"
rm "$models/tiny-3-layers.gguf"
HOVER="80 293" shoot "$WORK/home" models-hover
mv "$OUT/models-hover-800x500-tooltip.png" "$OUT/models-800x500-tooltip.png"
rm -f "$OUT"/models-hover-*.png
echo "screenshots in $OUT"
