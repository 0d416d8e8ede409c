#!/usr/bin/env bash
# Builds the browser half of the inspector into target/site (which the server embeds): the hydration WASM and its
# JS glue (wasm-bindgen), optimized by wasm-opt from npm's binaryen, plus CSS and static files.
# Needs the tools scripts/tools.sh installs. No cargo-leptos: see README ("Why no cargo-leptos").
set -euo pipefail
cd "$(dirname "$0")/.."
name=cmdop-inspector
target_dir="${CARGO_TARGET_DIR:-target}"
# The server embeds the site from CMDOP_SITE_DIR (default target/site; see server/build.rs): build where it looks.
site="${CMDOP_SITE_DIR:-target/site}"
profile=wasm-release

# Panic locations name their source files, and a crate from the registry is named by its whole path
# (~/.cargo/registry/src/index.crates.io-<hash>/tachys-0.2.19/src/...): shortened to the crate's own part
# ("tachys-0.2.19/src/..."), for ~2 KB gzipped. Only this build: clippy's and the tests' flags stay as they are.
remap=""
for registry in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/; do
  remap="$remap --remap-path-prefix=$registry="
done
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="${CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS:-}$remap" \
  cargo build -p cmdop-inspector-frontend --lib --target wasm32-unknown-unknown --profile "$profile"
mkdir -p "$site/pkg"
wasm-bindgen --target web --no-typescript --out-dir "$site/pkg" --out-name "$name" \
  "$target_dir/wasm32-unknown-unknown/$profile/cmdop_inspector_frontend.wasm"
# --low-memory-unused: nothing lives in the first KiB of linear memory (address 0 is null; Rust's 1 MiB stack sits
# below the data and overflows before it gets there), so constant offsets fold into loads and stores (1.4 KB gzipped).
# --converge: repeat the passes while they still shrink the module (~1 KB gzipped).
node_modules/.bin/wasm-opt -Oz --converge --low-memory-unused --enable-bulk-memory --enable-nontrapping-float-to-int \
  "$site/pkg/${name}_bg.wasm" -o "$site/pkg/${name}_bg.wasm"
cp style/main.css "$site/pkg/$name.css"
cp -r public/. "$site/"
echo "site built in $site: $(du -sh "$site" | cut -f1), wasm $(gzip -c "$site/pkg/${name}_bg.wasm" | wc -c) bytes gzipped"
