//! The cmdop sessions inspector as a Leptos library.
//!
//! Embedders render [`App`] inside their own shell (or use [`shell`]), and mount the backend from
//! `cmdop-inspector-server`, which provides the [`ssr::InspectorContext`] the server functions read.

pub mod api;
pub mod components;
pub mod format;
mod list_live;
#[cfg(feature = "hydrate")]
mod live_view;
pub mod markup;
pub mod pages;
#[cfg(feature = "ssr")]
pub mod ssr;
#[cfg(test)]
mod testing;
pub mod transcript_view;

use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::{SsrMode, path};

/// Name of the compiled site bundle: `/pkg/cmdop-inspector.{js,css}` and `/pkg/cmdop-inspector_bg.wasm`.
pub const OUTPUT_NAME: &str = "cmdop-inspector";

/// The HTML document around [`App`], for server rendering.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <meta name="color-scheme" content="light dark" />
                <link rel="icon" type="image/svg+xml" href="/favicon.svg" />
                <HydrationScripts options />
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    mark_hydrated();
    view! {
        <Stylesheet id="inspector-css" href=format!("/pkg/{OUTPUT_NAME}.css") />
        <Title formatter=|t: String| if t.is_empty() { "cmdop inspector".to_string() } else { format!("{t} · cmdop inspector") } />
        <Router>
            <components::AccountBar />
            <Routes fallback=pages::NotFound>
                <Route path=path!("/login") view=pages::LoginPage />
                // Async: the whole page, data included, arrives as plain HTML: readable before hydration and without JS.
                <Route path=path!("/sessions") view=pages::SessionsPage ssr=SsrMode::Async />
                <Route path=path!("/sessions/:id") view=pages::SessionPage ssr=SsrMode::Async />
            </Routes>
        </Router>
    }
}

/// Sets `data-hydrated` on `<body>` once the WASM has taken over the server-rendered page: end-to-end tests
/// (and curious people) can tell a hydrated page from a static one.
fn mark_hydrated() {
    Effect::new(move |_| {
        #[cfg(feature = "hydrate")]
        if let Some(body) = web_sys::window().and_then(|w| w.document()).and_then(|d| d.body()) {
            let _ = body.set_attribute("data-hydrated", "true");
        }
    });
}
