//! `cmdop session list|attach`: what the server knows about sessions, as tables or JSON.

use std::fmt::Write as _;

use anyhow::{Context, bail};
use chrono::{DateTime, Local, Utc};
use cmdop_protocol::{Session, SessionList};
use uuid::Uuid;

use crate::cli::{ServerArgs, SessionCommand};
use crate::config;
use crate::http::{Api, ApiError, block_on};

/// Page size asked for (the API's maximum).
const PAGE: &str = "200";

pub fn run(command: SessionCommand) -> anyhow::Result<()> {
    match command {
        SessionCommand::List { server, active, json } => list(&server, active, json),
        SessionCommand::Attach { server, id, json } => attach(&server, &id, json),
    }
}

fn api(server: &ServerArgs) -> anyhow::Result<Api> {
    Api::new(config::resolve(server.server.as_deref(), server.token.as_deref())?)
}

/// Adds what to do about the errors a user can fix.
fn explain(e: ApiError, api: &Api) -> anyhow::Error {
    match e.status() {
        Some(401) => anyhow::anyhow!("token refused by {}: {e}", api.server()),
        _ => e.into(),
    }
}

fn list(server: &ServerArgs, active: bool, json: bool) -> anyhow::Result<()> {
    let api = api(server)?;
    let sessions = block_on(async {
        let mut sessions = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![("limit", PAGE)];
            if active {
                query.push(("state", "active"));
            }
            if let Some(c) = &cursor {
                query.push(("cursor", c));
            }
            let page: SessionList = api.get("/api/v1/sessions", &query).await.map_err(|e| explain(e, &api))?;
            sessions.extend(page.sessions);
            match page.next_cursor {
                // A cursor that does not move would loop forever.
                Some(next) if cursor.as_deref() != Some(next.as_str()) => cursor = Some(next),
                _ => break,
            }
        }
        anyhow::Ok(sessions)
    })??;
    if json {
        println!("{}", serde_json::to_string_pretty(&sessions)?);
    } else if sessions.is_empty() {
        println!("{}", if active { "No active sessions." } else { "No sessions." });
    } else {
        print!("{}", table(&sessions));
    }
    Ok(())
}

fn attach(server: &ServerArgs, id: &str, json: bool) -> anyhow::Result<()> {
    let id: Uuid = id.trim().parse().with_context(|| format!("`{id}` is not a session id (a UUID)"))?;
    let api = api(server)?;
    let session: Session = match block_on(api.get(&format!("/api/v1/sessions/{id}"), &[]))? {
        Ok(s) => s,
        Err(e) if e.status() == Some(404) => bail!("session {id} not found or not visible to you"),
        Err(e) => return Err(explain(e, &api)),
    };
    const TAKEOVER: &str = "Interactive takeover is not part of this command: use `cmdop connect <machine>` or the \
                            desktop app.";
    if json {
        println!("{}", serde_json::to_string_pretty(&session)?);
        eprintln!("{TAKEOVER}");
    } else {
        print!("{}", details(&session));
        println!();
        println!("{TAKEOVER}");
    }
    Ok(())
}

fn table(sessions: &[Session]) -> String {
    let header = ["ID", "MACHINE", "USER", "COMMAND", "STATE", "STARTED", "DURATION", "EXIT"];
    let rows: Vec<[String; 8]> = sessions
        .iter()
        .map(|s| {
            [
                s.id.to_string(),
                s.machine.clone(),
                s.user.clone(),
                ellipsize(&s.command, 40),
                state(s),
                local_time(s.started_at),
                human_duration(s.duration_ms),
                s.exit_code.map_or_else(|| "-".to_string(), |c| c.to_string()),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<w$}  ");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&header);
    for row in &rows {
        line(&row.each_ref().map(String::as_str));
    }
    out
}

fn details(s: &Session) -> String {
    let mut out = String::new();
    let mut field = |name: &str, value: String| {
        let _ = writeln!(out, "{:<11} {value}", format!("{name}:"));
    };
    field("Session", s.id.to_string());
    field("Machine", format!("{} (fleet {})", s.machine, s.fleet));
    field("User", format!("{} <{}>", s.user_name, s.user));
    field("Command", s.command.clone());
    field("State", state(s));
    field("Started", local_time(s.started_at));
    if let Some(ended) = s.ended_at {
        field("Ended", local_time(ended));
    }
    field("Duration", human_duration(s.duration_ms));
    field("Exit code", s.exit_code.map_or_else(|| "-".to_string(), |c| c.to_string()));
    field("Size", format!("{}x{}", s.cols, s.rows));
    if let Some(thread) = &s.chat_thread {
        field("Chat", format!("{} ({})", thread.title, thread.id));
    }
    let clients = if s.clients.is_empty() {
        "none".to_string()
    } else {
        s.clients
            .iter()
            .map(|c| {
                let when = match c.detached_at {
                    None => format!("attached since {}", local_time(c.attached_at)),
                    Some(d) => format!("{} to {}", local_time(c.attached_at), local_time(d)),
                };
                format!("{} \"{}\", {when}", c.kind.as_str(), c.name)
            })
            .collect::<Vec<_>>()
            .join("\n            ")
    };
    field("Clients", clients);
    let t = &s.transcript;
    let mut transcript = format!("{} bytes", t.total_bytes);
    if t.retained_bytes != t.total_bytes || t.truncated_bytes > 0 {
        let _ = write!(transcript, " ({} retained, {} oldest truncated)", t.retained_bytes, t.truncated_bytes);
    }
    field("Transcript", transcript);
    let gaps = if t.gaps.is_empty() {
        "none".to_string()
    } else {
        t.gaps
            .iter()
            .map(|g| format!("{} bytes lost at byte {} ({})", g.bytes_lost, g.at_offset, g.reason.as_str()))
            .collect::<Vec<_>>()
            .join("\n            ")
    };
    field("Gaps", gaps);
    out
}

fn state(s: &Session) -> String {
    match s.end_reason {
        Some(reason) => format!("{} ({})", s.state.as_str(), reason.as_str()),
        None => s.state.as_str().to_string(),
    }
}

fn local_time(t: DateTime<Utc>) -> String {
    t.with_timezone(&Local).format("%Y-%m-%d %H:%M:%S").to_string()
}

fn human_duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

fn ellipsize(text: &str, max: usize) -> String {
    let one_line = text.replace(['\n', '\r', '\t'], " ");
    if one_line.chars().count() <= max { one_line } else { one_line.chars().take(max - 1).chain(['…']).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cmdop_protocol::{SessionState, TranscriptInfo};

    fn session() -> Session {
        let t = DateTime::parse_from_rfc3339("2025-01-02T03:04:05Z").unwrap().with_timezone(&Utc);
        Session {
            id: Uuid::nil(),
            fleet: "acme".into(),
            fleet_id: Uuid::nil(),
            machine: "web-1".into(),
            machine_id: Uuid::nil(),
            user: "alice@acme.io".into(),
            user_id: Uuid::nil(),
            user_name: "Alice".into(),
            command: "bash".into(),
            state: SessionState::Active,
            end_reason: None,
            started_at: t,
            ended_at: None,
            exit_code: None,
            duration_ms: 3_725_000,
            cols: 80,
            rows: 24,
            clients: vec![],
            chat_thread: None,
            transcript: TranscriptInfo { total_bytes: 10, retained_bytes: 10, truncated_bytes: 0, gaps: vec![] },
        }
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(human_duration(999), "0s");
        assert_eq!(human_duration(185_000), "3m05s");
        assert_eq!(human_duration(3_725_000), "1h02m");
    }

    #[test]
    fn the_table_aligns_columns() {
        let text = table(&[session()]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("ID                                    MACHINE  USER"), "{}", lines[0]);
        assert!(lines[1].contains("web-1    alice@acme.io  bash     active"), "{}", lines[1]);
        assert!(lines[1].ends_with("1h02m     -"), "{}", lines[1]);
    }

    #[test]
    fn details_name_every_field() {
        let text = details(&session());
        for name in ["Machine:", "User:", "Command:", "State:", "Exit code:", "Duration:", "Clients:", "Gaps:"] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
