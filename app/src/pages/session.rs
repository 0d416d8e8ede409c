//! `/sessions/{id}`: one session, its transcript as a terminal shows it, live while it runs.

use cmdop_protocol::{ChatThread, ClientInfo, Session, SessionState};
use leptos::either::{Either, EitherOf3};
use leptos::html;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use crate::api::{SessionPageData, session_page, signed_in};
use crate::components::{TopBar, exit_code, kind_label};
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
    let me = Resource::new(|| (), |_| signed_in());
    let data = Resource::new(move || params.read().get("id").unwrap_or_default(), session_page);

    view! {
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move {
                match me.await {
                    Ok(Some(me)) => Either::Left(view! { <TopBar me /> }),
                    _ => Either::Right(()),
                }
            })}
        </Suspense>
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
    let SessionPageData { session: s, chat, snapshot_html, snapshot_rows_omitted, snapshot_bytes_omitted } = data;
    let live = LiveState {
        state: RwSignal::new(s.state),
        exit_code: RwSignal::new(s.exit_code),
        duration_ms: RwSignal::new(s.duration_ms),
        total_bytes: RwSignal::new(s.transcript.total_bytes),
        clients: RwSignal::new(s.clients.iter().filter(|c| c.detached_at.is_none()).cloned().collect()),
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
    let gaps = s.transcript.gaps.len();
    let truncated = s.transcript.truncated_bytes;
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
            {(truncated > 0 || gaps > 0).then(|| view! { <p class="muted small">{transcript_note(truncated, gaps)}</p> })}
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
    let side = view! {
        <aside class="side">
            <ReattachBox id=s.id machine=s.machine.clone() />
            <ClientsBox live />
            {chat.map(|c| view! { <ChatBox chat=c /> })}
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

fn transcript_note(truncated: u64, gaps: usize) -> String {
    let mut parts = Vec::new();
    if truncated > 0 {
        parts.push(format!("the ring buffer dropped the oldest {}", format::bytes(truncated)));
    }
    if gaps > 0 {
        parts.push(format!(
            "{gaps} {} where output was lost while the recorder was offline",
            if gaps == 1 { "gap" } else { "gaps" }
        ));
    }
    let mut text = parts.join("; ");
    // Starts with "the" or a digit: ASCII (and `str::to_uppercase` would bring Unicode's case tables to the WASM).
    if let Some(first) = text.get_mut(..1) {
        first.make_ascii_uppercase();
    }
    text + " (marked in the transcript)."
}

#[component]
fn SessionHeader(s: Session, live: LiveState) -> impl IntoView {
    let state_badge = move || match live.state.get() {
        SessionState::Active => Either::Left(view! { <span class="badge badge-active">"active"</span> }),
        SessionState::Ended => Either::Right(view! { <span class="badge badge-ended">"ended"</span> }),
    };
    let exit = move || exit_code(live.state.get(), live.exit_code.get(), "running");
    view! {
        <header class="session-head">
            <h1><code class="command">{s.command.clone()}</code></h1>
            <dl class="facts">
                <div><dt>"State"</dt><dd data-testid="state">{state_badge}</dd></div>
                <div><dt>"Exit code"</dt><dd data-testid="exit-code">{exit}</dd></div>
                <div><dt>"Duration"</dt><dd data-testid="duration">{move || format::duration_ms(live.duration_ms.get())}</dd></div>
                <div><dt>"Machine"</dt><dd>{s.machine.clone()}</dd></div>
                <div><dt>"User"</dt><dd title=s.user.clone()>{s.user_name.clone()}</dd></div>
                <div><dt>"Fleet"</dt><dd>{s.fleet.clone()}</dd></div>
                <div><dt>"Started"</dt><dd>{format::timestamp(s.started_at)}</dd></div>
                <div><dt>"Output"</dt><dd>{move || format::bytes(live.total_bytes.get())}</dd></div>
            </dl>
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
fn ReattachBox(id: uuid::Uuid, machine: String) -> impl IntoView {
    let snippet = format!("cmdop connect {machine}");
    let copied = RwSignal::new(false);
    let to_copy = snippet.clone();
    let copy = move |_| {
        #[cfg(feature = "hydrate")]
        crate::live_view::copy_text(&to_copy, copied);
        #[cfg(not(feature = "hydrate"))]
        let _ = (&to_copy, copied);
    };
    view! {
        <section class="card reattach" aria-labelledby="reattach-title">
            <h2 id="reattach-title">"Work in this session"</h2>
            <a class="button" href=format!("cmdop://session/{id}")>"Open in desktop"</a>
            <div class="snippet">
                <code data-testid="connect-snippet">{snippet}</code>
                <button type="button" class="copy-button" aria-label="Copy the cmdop connect command" on:click=copy>
                    {move || if copied.get() { "Copied" } else { "Copy" }}
                </button>
            </div>
            <p class="muted small">
                <code>{format!("cmdop session attach {id}")}</code>
                " reports this session's metadata (state, exit code, clients, transcript size); it does not take over the terminal."
            </p>
        </section>
    }
}

#[component]
fn ClientsBox(live: LiveState) -> impl IntoView {
    view! {
        <section class="card clients" aria-labelledby="clients-title">
            <h2 id="clients-title">"Attached clients"</h2>
            {move || {
                let clients = live.clients.get();
                if clients.is_empty() {
                    return Either::Left(view! { <p class="muted small">"Nobody is attached."</p> });
                }
                let mine = live.this_tab.get();
                Either::Right(view! {
                    <ul class="client-list">
                        {clients
                            .into_iter()
                            .map(|c| {
                                let this_tab = Some(c.id) == mine;
                                view! {
                                    <li data-kind=c.kind.as_str()>
                                        <span class=format!("client-kind kind-{}", c.kind.as_str())>{kind_label(c.kind)}</span>
                                        <span class="client-name">{c.name.clone()}</span>
                                        {this_tab.then(|| view! { <span class="this-tab">"this tab"</span> })}
                                    </li>
                                }
                            })
                            .collect_view()}
                    </ul>
                })
            }}
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

#[component]
fn ChatBox(chat: ChatThread) -> impl IntoView {
    view! {
        <section class="card chat" aria-labelledby="chat-title">
            <h2 id="chat-title">"Chat thread: " {chat.title.clone()}</h2>
            {if chat.messages.is_empty() {
                Either::Left(view! { <p class="muted small">"No messages yet."</p> })
            } else {
                Either::Right(view! {
                    <ol class="chat-messages">
                        {chat
                            .messages
                            .into_iter()
                            .map(|m| view! {
                                <li>
                                    <div class="chat-meta">
                                        <span class="chat-author" title=m.author.clone()>{m.author_name.clone()}</span>
                                        <time class="muted small">{format::timestamp(m.created_at)}</time>
                                    </div>
                                    <p class="chat-body">{m.body.clone()}</p>
                                </li>
                            })
                            .collect_view()}
                    </ol>
                })
            }}
        </section>
    }
}
