//! `/sessions`: active and ended sessions apart, filtered by fleet, machine, user and time range. The filters are
//! the query string (shareable, reloadable, the same as `GET /api/v1/sessions`); the page follows the server's
//! change stream and reloads its data when a visible session starts, ends or changes clients.
//! The filter form's fields and the tables are markup strings (`markup`): typed views of them cost the WASM ~20 KB.

use leptos::either::Either;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_location;

use crate::api::sessions_page;

#[component]
pub fn SessionsPage() -> impl IntoView {
    let search = use_location().search;
    // Bumped when the change stream says a visible session changed: the data is read again.
    let changes = RwSignal::new(0u64);
    let data = crate::api::resource(move || (search.get(), changes.get()), |(query, _)| sessions_page(query));
    #[cfg(feature = "hydrate")]
    crate::list_live::follow(changes);

    view! {
        <Title text="Sessions" />
        <main class="page">
            <h1>"Sessions"</h1>
            <Transition fallback=|| view! { <p class="loading">"Loading sessions…"</p> }>
                {move || Suspend::new(async move {
                    match data.await {
                        Ok(page) => Either::Left(view! {
                            <Filters fields=page.filters />
                            <div class="sections" inner_html=page.sections></div>
                        }),
                        Err(e) => Either::Right(view! {
                            <p class="alert" role="alert">{super::error_text(&e)}</p>
                            <p><a href="/sessions">"Show all sessions"</a></p>
                        }),
                    }
                })}
            </Transition>
        </main>
    }
}

/// A GET form: without JavaScript it submits as is; with it, any change applies at once (see `list_live::apply`).
/// Its fields are markup (`markup::filters`): the handlers here read them from the DOM.
#[component]
fn Filters(fields: String) -> impl IntoView {
    #[cfg(feature = "hydrate")]
    let (on_change, on_submit) = {
        let navigate = leptos_router::hooks::use_navigate();
        let go = move |ev: &web_sys::Event, is_change: bool| {
            if let Some(url) = crate::list_live::apply(ev, is_change) {
                navigate(&url, Default::default());
            }
        };
        let go2 = go.clone();
        (move |ev: leptos::ev::Event| go(&ev, true), move |ev: leptos::ev::SubmitEvent| go2(&ev, false))
    };
    #[cfg(not(feature = "hydrate"))]
    let (on_change, on_submit) = (|_: leptos::ev::Event| {}, |_: leptos::ev::SubmitEvent| {});
    view! {
        <form
            class="filters"
            method="get"
            action="/sessions"
            aria-label="Filter sessions"
            on:change=on_change
            on:submit=on_submit
            inner_html=fields
        ></form>
    }
}
