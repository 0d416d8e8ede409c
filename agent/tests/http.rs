//! `cmdop login` and `cmdop session ...` against a fake HTTP API written here.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use cmdop_protocol::{MemberInfo, Session, SessionList, SessionState, TranscriptInfo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::process::Command;
use uuid::Uuid;

const TEST_LIMIT: Duration = Duration::from_secs(30);

/// One request as the fake server saw it.
#[derive(Debug, Clone)]
struct Seen {
    target: String,
    auth: Option<String>,
}

/// Serves canned answers chosen by `route(path_and_query)` and records the requests.
async fn fake_api(route: impl Fn(&str) -> (u16, String) + Send + Sync + 'static) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let route = Arc::new(route);
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let (log, route) = (log.clone(), route.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = tcp.read(&mut buf).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    head.extend_from_slice(&buf[..n]);
                }
                let head = String::from_utf8(head).unwrap();
                let target = head.split(' ').nth(1).unwrap().to_string();
                let auth = head
                    .lines()
                    .find_map(|l| l.strip_prefix("authorization: ").or_else(|| l.strip_prefix("Authorization: ")))
                    .map(str::to_string);
                log.lock().unwrap().push(Seen { target: target.clone(), auth });
                let (status, body) = route(&target);
                let length = body.len();
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\
                     connection: close\r\n\r\n{body}"
                );
                tcp.write_all(response.as_bytes()).await.unwrap();
            });
        }
    });
    (url, seen)
}

async fn cmdop(config: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cmdop"))
        .args(args)
        .env_remove("CMDOP_SERVER")
        .env_remove("CMDOP_TOKEN")
        .env("CMDOP_CONFIG_DIR", config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    child.wait_with_output().await.unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn session(n: u128, command: &str) -> Session {
    let t: DateTime<Utc> = "2025-01-02T03:04:05Z".parse().unwrap();
    Session {
        id: Uuid::from_u128(n),
        fleet: "acme".into(),
        fleet_id: Uuid::nil(),
        machine: "web-1".into(),
        machine_id: Uuid::nil(),
        user: "alice@acme.io".into(),
        user_id: Uuid::nil(),
        user_name: "Alice".into(),
        command: command.into(),
        state: SessionState::Ended,
        end_reason: None,
        started_at: t,
        ended_at: Some(t),
        exit_code: Some(3),
        duration_ms: 65_000,
        cols: 80,
        rows: 24,
        clients: vec![],
        chat_thread: None,
        transcript: TranscriptInfo { total_bytes: 100, retained_bytes: 100, truncated_bytes: 0, gaps: vec![] },
    }
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap()
}

#[tokio::test]
async fn login_saves_a_checked_token_that_session_list_then_uses() {
    tokio::time::timeout(TEST_LIMIT, async {
        let member = MemberInfo { id: Uuid::nil(), email: "ci@acme.io".into(), name: "CI".into(), is_bot: true };
        let (url, seen) = fake_api(move |target| match target {
            "/api/v1/auth/me" => (200, json(&member)),
            "/api/v1/sessions?limit=200" => (
                200,
                json(&SessionList { sessions: vec![session(1, "make test")], next_cursor: Some("page 2".into()) }),
            ),
            "/api/v1/sessions?limit=200&cursor=page+2" => {
                (200, json(&SessionList { sessions: vec![session(2, "bash")], next_cursor: None }))
            }
            other => (404, format!(r#"{{"error":"no route {other}"}}"#)),
        })
        .await;
        let config = tempfile::tempdir().unwrap();

        let out = cmdop(config.path(), &["login", "--server", &format!("{url}/")], "tok-123\n").await;
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains(&format!("Logged in to {url} as CI <ci@acme.io> (bot).")),
            "{}",
            text(&out.stdout)
        );
        let file = config.path().join("credentials.json");
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(saved, serde_json::json!({"server": url, "token": "tok-123"}));

        let out = cmdop(config.path(), &["session", "list", "--json"], "").await;
        assert!(out.status.success(), "{}", text(&out.stderr));
        let listed: Vec<Session> = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(listed, vec![session(1, "make test"), session(2, "bash")], "both pages, in order");

        let out = cmdop(config.path(), &["session", "list"], "").await;
        let table = text(&out.stdout);
        assert!(table.starts_with("ID "), "{table}");
        assert!(table.contains("make test") && table.contains("1m05s"), "{table}");

        let seen = seen.lock().unwrap().clone();
        assert!(seen.iter().all(|s| s.auth.as_deref() == Some("Bearer tok-123")), "{seen:?}");
        let targets: Vec<&str> = seen.iter().map(|s| s.target.as_str()).collect();
        let pages = ["/api/v1/sessions?limit=200", "/api/v1/sessions?limit=200&cursor=page+2"];
        assert_eq!(targets, [&["/api/v1/auth/me"][..], &pages, &pages].concat());
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn refused_tokens_and_missing_sessions_are_clear_errors() {
    tokio::time::timeout(TEST_LIMIT, async {
        let (url, _) = fake_api(|target| match target {
            "/api/v1/auth/me" => (401, r#"{"error":"unknown token"}"#.into()),
            "/api/v1/sessions?limit=200&state=active" => (500, r#"{"error":"database is down"}"#.into()),
            _ => (404, r#"{"error":"session not found"}"#.into()),
        })
        .await;
        let config = tempfile::tempdir().unwrap();

        let out = cmdop(config.path(), &["login", "--server", &url, "--token", "bad"], "").await;
        assert!(!out.status.success());
        assert!(text(&out.stderr).contains("token refused"), "{}", text(&out.stderr));
        assert!(!config.path().join("credentials.json").exists(), "a refused token is not saved");

        let flags = ["--server", url.as_str(), "--token", "t"];
        let id = Uuid::from_u128(5).to_string();
        let out = cmdop(config.path(), &[&["session", "attach", id.as_str()][..], &flags].concat(), "").await;
        assert!(!out.status.success());
        assert!(text(&out.stderr).contains("not found or not visible to you"), "{}", text(&out.stderr));

        let out = cmdop(config.path(), &[&["session", "list", "--active"][..], &flags].concat(), "").await;
        assert!(!out.status.success());
        assert!(
            text(&out.stderr).contains("database is down (HTTP 500)"),
            "the server's message: {}",
            text(&out.stderr)
        );

        let out = cmdop(config.path(), &["session", "list"], "").await;
        assert!(!out.status.success());
        assert!(text(&out.stderr).contains("CMDOP_SERVER"), "names how to give a server: {}", text(&out.stderr));
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn attach_describes_the_session_and_points_to_takeover_elsewhere() {
    tokio::time::timeout(TEST_LIMIT, async {
        let s = session(8, "htop");
        let body = json(&s);
        let (url, _) = fake_api(move |_| (200, body.clone())).await;
        let config = tempfile::tempdir().unwrap();
        let id = s.id.to_string();
        let flags = ["--server", url.as_str(), "--token", "t"];

        let out = cmdop(config.path(), &[&["session", "attach", id.as_str()][..], &flags].concat(), "").await;
        assert!(out.status.success(), "{}", text(&out.stderr));
        let shown = text(&out.stdout);
        for part in
            ["web-1 (fleet acme)", "Alice <alice@acme.io>", "htop", "Exit code:  3", "100 bytes", "cmdop connect"]
        {
            assert!(shown.contains(part), "{part:?} missing from\n{shown}");
        }

        let out = cmdop(config.path(), &[&["session", "attach", id.as_str(), "--json"][..], &flags].concat(), "").await;
        assert_eq!(serde_json::from_slice::<Session>(&out.stdout).unwrap(), s);
    })
    .await
    .expect("test timed out");
}
