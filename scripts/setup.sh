#!/usr/bin/env bash
# Set-up for a fresh Debian 12 machine with Node 20 (run as root, or with sudo available):
#   1. the build tools the native addon needs (cmake, g++), and Debian's redis-server (the scoring
#      fleet's queue; its tests start their own instances), if missing;
#   2. npm dependencies (`npm ci`), which builds the native addon with cmake-js, offline;
#   3. the TypeScript build (dist/);
#   4. where Dawn finds no WebGPU adapter, Mesa's software Vulkan driver (lavapipe) from
#      bookworm-backports: Debian 12's own Mesa 22.3 is rejected by Dawn.
# Idempotent: each step is skipped when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v g++ >/dev/null || missing+=(g++)
command -v make >/dev/null || missing+=(make)
command -v redis-server >/dev/null || missing+=(redis-server)
if [ "${#missing[@]}" -gt 0 ]; then echo "setup: installing ${missing[*]}"; apt_install "${missing[@]}"; fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund
fi
# npm may skip install scripts it has not been told to allow: check the addon really exists, and
# rebuild it when a native source is newer (a pull that changed native/).
addon=build/Release/intuitor_native.node
if [ ! -f "$addon" ] || [ -n "$(find native CMakeLists.txt -newer "$addon" -print -quit)" ]; then
  echo "setup: building the native addon"
  npx cmake-js compile --out build
fi

echo "setup: npm run build"
npm run --silent build

if ! node bin/intuitor.js info --json 2>/dev/null | node -e 'process.exit(JSON.parse(require("fs").readFileSync(0, "utf8")).webgpu.available ? 0 : 1)'; then
  echo "setup: Dawn finds no WebGPU adapter; installing Mesa lavapipe from bookworm-backports"
  if [ ! -f /etc/apt/sources.list.d/intuitor-backports.sources ]; then
    uri=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)
    printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "${uri:-http://deb.debian.org/debian}" | as_root tee /etc/apt/sources.list.d/intuitor-backports.sources >/dev/null
    apt_updated=0
  fi
  if [ "$apt_updated" -eq 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers libvulkan1 >/dev/null
  node bin/intuitor.js info --json | node -e 'const r = JSON.parse(require("fs").readFileSync(0, "utf8")); if (!r.webgpu.available) { console.error("setup: still no adapter: " + r.webgpu.reason); process.exit(1); }'
fi
echo "setup: done"
