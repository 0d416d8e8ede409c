use cmdop_protocol::{ClientInfo, ClientKind};
use leptos::either::Either;
use leptos::prelude::*;

/// Attached clients as small icons, one per kind with a count; named in words for screen readers and on hover.
#[component]
pub fn ClientIcons(clients: Vec<ClientInfo>) -> impl IntoView {
    if clients.is_empty() {
        return Either::Left(view! { <span class="muted" aria-label="no clients attached">"—"</span> });
    }
    let kinds = [ClientKind::Desktop, ClientKind::Cli, ClientKind::Bot, ClientKind::Browser];
    Either::Right(view! {
        <span class="client-icons">
            {kinds
                .into_iter()
                .filter_map(|kind| {
                    let of_kind: Vec<&ClientInfo> = clients.iter().filter(|c| c.kind == kind).collect();
                    if of_kind.is_empty() {
                        return None;
                    }
                    let names = of_kind.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ");
                    let n = of_kind.len();
                    let label = format!("{n} {} client{}: {names}", kind_label(kind), if n == 1 { "" } else { "s" });
                    Some(view! {
                        <span class=format!("client-icon kind-{}", kind.as_str()) role="img" aria-label=label.clone() title=label data-kind=kind.as_str()>
                            {icon(kind)}
                            {(n > 1).then(|| view! { <span class="client-count" aria-hidden="true">{n}</span> })}
                        </span>
                    })
                })
                .collect_view()}
        </span>
    })
}

/// A client kind in words.
pub fn kind_label(kind: ClientKind) -> &'static str {
    match kind {
        ClientKind::Desktop => "desktop",
        ClientKind::Cli => "CLI",
        ClientKind::Bot => "bot",
        ClientKind::Browser => "browser",
    }
}

/// 16 px line icons drawn with the text color.
fn icon(kind: ClientKind) -> impl IntoView {
    let path = match kind {
        // A monitor on a stand.
        ClientKind::Desktop => "M2 3h12v8H2z M6 14h4 M8 11v3",
        // A prompt: chevron and underscore.
        ClientKind::Cli => "M3 4l4 4-4 4 M8 12h5",
        // A robot head with an antenna.
        ClientKind::Bot => "M3 6h10v7H3z M8 6V3 M6 9v1 M10 9v1",
        // A browser window with its tab bar.
        ClientKind::Browser => "M2 3h12v10H2z M2 6h12",
    };
    view! {
        <svg viewBox="0 0 16 16" width="16" height="16" aria-hidden="true" focusable="false">
            <path d=path fill="none" stroke="currentColor" stroke-width="1.5" stroke-linecap="round" stroke-linejoin="round" />
        </svg>
    }
}
