#!/usr/bin/env bash
# Quick start: all the set-up (scripts/setup.sh), then the main job on its embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
node bin/intuitor.js run
