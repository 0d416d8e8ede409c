use leptos::either::EitherOf3;
use leptos::prelude::*;
use leptos_router::hooks::use_location;

use crate::api::{Account, signed_in};

/// The bar on top of every page but sign-in: who is signed in (and sign out), or a sign-in link. One resource for
/// the whole app, read once per page load: navigating between pages keeps it.
#[component]
pub fn AccountBar() -> impl IntoView {
    let me = crate::api::resource(|| (), |_| signed_in());
    let path = use_location().pathname;
    view! {
        <Suspense fallback=|| ()>
            {move || (path.get() != "/login").then(|| Suspend::new(async move {
                match me.await {
                    Ok(Some(me)) => EitherOf3::A(view! { <TopBar me /> }),
                    Ok(None) => EitherOf3::B(view! {
                        <header class="top-bar">
                            <Brand />
                            <a href="/login">"Sign in"</a>
                        </header>
                    }),
                    Err(e) => EitherOf3::C(view! { <p class="alert" role="alert">{e.to_string()}</p> }),
                }
            }))}
        </Suspense>
    }
}

#[component]
fn Brand() -> impl IntoView {
    view! {
        <a class="brand" href="/sessions">
            <span class="brand-mark" aria-hidden="true">"▍"</span>
            "cmdop "
            <span class="brand-sub">"inspector"</span>
        </a>
    }
}

/// Product name, who is signed in, and sign out.
#[component]
fn TopBar(me: Account) -> impl IntoView {
    let fleets = me.fleets.join(", ");
    view! {
        <header class="top-bar">
            <Brand />
            <nav aria-label="Main">
                <a href="/sessions" aria-current="page">"Sessions"</a>
            </nav>
            <div class="who">
                <span class="who-name" title=fleets>{me.member.name.clone()}</span>
                <span class="who-email muted">{me.member.email.clone()}</span>
                <form method="post" action="/auth/logout">
                    <button type="submit" class="link-button">"Sign out"</button>
                </form>
            </div>
        </header>
    }
}
