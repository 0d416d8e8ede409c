use cmdop_protocol::SessionState;
use leptos::either::EitherOf4;
use leptos::prelude::*;

/// An exit code, colored: 0 green, anything else red; `while_running` while the session is active, and "lost"
/// when it ended without one (the recorder vanished before the command exited).
/// `Either`s, not `into_any()`: a type-erased view carries its own hydration code in the WASM.
pub fn exit_code(state: SessionState, code: Option<i32>, while_running: &'static str) -> impl IntoView + use<> {
    match (code, state) {
        (Some(0), _) => EitherOf4::A(view! { <span class="exit exit-ok">"0"</span> }),
        (Some(code), _) => EitherOf4::B(view! { <span class="exit exit-fail">{code}</span> }),
        (None, SessionState::Active) => EitherOf4::C(view! { <span class="muted">{while_running}</span> }),
        (None, SessionState::Ended) => EitherOf4::D(
            view! { <span class="muted" title="The recorder was lost before the command exited">"lost"</span> },
        ),
    }
}
