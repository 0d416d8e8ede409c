//! The sessions inspector backend as a library: [`router`] is everything `cmdop-inspector serve` mounts, so a
//! Rust web app can nest it in its own axum router; [`config`] and [`admin`] are the binary's commands.

pub mod admin;
pub mod api;
pub mod assets;
pub mod auth;
pub mod config;
pub mod demo;
pub mod error;
pub mod ingest;
pub mod live;
pub mod reaper;
pub mod state;

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header::{HeaderName, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS};
use axum::http::{HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{delete, get, post};
use cmdop_inspector::ssr::{InspectorContext, member_from_headers};
use cmdop_inspector::{App, shell};
use leptos::prelude::provide_context;
use leptos_axum::{LeptosRoutes, generate_route_list};
use tower_http::compression::CompressionLayer;
use tower_http::set_header::SetResponseHeaderLayer;

pub use state::AppState;

/// The whole inspector: pages, server functions, the JSON API and the site's assets.
pub fn router(state: AppState) -> Router {
    let ctx = InspectorContext { store: state.store.clone() };
    let provide = move || provide_context(ctx.clone());
    let options = state.leptos_options.clone();
    let pages = Router::new()
        .leptos_routes_with_context(&state, generate_route_list(App), provide, move || shell(options.clone()))
        .route_layer(middleware::from_fn_with_state(state.clone(), page_guard));

    Router::new()
        .route("/", get(|| async { Redirect::to("/sessions") }))
        .route("/healthz", get(api::healthz))
        .route("/auth/login", post(auth::form_login))
        .route("/auth/logout", post(auth::form_logout))
        .route("/api/v1/auth/login", post(auth::api_login))
        .route("/api/v1/auth/logout", post(auth::api_logout))
        .route("/api/v1/sessions", get(api::list_sessions))
        .route("/api/v1/sessions/changes", get(live::changes::session_changes))
        .route("/api/v1/auth/me", get(api::me))
        .route("/api/v1/ingest", get(ingest::ingest))
        .route("/api/v1/sessions/{id}", get(api::get_session))
        .route("/api/v1/sessions/{id}/live", get(live::viewer::live))
        .route("/api/v1/sessions/{id}/transcript", get(api::transcript))
        .route("/api/v1/sessions/{id}/clients", post(api::attach_client))
        .route("/api/v1/sessions/{id}/clients/{client_id}", delete(api::detach_client))
        .route("/api/v1/chat/threads", post(api::create_chat_thread))
        .route("/api/v1/chat/threads/{id}", get(api::chat_thread))
        .route("/api/v1/chat/threads/{id}/messages", post(api::post_chat_message))
        .merge(pages)
        .fallback(fallback)
        .layer(CompressionLayer::new())
        .layer(SetResponseHeaderLayer::overriding(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(SetResponseHeaderLayer::overriding(REFERRER_POLICY, HeaderValue::from_static("same-origin")))
        .layer(SetResponseHeaderLayer::if_not_present(
            HeaderName::from_static("x-frame-options"),
            HeaderValue::from_static("SAMEORIGIN"),
        ))
        .with_state(state)
}

/// Pages need a signed-in member: the signed-out go to the sign-in page (and come back after), the signed-in
/// skip it. Server functions (`/rpc/...`) answer for themselves.
async fn page_guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if req.method() == Method::GET && !path.starts_with("/rpc/") {
        let signed_in = matches!(member_from_headers(&*state.store, req.headers()).await, Ok(Some(_)));
        if path == "/login" && signed_in {
            return Redirect::to("/sessions").into_response();
        }
        if path != "/login" && !signed_in {
            let here = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/sessions");
            let next: String = form_urlencoded::byte_serialize(here.as_bytes()).collect();
            return Redirect::to(&format!("/login?next={next}")).into_response();
        }
    }
    next.run(req).await
}

/// Assets of the site; anything else is the app's "not found" page (status 404).
async fn fallback(State(state): State<AppState>, req: Request) -> Response {
    let path = req.uri().path().trim_start_matches('/');
    if let Some(res) = assets::asset(path, req.headers()) {
        return res;
    }
    if path.starts_with("api/") {
        return error::ApiError::Store(cmdop_store::StoreError::NotFound("API endpoint".into())).into_response();
    }
    let ctx = InspectorContext { store: state.store.clone() };
    let options = state.leptos_options.clone();
    let render = leptos_axum::render_app_to_stream_with_context(
        move || provide_context(ctx.clone()),
        move || shell(options.clone()),
    );
    render(req).await
}

/// Serves the inspector on `listen` until Ctrl-C or SIGTERM, with the recorder-lost sweep running. (Embedders
/// that mount [`router`] themselves start the sweep with [`reaper::spawn`].)
pub async fn serve(state: AppState, listen: SocketAddr) -> anyhow::Result<()> {
    use axum::serve::ListenerExt;
    let sweep = reaper::spawn(state.clone());
    let listener =
        tokio::net::TcpListener::bind(listen).await.map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    // Live output, acks and events are small frames that must leave at once: without TCP_NODELAY, Nagle's
    // algorithm holds one back until the peer acknowledges the previous (up to its delayed-ACK timer, ~40 ms).
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY: {e}");
        }
    });
    axum::serve(listener, router(state).into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    sweep.abort();
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
