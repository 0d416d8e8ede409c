//! The compiled site (hydration WASM and JS, CSS, favicon), embedded in release builds so that the binary works
//! from any directory. Debug builds read the same folder from disk.

use axum::body::Body;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(rust_embed::RustEmbed)]
#[folder = "$CMDOP_SITE_DIR"]
struct Site;

/// The asset at `path` (without the leading `/`), or `None`.
pub fn asset(path: &str, headers: &HeaderMap) -> Option<Response> {
    let file = Site::get(path)?;
    let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()[..16]));
    // File names carry no hash, so browsers must revalidate; the ETag makes that a cheap 304.
    let cache = HeaderValue::from_static("no-cache");
    if headers.get(IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        return Some(
            (StatusCode::NOT_MODIFIED, [(ETAG, HeaderValue::from_str(&etag).unwrap()), (CACHE_CONTROL, cache)])
                .into_response(),
        );
    }
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    Some(
        Response::builder()
            .header(CONTENT_TYPE, mime.as_ref())
            .header(ETAG, etag)
            .header(CACHE_CONTROL, cache)
            .body(Body::from(file.data.into_owned()))
            .expect("valid response"),
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
