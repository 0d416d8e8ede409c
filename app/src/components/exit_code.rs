use cmdop_protocol::SessionState;
use leptos::prelude::*;

/// An exit code, colored: 0 green, anything else red; `while_running` while the session is active, and "lost"
/// when it ended without one (the recorder vanished before the command exited).
pub fn exit_code(state: SessionState, code: Option<i32>, while_running: &'static str) -> AnyView {
    match (code, state) {
        (Some(0), _) => view! { <span class="exit exit-ok">"0"</span> }.into_any(),
        (Some(code), _) => view! { <span class="exit exit-fail">{code}</span> }.into_any(),
        (None, SessionState::Active) => view! { <span class="muted">{while_running}</span> }.into_any(),
        (None, SessionState::Ended) => {
            view! { <span class="muted" title="The recorder was lost before the command exited">"lost"</span> }
                .into_any()
        }
    }
}
