#!/usr/bin/env bash
# Installs what building and testing the inspector needs and is missing: the wasm32 target, wasm-bindgen-cli at
# exactly the version Cargo.lock pins, wasm-opt (npm binaryen), and with --e2e Debian's chromium and Playwright.
# Only crates.io, npm and Debian packages are used; nothing downloads prebuilt binaries from elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi

wbg_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$wbg_version" ]; then
  echo "installing wasm-bindgen-cli $wbg_version (a few minutes, once)"
  # Without --locked on purpose: its lockfile wants a crate version the registry no longer serves.
  cargo install wasm-bindgen-cli --version "$wbg_version"
fi

if [ ! -x node_modules/.bin/wasm-opt ]; then
  npm ci --no-audit --no-fund
fi

# cargo-leptos is optional (for `cargo leptos watch` while developing); the README commands do not use it because
# installing it costs ~23 minutes on 2 cores. Pinned: 0.3.11 needs a newer rustc than this toolchain.
CARGO_LEPTOS_VERSION=0.3.10
if [ "${1:-}" = "--cargo-leptos" ]; then
  if [ "$(cargo leptos --version 2>/dev/null | awk '{print $2}')" != "$CARGO_LEPTOS_VERSION" ]; then
    cargo install --locked cargo-leptos --version "$CARGO_LEPTOS_VERSION"
  fi
fi

if [ "${1:-}" = "--e2e" ]; then
  if [ ! -x /usr/bin/chromium ]; then
    echo "installing Debian's chromium"
    if [ "$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q chromium; else sudo apt-get update -q && sudo apt-get install -y -q chromium; fi
  fi
  if [ ! -d end2end/node_modules/@playwright/test ]; then
    (cd end2end && npm ci --no-audit --no-fund)
  fi
fi
