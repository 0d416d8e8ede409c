#!/usr/bin/env bash
# README command 1: install what is missing, build the release binary (site embedded), and serve a demo on SQLite.
# Extra arguments go to `cmdop-inspector serve` (e.g. --listen 0.0.0.0:3000).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/tools.sh
scripts/build-site.sh
cargo build --release -p cmdop-inspector-server --bin cmdop-inspector
exec "${CARGO_TARGET_DIR:-target}/release/cmdop-inspector" serve --demo "$@"
