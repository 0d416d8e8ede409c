use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

/// The sign-in form. It posts to `/auth/login` as a plain form, so it works before (and without) hydration; the
/// server answers with the cookie and a redirect, or back here with `?error=`.
#[component]
pub fn LoginPage() -> impl IntoView {
    // Read once: the form posts as a plain form and the server answers with a new page, so nothing here changes
    // while it is open (and a reactive copy of this page would cost the WASM ~4 KB).
    let query = use_query_map().get_untracked();
    let error = query.get("error").map(|code| match code.as_str() {
        "invalid" => "That email and password do not match a member. Check both and try again.",
        "rate_limited" => "Too many sign-in attempts. Wait a minute, then try again.",
        "missing" => "Enter your email and your password.",
        _ => "Signing in failed. Try again.",
    });
    let next = query.get("next").filter(|n| is_local_path(n)).unwrap_or_else(|| "/sessions".into());
    let email = query.get("email").unwrap_or_default();

    view! {
        <Title text="Sign in" />
        <main class="login">
            <form class="login-card" method="post" action="/auth/login">
                <div class="brand brand-large">
                    <span class="brand-mark" aria-hidden="true">"▍"</span>
                    "cmdop "
                    <span class="brand-sub">"sessions inspector"</span>
                </div>
                <p class="muted">"Sign in with your cabinet account to see the terminal sessions of your fleets."</p>
                {error.map(|e| view! { <p class="alert" role="alert">{e}</p> })}
                <input type="hidden" name="next" value=next />
                <label for="email">"Email"</label>
                <input id="email" name="email" type="email" autocomplete="username" required value=email />
                <label for="password">"Password"</label>
                <input id="password" name="password" type="password" autocomplete="current-password" required />
                <button type="submit" class="primary">"Sign in"</button>
                <p class="muted small">
                    "The inspector is read only. To drive a session use "<code>"cmdop connect <machine>"</code>
                    " or the desktop app."
                </p>
            </form>
        </main>
    }
}

/// Only same-site paths may be redirect targets (no `//evil.example`). Control characters are refused outright:
/// browsers drop tabs and newlines from URLs, which would turn `/\t/evil.example` into `//evil.example`.
pub fn is_local_path(p: &str) -> bool {
    p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') && !p.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    #[test]
    fn redirect_targets_stay_on_site() {
        assert!(super::is_local_path("/sessions?x=1"));
        assert!(!super::is_local_path("//evil.example/"));
        assert!(!super::is_local_path("https://evil.example/"));
        assert!(!super::is_local_path("/\\evil.example"));
        assert!(!super::is_local_path("/\t/evil.example"));
        assert!(!super::is_local_path("/\r\n/evil.example"));
    }
}
