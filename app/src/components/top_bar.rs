use leptos::prelude::*;

use crate::api::Account;

/// The bar on top of every signed-in page: product name, who is signed in, and sign out.
#[component]
pub fn TopBar(me: Account) -> impl IntoView {
    let fleets = me.fleets.join(", ");
    view! {
        <header class="top-bar">
            <a class="brand" href="/sessions">
                <span class="brand-mark" aria-hidden="true">"▍"</span>
                "cmdop "
                <span class="brand-sub">"inspector"</span>
            </a>
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
