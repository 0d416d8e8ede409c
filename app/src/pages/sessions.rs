use cmdop_protocol::{Session, SessionState};
use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::{list_sessions, signed_in};
use crate::components::{TopBar, exit_code};
use crate::format;

/// The sessions the member can see, newest first.
#[component]
pub fn SessionsPage() -> impl IntoView {
    let me = Resource::new(|| (), |_| signed_in());
    let sessions = Resource::new(|| (), |_| list_sessions(None));

    view! {
        <Title text="Sessions" />
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match me.await {
                    Ok(Some(me)) => view! { <TopBar me /> }.into_any(),
                    Ok(None) => view! { <SignedOut /> }.into_any(),
                    Err(e) => view! { <p class="alert" role="alert">{e.to_string()}</p> }.into_any(),
                }
            })}
        </Suspense>
        <main class="page">
            <h1>"Sessions"</h1>
            <Suspense fallback=|| view! { <p class="loading">"Loading sessions…"</p> }>
                {move || Suspend::new(async move {
                    match sessions.await {
                        Ok(list) => view! { <SessionTable sessions=list.sessions /> }.into_any(),
                        Err(e) => view! { <p class="alert" role="alert">{super::error_text(&e)}</p> }.into_any(),
                    }
                })}
            </Suspense>
        </main>
    }
}

#[component]
fn SignedOut() -> impl IntoView {
    view! {
        <header class="top-bar">
            <span class="brand">"cmdop inspector"</span>
            <a href="/login">"Sign in"</a>
        </header>
    }
}

#[component]
fn SessionTable(sessions: Vec<Session>) -> impl IntoView {
    if sessions.is_empty() {
        return view! {
            <div class="empty">
                <p>"No sessions to show."</p>
                <p class="muted">
                    "Sessions appear here when someone records one with "<code>"cmdop record"</code>
                    " on a machine you have access to."
                </p>
            </div>
        }
        .into_any();
    }
    view! {
        <div class="table-wrap">
            <table class="sessions">
                <thead>
                    <tr>
                        <th scope="col">"Machine"</th>
                        <th scope="col">"User"</th>
                        <th scope="col">"Command"</th>
                        <th scope="col">"State"</th>
                        <th scope="col">"Started"</th>
                        <th scope="col" class="num">"Duration"</th>
                        <th scope="col" class="num">"Exit"</th>
                        <th scope="col" class="num">"Output"</th>
                    </tr>
                </thead>
                <tbody>
                    {sessions.into_iter().map(|s| view! { <SessionRow s /> }).collect_view()}
                </tbody>
            </table>
        </div>
    }
    .into_any()
}

#[component]
fn SessionRow(s: Session) -> impl IntoView {
    let (state_class, state_text) = match s.state {
        SessionState::Active => ("badge badge-active", "active"),
        SessionState::Ended => ("badge badge-ended", "ended"),
    };
    let exit = exit_code(s.state, s.exit_code, "—");
    view! {
        <tr data-session-id=s.id.to_string()>
            <td class="machine">{s.machine.clone()}</td>
            <td title=s.user.clone()>{s.user_name.clone()}</td>
            <td class="command"><a href=format!("/sessions/{}", s.id)><code>{s.command.clone()}</code></a></td>
            <td><span class=state_class>{state_text}</span></td>
            <td class="started">{format::timestamp(s.started_at)}</td>
            <td class="num">{format::duration_ms(s.duration_ms)}</td>
            <td class="num">{exit}</td>
            <td class="num">{format::bytes(s.transcript.total_bytes)}</td>
        </tr>
    }
}
