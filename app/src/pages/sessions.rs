//! `/sessions`: active and ended sessions apart, filtered by fleet, machine, user and time range. The filters are
//! the query string (shareable, reloadable, the same as `GET /api/v1/sessions`); the page follows the server's
//! change stream and reloads its data when a visible session starts, ends or changes clients.
//! Branches are `Either`s, not `into_any()`: each type-erased view carries its own hydration code in the WASM.

use cmdop_protocol::{Session, SessionFilter, SessionState, TimeRange};
use leptos::either::{Either, EitherOf3};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_location;

use crate::api::{ACTIVE_ROWS, FilterChoice, SessionsPageData, sessions_page, signed_in};
use crate::components::{ClientIcons, TopBar, exit_code};
use crate::format;

#[component]
pub fn SessionsPage() -> impl IntoView {
    let me = Resource::new(|| (), |_| signed_in());
    let search = use_location().search;
    // Bumped when the change stream says a visible session changed: the data is read again.
    let changes = RwSignal::new(0u64);
    let data = Resource::new(move || (search.get(), changes.get()), |(query, _)| sessions_page(query));
    // Wall clock of the browser (0 while rendering on the server): active rows' durations tick with it.
    let clock = RwSignal::new(0.0f64);
    #[cfg(feature = "hydrate")]
    crate::list_live::follow(changes, clock);

    view! {
        <Title text="Sessions" />
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match me.await {
                    Ok(Some(me)) => EitherOf3::A(view! { <TopBar me /> }),
                    Ok(None) => EitherOf3::B(view! { <SignedOut /> }),
                    Err(e) => EitherOf3::C(view! { <p class="alert" role="alert">{e.to_string()}</p> }),
                }
            })}
        </Suspense>
        <main class="page">
            <h1>"Sessions"</h1>
            <Transition fallback=|| view! { <p class="loading">"Loading sessions…"</p> }>
                {move || Suspend::new(async move {
                    match data.await {
                        Ok(d) => Either::Left(view! { <Filters d=d.clone() /> <Sections d clock /> }),
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

#[component]
fn SignedOut() -> impl IntoView {
    view! {
        <header class="top-bar">
            <span class="brand">"cmdop inspector"</span>
            <a href="/login">"Sign in"</a>
        </header>
    }
}

/// `datetime-local` value (UTC) of a time.
fn local_input(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    // The RFC 3339 form cut to the minute (no chrono format string: it costs the bundle ~10 KB).
    t.map(|t| cmdop_protocol::filter::format_time(t)[..16].to_string()).unwrap_or_default()
}

/// A GET form: without JavaScript it submits as is; with it, any change applies at once (see `list_live::apply`).
#[component]
fn Filters(d: SessionsPageData) -> impl IntoView {
    let f = d.filter.clone();
    let total = d.active_count + d.ended_count;
    let range = f.range.map(TimeRange::as_str).unwrap_or("");
    let state = f.state.map(SessionState::as_str).unwrap_or("");
    let fleet_field = if d.fleets.len() > 1 {
        let current = f.fleet.clone().unwrap_or_default();
        Either::Left(view! {
            <label class="field">
                <span>"Fleet"</span>
                <select id="f-fleet" name="fleet">
                    {d.fleets
                        .iter()
                        .map(|name| view! { <option value=name.clone() selected=*name == current>{name.clone()}</option> })
                        .collect_view()}
                </select>
            </label>
        })
    } else {
        Either::Right(
            view! { <input type="hidden" id="f-fleet" name="fleet" value=f.fleet.clone().unwrap_or_default() /> },
        )
    };
    let choices = |all: &'static str, list: &[FilterChoice], current: &Option<String>| {
        let current = current.clone().unwrap_or_default();
        let any_total: u64 = list.iter().map(|c| c.sessions).sum();
        view! {
            <option value="" selected=current.is_empty()>{format!("{all} ({any_total})")}</option>
            {list
                .iter()
                .map(|c| {
                    view! {
                        <option value=c.value.clone() selected=c.value == current>
                            {format!("{} ({})", c.label, c.sessions)}
                        </option>
                    }
                })
                .collect_view()}
        }
    };
    let clear = SessionFilter { fleet: f.fleet.clone(), ..Default::default() };
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
        <form class="filters" method="get" action="/sessions" aria-label="Filter sessions" on:change=on_change on:submit=on_submit>
            {fleet_field}
            <label class="field">
                <span>"Machine"</span>
                <select id="f-machine" name="machine">{choices("All machines", &d.machines, &f.machine)}</select>
            </label>
            <label class="field">
                <span>"User"</span>
                <select id="f-user" name="user">{choices("Everyone", &d.users, &f.user)}</select>
            </label>
            <label class="field">
                <span>"State"</span>
                <select id="f-state" name="state">
                    <option value="" selected=state.is_empty()>"Active and ended"</option>
                    <option value="active" selected=state == "active">"Active"</option>
                    <option value="ended" selected=state == "ended">"Ended"</option>
                </select>
            </label>
            <label class="field">
                <span>"Started"</span>
                <select id="f-range" name="range">
                    <option value="" selected=range.is_empty()>"Any time"</option>
                    {TimeRange::ALL
                        .into_iter()
                        .map(|r| view! { <option value=r.as_str() selected=r.as_str() == range>{r.label()}</option> })
                        .collect_view()}
                </select>
            </label>
            <label class="field">
                <span>"From (UTC)"</span>
                <input id="f-since" name="since" type="datetime-local" value=local_input(f.since) />
            </label>
            <label class="field">
                <span>"To (UTC)"</span>
                <input id="f-until" name="until" type="datetime-local" value=local_input(f.until) />
            </label>
            <div class="filter-actions">
                <button type="submit">"Apply"</button>
                <a href=super::sessions_href(&clear.to_query())>"Clear filters"</a>
            </div>
            <p class="filter-summary muted" aria-live="polite" data-testid="match-count">
                {format!("{total} matching {}", if total == 1 { "session" } else { "sessions" })}
            </p>
        </form>
    }
}

#[component]
fn Sections(d: SessionsPageData, clock: RwSignal<f64>) -> impl IntoView {
    let f = d.filter.clone();
    let show = |state: SessionState| f.state.is_none_or(|s| s == state);
    let filtered = f.machine.is_some() || f.user.is_some() || f.range.is_some();
    let active = show(SessionState::Active).then(|| {
        let more = d.active_count.saturating_sub(d.active.len() as u64);
        let paged = f.cursor.is_some();
        view! {
            <section class="list-section" aria-labelledby="active-title" data-testid="active-sessions">
                <h2 id="active-title">"Active " <span class="count">{d.active_count}</span></h2>
                {if paged {
                    EitherOf3::A(view! { <p class="muted small">"Active sessions are on the first page."</p> })
                } else if d.active.is_empty() {
                    let text = if filtered { "No active session matches these filters." } else { "Nothing is running right now." };
                    EitherOf3::B(view! { <p class="empty-row muted">{text}</p> })
                } else {
                    EitherOf3::C(view! { <SessionTable sessions=d.active.clone() clock /> })
                }}
                {(more > 0 && !paged).then(|| view! {
                    <p class="muted small">{format!("Showing the newest {ACTIVE_ROWS}; {more} more are running. Narrow the filters to see them.")}</p>
                })}
            </section>
        }
    });
    let ended = show(SessionState::Ended).then(|| {
        let older = d.next_cursor.clone().map(|c| SessionFilter { cursor: Some(c), ..f.clone() }.to_query());
        let newest = f.cursor.is_some().then(|| SessionFilter { cursor: None, ..f.clone() }.to_query());
        view! {
            <section class="list-section" aria-labelledby="ended-title" data-testid="ended-sessions">
                <h2 id="ended-title">"Ended " <span class="count">{d.ended_count}</span></h2>
                {if d.ended.is_empty() {
                    let text = if filtered {
                        "No ended session matches these filters."
                    } else {
                        "No session has ended yet. Sessions appear here when someone records one with cmdop record on a machine you have access to."
                    };
                    Either::Left(view! { <p class="empty-row muted">{text}</p> })
                } else {
                    Either::Right(view! { <SessionTable sessions=d.ended.clone() clock /> })
                }}
                <nav class="pager" aria-label="Ended sessions pages">
                    {newest.map(|q| view! { <a href=super::sessions_href(&q)>"← Newest"</a> })}
                    {older.map(|q| view! { <a href=super::sessions_href(&q)>"Older sessions →"</a> })}
                </nav>
            </section>
        }
    });
    view! { {active} {ended} }
}

#[component]
fn SessionTable(sessions: Vec<Session>, clock: RwSignal<f64>) -> impl IntoView {
    view! {
        <div class="table-wrap">
            <table class="sessions">
                <thead>
                    <tr>
                        <th scope="col">"Machine"</th>
                        <th scope="col">"User"</th>
                        <th scope="col">"Command"</th>
                        <th scope="col">"Started"</th>
                        <th scope="col" class="num">"Duration"</th>
                        <th scope="col" class="num">"Exit"</th>
                        <th scope="col">"Clients"</th>
                        <th scope="col" class="num">"Output"</th>
                    </tr>
                </thead>
                <tbody>
                    {sessions.into_iter().map(|s| view! { <SessionRow s clock /> }).collect_view()}
                </tbody>
            </table>
        </div>
    }
}

#[component]
fn SessionRow(s: Session, clock: RwSignal<f64>) -> impl IntoView {
    let exit = exit_code(s.state, s.exit_code, "—");
    let active = s.state == SessionState::Active;
    let base = s.duration_ms;
    // When this row was drawn, by the same clock (0 on the server: no ticking there).
    let drawn_at = crate::list_live::now_ms();
    let duration = move || {
        let now = clock.get();
        let extra = if active && now > 0.0 && drawn_at > 0.0 { (now - drawn_at).max(0.0) as u64 } else { 0 };
        format::duration_ms(base + extra)
    };
    let t = &s.transcript;
    let lost: u64 = t.gaps.iter().map(|g| g.bytes_lost).sum::<u64>() + t.truncated_bytes;
    let gap = (lost > 0).then(|| {
        let title = format!(
            "{} bytes missing from the transcript: {} truncated by the ring buffer, {} lost while the recorder was offline",
            lost,
            t.truncated_bytes,
            lost - t.truncated_bytes
        );
        view! { <span class="gap-badge" title=title.clone() aria-label=title>{format!("gap {}", format::bytes(lost))}</span> }
    });
    let attached: Vec<_> = s.clients.iter().filter(|c| c.detached_at.is_none()).cloned().collect();
    view! {
        <tr data-session-id=s.id.to_string() data-state=s.state.as_str()>
            <td class="machine">{s.machine.clone()}</td>
            <td title=s.user.clone()>{s.user_name.clone()}</td>
            <td class="command"><a href=format!("/sessions/{}", s.id)><code>{s.command.clone()}</code></a></td>
            <td class="started">{format::timestamp(s.started_at)}</td>
            <td class="num" data-testid="duration">{duration}</td>
            <td class="num">{exit}</td>
            <td><ClientIcons clients=attached /></td>
            <td class="num">{format::bytes(t.total_bytes)} {gap}</td>
        </tr>
    }
}
