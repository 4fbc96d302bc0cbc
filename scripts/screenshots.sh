#!/usr/bin/env bash
# Screenshots of the desktop app's screens at 800x500 and 1400x900, into docs/screenshots/
# as SCREEN-WxH.png: workers, chat, queen (the endpoint's models), queen-workers (the
# Queen's workers), logs, settings (models-*.png are taken with the Models screen's own
# set-up and left alone here).
#
# The app runs on a virtual display (Xvfb) with its own state folder: three workers on
# the test model, the embedded Queen, a models folder with the test model and a copy of
# it (loaded and loadable on the endpoint), and one chat answered by a worker. Nothing of
# the user's is read or changed.
#
#   bash scripts/screenshots.sh               # sets up like run.sh (bin/beekeeper)
#   BEEKEEPER_BIN=/path/to/beekeeper bash scripts/screenshots.sh   # a build of your own
#   SCREENSHOTS="queen queen-workers" bash scripts/screenshots.sh  # some screens only
#
# Needs: xvfb-run, xdotool, ImageMagick's import (scripts/setup.sh installs them), and
# the test model (../shared/models/stories260K.gguf, or $BEEKEEPER_TEST_MODEL).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${BEEKEEPER_BIN:-}" ]; then
  source "$root/scripts/setup.sh"
  setup_all
  BEEKEEPER_BIN="$root/bin/beekeeper"
fi
export BEEKEEPER_BIN
model="${BEEKEEPER_TEST_MODEL:-$root/../shared/models/stories260K.gguf}"
[ -f "$model" ] || { echo "no test model at $model (set BEEKEEPER_TEST_MODEL)" >&2; exit 1; }
for tool in xvfb-run xdotool import; do
  command -v "$tool" >/dev/null || { echo "needs $tool: apt-get install xvfb xdotool imagemagick" >&2; exit 1; }
done

# Run the rest on a virtual display of its own, larger than the largest window.
if [ -z "${SCREENSHOTS_ON_XVFB:-}" ]; then
  exec env SCREENSHOTS_ON_XVFB=1 xvfb-run -a -s "-screen 0 1600x1000x24" bash "$0" "$@"
fi

out="$root/docs/screenshots"
mkdir -p "$out"
home="$(mktemp -d)"
export BEEKEEPER_HOME="$home" LANG=en_US.UTF-8
app_pid=""
cleanup() {
  [ -n "$app_pid" ] && kill "$app_pid" 2>/dev/null && wait "$app_pid" 2>/dev/null
  for id in $("$BEEKEEPER_BIN" ps 2>/dev/null | awk 'NR>1 {print $1}'); do
    "$BEEKEEPER_BIN" stop "$id" >/dev/null 2>&1 || true
  done
  rm -rf "$home"
}
trap cleanup EXIT

# The app's settings: the embedded Queen on a free port with a token, a window of 800x500.
port=""
for _ in $(seq 50); do
  p=$(shuf -i 20000-60000 -n 1)
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
done
[ -n "$port" ] || { echo "no free port" >&2; exit 1; }
queen="http://127.0.0.1:$port" token="screenshots-$RANDOM"
prefs="$home/config/fyne/io.github.beekeeper-hive.beekeeper"
mkdir -p "$prefs"
printf '{"queen_mode":"embedded","queen_embedded_addr":"127.0.0.1:%s","queen_embedded_token":"%s","window_size":"800x500"}\n' \
  "$port" "$token" >"$prefs/preferences.json"
# The models folder ($BEEKEEPER_HOME/data/models): the workers' model, and a copy no
# worker serves, which the endpoint lists as loadable.
mkdir -p "$home/data/models"
cp "$model" "$home/data/models/stories260K.gguf"
cp "$model" "$home/data/models/stories260K-copy.gguf"

echo "==> the app"
"$BEEKEEPER_BIN" gui >"$home/app.log" 2>&1 &
app_pid=$!
win=""
for _ in $(seq 100); do
  win="$(xdotool search --onlyvisible --pid "$app_pid" --name '^Beekeeper$' 2>/dev/null | head -1 || true)"
  [ -n "$win" ] && break
  sleep 0.2
done
[ -n "$win" ] || { echo "no window; the app said:" >&2; cat "$home/app.log" >&2; exit 1; }
xdotool mousemove 1590 990 # off the window: no hover effects in the pictures

echo "==> three workers on $(basename "$model"), registered at the app's Queen"
for _ in 1 2 3; do
  "$BEEKEEPER_BIN" spawn --model "$model" --ctx-size 512 --threads 1 --queen "$queen" --token "$token" >/dev/null
done
xdotool windowfocus --sync "$win"
sleep 3 # the workers adopted, and their first heartbeats

key() { xdotool key --clearmodifiers "$@"; }

# One chat answered by a worker, so the Chat screen shows a conversation.
key ctrl+2
sleep 1
xdotool type --delay 20 "Once upon a time"
key Return
sleep 4

# click X Y: a click in the window (the Queen screen's two parts are tabs of their own,
# with no shortcut), then the pointer goes back off the window.
click() {
  xdotool mousemove --window "$win" "$1" "$2" click 1
  sleep 0.3
  xdotool mousemove 1590 990
}

# Where the Queen screen's "Models" and "Workers" tabs are, by window size: the status
# line above them wraps to two lines at 800 px.
declare -A parts=([800x500]="45 274 190 274" [1400x900]="45 254 190 254")

wanted=" ${SCREENSHOTS:-workers chat queen queen-workers logs settings} "
for size in 800x500 1400x900; do
  xdotool windowsize --sync "$win" "${size%x*}" "${size#*x}"
  sleep 1
  read -r mx my wx wy <<<"${parts[$size]}"
  for shot in workers:ctrl+1 chat:ctrl+2 queen:ctrl+4 queen-workers:ctrl+4 logs:ctrl+l settings:ctrl+comma; do
    name="${shot%%:*}"
    [[ "$wanted" == *" $name "* ]] || continue
    key "${shot#*:}"
    case "$name" in
      queen) click "$mx" "$my" ;;
      queen-workers) click "$wx" "$wy" ;;
    esac
    sleep 2.5 # the screen's layout, and the Queen screen's first load figures
    import -window "$win" "$out/$name-$size.png"
    echo "    $out/$name-$size.png ($(xdotool getwindowgeometry "$win" | awk '/Geometry/ {print $2}'))"
  done
done
key ctrl+1
