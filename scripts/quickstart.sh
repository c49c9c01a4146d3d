#!/usr/bin/env bash
# Quick start: all the set-up (scripts/setup.sh), then the main job on its embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# --overwrite: a second quick start replaces the first one's runs instead of refusing their folder.
node bin/intuitor.js run --overwrite
