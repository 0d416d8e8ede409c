#!/usr/bin/env bash
# README command 2: every test. Unit tests, the store conformance suite on SQLite and PostgreSQL, the HTTP API
# tests on both, and the end-to-end tests in headless Chromium against a demo server.
# PostgreSQL: CMDOP_TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/postgres); each test makes and
# drops its own database.
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-target}"

scripts/tools.sh --e2e
scripts/build-site.sh

echo "== end-to-end (headless Chromium)"
cargo build -p cmdop-inspector-server --bin cmdop-inspector -p cmdop-agent --bin cmdop
(cd end2end && CMDOP_INSPECTOR_BIN="$(cd .. && realpath "$target_dir")/debug/cmdop-inspector" npx playwright test)

echo "== unit, store conformance (SQLite + PostgreSQL), HTTP API"
cargo test

echo "== browser-side unit tests (the hydrate feature, natively)"
cargo test -p cmdop-inspector --features hydrate --lib
