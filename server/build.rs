//! The release binary embeds the compiled site (WASM, JS, CSS) from `CMDOP_SITE_DIR` (default: the workspace's
//! `target/site`, where `scripts/build-site.sh` puts it). The folder is created if missing so that builds without a
//! site (tests, clippy) still compile; the server then answers 404 for `/pkg/*`.
fn main() {
    let manifest = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let site = std::env::var("CMDOP_SITE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| manifest.parent().unwrap().join("target").join("site"));
    std::fs::create_dir_all(&site).expect("create site dir");
    println!("cargo:rustc-env=CMDOP_SITE_DIR={}", site.display());
    println!("cargo:rerun-if-env-changed=CMDOP_SITE_DIR");
    println!("cargo:rerun-if-changed={}", site.display());
}
