//! `/sessions/{id}`: one session, its transcript as a terminal shows it, live while it runs.

use cmdop_protocol::{ClientInfo, SessionState};
use leptos::either::EitherOf3;
use leptos::html;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use crate::api::{SessionHead, SessionPageData, session_page};
use crate::format;
use crate::pages::NotFound;

/// What changes while the page is open; the live stream (in the browser) keeps these current.
#[derive(Clone, Copy)]
pub struct LiveState {
    pub state: RwSignal<SessionState>,
    pub exit_code: RwSignal<Option<i32>>,
    pub duration_ms: RwSignal<u64>,
    pub total_bytes: RwSignal<u64>,
    pub clients: RwSignal<Vec<ClientInfo>>,
    /// This tab's own attached client, once the live stream said which it is.
    pub this_tab: RwSignal<Option<uuid::Uuid>>,
    /// The reader is at the bottom of the transcript (new output keeps it there).
    pub following: RwSignal<bool>,
    /// Words about the live connection ("reconnecting…"), empty when all is well.
    pub link_status: RwSignal<String>,
    /// The browser replayed the whole retained transcript: what the first paint left out is now shown.
    pub whole_transcript: RwSignal<bool>,
}

#[component]
pub fn SessionPage() -> impl IntoView {
    let params = use_params_map();
    let data = crate::api::resource(move || params.read().get("id").unwrap_or_default(), session_page);

    view! {
        <Suspense fallback=|| view! { <main class="page"><p class="loading">"Loading the session…"</p></main> }>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(Some(d)) => EitherOf3::A(view! { <SessionView data=d /> }),
                    Ok(None) => EitherOf3::B(view! { <NotFound /> }),
                    Err(e) => EitherOf3::C(view! {
                        <Title text="Session" />
                        <main class="page"><p class="alert" role="alert">{super::error_text(&e)}</p></main>
                    }),
                }
            })}
        </Suspense>
    }
}

#[component]
fn SessionView(data: SessionPageData) -> impl IntoView {
    let SessionPageData {
        head: s,
        reattach_html,
        chat_html,
        transcript_note,
        snapshot_html,
        snapshot_rows_omitted,
        snapshot_bytes_omitted,
    } = data;
    let live = LiveState {
        state: RwSignal::new(s.state),
        exit_code: RwSignal::new(s.exit_code),
        duration_ms: RwSignal::new(s.duration_ms),
        total_bytes: RwSignal::new(s.total_bytes),
        clients: RwSignal::new(s.clients.clone()),
        this_tab: RwSignal::new(None),
        following: RwSignal::new(true),
        link_status: RwSignal::new(String::new()),
        whole_transcript: RwSignal::new(false),
    };
    let term = NodeRef::<html::Div>::new();
    let scroller = NodeRef::<html::Div>::new();

    #[cfg(feature = "hydrate")]
    {
        let id = s.id;
        let started = StoredValue::new(false);
        Effect::new(move |_| {
            if let (Some(el), false) = (term.get(), started.get_value()) {
                started.set_value(true);
                crate::live_view::follow(id, el, live);
            }
        });
    }

    let title = format!("{} on {}", s.command, s.machine);
    // No `into_any()` on this page (branches are `Either`s): every type-erased view brings its own async-hydration
    // copy of its whole subtree into the WASM, which `hydrate_body` never runs (~26 KB gzipped here).
    let panel = view! {
        <section class="transcript-panel" aria-label="Transcript">
            <TranscriptToolbar id=s.id live />
            {move || (!live.whole_transcript.get() && (snapshot_rows_omitted > 0 || snapshot_bytes_omitted > 0)).then(|| view! {
                <p class="muted small omitted">
                    {omitted_text(snapshot_rows_omitted, snapshot_bytes_omitted)}
                    <a href=format!("/api/v1/sessions/{}/transcript", s.id) download="">"download the transcript"</a>
                    " for all of it."
                </p>
            })}
            {transcript_note.map(|note| view! { <p class="muted small">{note}</p> })}
            <div
                class="term-scroll"
                node_ref=scroller
                tabindex="0"
                role="log"
                aria-label="Terminal output"
                on:scroll=move |_| {
                    if let Some(el) = scroller.get() {
                        // The scroller is bottom-anchored (column-reverse): 0 is the tail, negative is up.
                        live.following.set(el.scroll_top() > -24);
                    }
                }
            >
                <div class="term" node_ref=term inner_html=snapshot_html></div>
            </div>
            <FollowButton live scroller />
        </section>
    };
    // The boxes that do not change are markup (see `markup`); the copy button says in `data-copy` what it copies.
    let side = view! {
        <aside class="side" on:click=copy_on_click>
            <div class="contents" inner_html=reattach_html></div>
            <ClientsBox live />
            {chat_html.map(|html| view! { <div class="contents" inner_html=html></div> })}
        </aside>
    };
    view! {
        <Title text=title />
        <main class="page session-page">
            <nav class="crumbs" aria-label="Breadcrumb">
                <a href="/sessions">"Sessions"</a>
                <span aria-hidden="true">" / "</span>
                <span>{s.machine.clone()}</span>
            </nav>
            <SessionHeader s=s.clone() live />
            <p class="notice" role="note">
                "This page is view only: nothing typed here reaches the session. To work in it, use "
                <code>{format!("cmdop connect {}", s.machine)}</code>" or the desktop app."
            </p>
            <div class="session-body">{panel} {side}</div>
        </main>
    }
}

/// A click on a copy button of the side boxes copies its `data-copy` text.
fn copy_on_click(ev: leptos::ev::MouseEvent) {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::JsCast;
        let button = ev.target().and_then(|t| t.dyn_into::<web_sys::Element>().ok());
        let button = button.and_then(|el| el.closest("button[data-copy]").ok().flatten());
        if let Some(button) = button {
            crate::live_view::copy_text(button);
        }
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = ev;
}

#[component]
fn SessionHeader(s: SessionHead, live: LiveState) -> impl IntoView {
    let command = s.command.clone();
    // Markup (`markup::facts`), drawn again when a live fact changes: one string, not eight typed views.
    let facts = move || {
        crate::markup::facts(&s, live.state.get(), live.exit_code.get(), live.duration_ms.get(), live.total_bytes.get())
    };
    view! {
        <header class="session-head">
            <h1><code class="command">{command}</code></h1>
            <dl class="facts" inner_html=facts></dl>
        </header>
    }
}

#[component]
fn TranscriptToolbar(id: uuid::Uuid, live: LiveState) -> impl IntoView {
    let query = RwSignal::new(String::new());
    let found = RwSignal::new(None::<(usize, usize)>);
    let step = move |forward: bool| {
        #[cfg(feature = "hydrate")]
        {
            let query = query.get_untracked();
            leptos::task::spawn_local(async move { found.set(crate::live_view::find(&query, forward).await) });
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = (forward, found);
    };
    let count = move || match (query.get().is_empty(), found.get()) {
        (true, _) => String::new(),
        (false, None) => String::new(),
        (false, Some((_, 0))) => "no matches".to_string(),
        (false, Some((i, n))) => format!("{} of {n}", i + 1),
    };
    view! {
        <div class="term-toolbar">
            <form
                class="find"
                role="search"
                on:submit=move |ev| {
                    ev.prevent_default();
                    step(true);
                }
            >
                <input
                    type="search"
                    name="find"
                    placeholder="Find in transcript"
                    aria-label="Find in transcript"
                    autocomplete="off"
                    prop:value=move || query.get()
                    on:input=move |ev| {
                        query.set(event_target_value(&ev));
                        found.set(None);
                    }
                    on:keydown=move |ev| {
                        if ev.key() == "Enter" && ev.shift_key() {
                            ev.prevent_default();
                            step(false);
                        }
                    }
                />
                <button type="button" class="icon-button" aria-label="Previous match" on:click=move |_| step(false)>"↑"</button>
                <button type="submit" class="icon-button" aria-label="Next match">"↓"</button>
                <span class="find-count muted small" aria-live="polite">{count}</span>
            </form>
            <span class="link-status muted small" aria-live="polite">{move || live.link_status.get()}</span>
            <a class="muted small" href=format!("/api/v1/sessions/{id}/transcript") download="">"Download raw"</a>
        </div>
    }
}

#[component]
fn FollowButton(live: LiveState, scroller: NodeRef<html::Div>) -> impl IntoView {
    let hidden = move || live.following.get();
    view! {
        <button
            type="button"
            class="follow-button"
            class:hidden=hidden
            on:click=move |_| {
                if let Some(el) = scroller.get() {
                    el.set_scroll_top(0);
                }
                live.following.set(true);
            }
        >
            {move || if live.state.get() == SessionState::Active { "↓ Follow live output" } else { "↓ Jump to the end" }}
        </button>
    }
}

#[component]
fn ClientsBox(live: LiveState) -> impl IntoView {
    view! {
        <section class="card clients" aria-labelledby="clients-title">
            <h2 id="clients-title">"Attached clients"</h2>
            <div class="contents" inner_html=move || crate::markup::client_list(&live.clients.get(), live.this_tab.get())></div>
        </section>
    }
}

/// What the first paint leaves out (the live view then draws it all).
fn omitted_text(rows: u64, bytes: u64) -> String {
    match (rows, bytes) {
        (_, 0) => format!("{rows} earlier rows are not shown here; "),
        _ => format!("The first {} of output are not shown here; ", format::bytes(bytes)),
    }
}
