use leptos::prelude::*;
use leptos_meta::Title;

/// Unknown pages, and pages of things the viewer may not see (the two look the same on purpose).
#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(res) = use_context::<leptos_axum::ResponseOptions>() {
        res.set_status(http::StatusCode::NOT_FOUND);
    }
    view! {
        <Title text="Not found" />
        <main class="empty-page">
            <h1>"Not found"</h1>
            <p class="muted">"There is nothing here, or nothing you have access to."</p>
            <a href="/sessions">"Back to sessions"</a>
        </main>
    }
}
