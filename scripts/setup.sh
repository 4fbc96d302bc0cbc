#!/usr/bin/env bash
# Installs what Beekeeper needs on Debian/Ubuntu, idempotently: the C libraries Fyne needs,
# Xvfb (for tests), npm (to fetch the llama.cpp runtime), a Go toolchain, then builds
# bin/beekeeper and installs the llama.cpp runtime (CPU and Vulkan builds) into the cache.
# Sourced by run.sh/test.sh.
set -euo pipefail

BEEKEEPER_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# mesa-vulkan-drivers + libvulkan1: a software Vulkan device (llvmpipe), so the Vulkan
# build's tests run without a GPU. g++ + git: `runtime install --vision` compiles llama.cpp's
# multimodal library from the release's source (the image tests need it).
APT_PACKAGES=(gcc pkg-config libgl1-mesa-dev xorg-dev libxkbcommon-dev xvfb xauth xdotool imagemagick iproute2 ca-certificates
  mesa-vulkan-drivers libvulkan1 g++ git)

# What only the tests need (install_test_packages, from test.sh): mingw-w64 cross-compiles
# the Windows app, Wine 8 runs it (internal/wintest), systemd-analyze checks the .deb's
# units (internal/debpkg). About 160 MB, installed in about 30 s.
TEST_APT_PACKAGES=(gcc-mingw-w64-x86-64-win32 wine64 systemd)

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

install_system_packages() {
  local missing=()
  for p in "${APT_PACKAGES[@]}" "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  # npm may come with another nodejs build (nodesource's nodejs conflicts with Debian's npm).
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "==> installing system packages: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# The Go toolchain: one that is new enough is used as it is (Go 1.21+ fetches the 1.26
# toolchain go.mod asks for through the module proxy by itself). An older one, such as
# Debian 12's golang-go 1.19, fetches the toolchain module once into the cache.
GO_TOOLCHAIN_VERSION=go1.26.8

ensure_go() {
  export PATH="$PATH:/usr/local/go/bin:$HOME/go/bin"
  local cached="$HOME/.cache/beekeeper/$GO_TOOLCHAIN_VERSION"
  if [ -x "$cached/bin/go" ]; then
    export PATH="$cached/bin:$PATH"
  fi
  if ! command -v go >/dev/null 2>&1; then
    echo "==> installing Go"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go >/dev/null
  fi
  local minor
  minor=$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')
  if [ "${minor:-0}" -lt 21 ]; then
    fetch_go_toolchain "$cached"
    export PATH="$cached/bin:$PATH"
  fi
  export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"
}

fetch_go_toolchain() {
  local dest=$1 arch module dir
  arch=$(dpkg --print-architecture)
  module="golang.org/toolchain@v0.0.1-$GO_TOOLCHAIN_VERSION.linux-$arch"
  echo "==> fetching $GO_TOOLCHAIN_VERSION through the Go module proxy"
  local json
  if ! json=$(cd "$(mktemp -d)" && GO111MODULE=on GOFLAGS= go mod download -json "$module"); then
    echo "could not fetch $module through the Go module proxy:" >&2
    echo "$json" | grep '"Error"' >&2 || true
    echo "install Go 1.26 by hand and run this again" >&2
    exit 1
  fi
  dir=$(echo "$json" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  rm -rf "$dest.tmp" && mkdir -p "$(dirname "$dest")" && cp -r "$dir" "$dest.tmp"
  chmod -R u+w "$dest.tmp" && chmod +x "$dest.tmp"/bin/* "$dest.tmp"/pkg/tool/*/*
  rm -rf "$dest" && mv "$dest.tmp" "$dest"
}

build_beekeeper() {
  echo "==> building bin/beekeeper"
  (cd "$BEEKEEPER_ROOT" && go build -tags "migrated_fynedo no_emoji" -o bin/beekeeper .)
}

install_runtime() {
  echo "==> llama.cpp runtime"
  # --vision: the multimodal library (libmtmd.so) for workers with --mmproj, compiled once
  # (about a minute on 2 cores) and kept in the cache.
  "$BEEKEEPER_ROOT/bin/beekeeper" runtime install --vision
  # The Vulkan build too (~27 MB): the GPU-offload tests run it on llvmpipe.
  "$BEEKEEPER_ROOT/bin/beekeeper" runtime install --backend vulkan
}

setup_all() {
  install_system_packages "$@"
  ensure_go
  build_beekeeper
  install_runtime
}
