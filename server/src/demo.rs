//! `serve --demo`: on first start, a demo fleet with members, two machines and sessions whose transcripts come
//! from real programs run in a real PTY (colors, a `\r` progress bar, a failing command), written through the same
//! store calls as recorded data.

use std::io::Read;
use std::time::Instant;

use cmdop_protocol::{ClientKind, EndReason};
use cmdop_store::{
    NewClient, NewMember, NewSession, OutputChunk, Role, SessionEnd, Store, StoreError, StoreResult, TranscriptWrite,
    secrets,
};
use portable_pty::{CommandBuilder, PtySize, native_pty_system};

pub const DEMO_FLEET: &str = "demo";
pub const DEMO_EMAIL: &str = "demo@cmdop.local";
pub const DEMO_PASSWORD: &str = "cmdop-demo";
/// A plain member who sees only `web-1`: sign in as them to see visibility at work.
pub const VIEWER_EMAIL: &str = "viewer@cmdop.local";
pub const VIEWER_PASSWORD: &str = "cmdop-viewer";
const BOT_EMAIL: &str = "ci-bot@cmdop.local";

const COLS: u16 = 100;
const ROWS: u16 = 30;

/// One demo recording: who ran what where.
struct Script {
    machine: &'static str,
    by_bot: bool,
    command: &'static str,
    script: &'static str,
    /// Shows what a recorder outage looks like: before output chunk N, this many bytes were lost.
    lost: Option<(usize, u64)>,
}

const SCRIPTS: &[Script] = &[
    Script {
        machine: "web-1",
        by_bot: false,
        command: "ls -la --color=always /",
        script: "ls -la --color=always /",
        lost: None,
    },
    Script {
        machine: "db-1",
        by_bot: false,
        command: "./migrate.sh up",
        script: r#"echo "Running migrations against db-1..."; sleep 0.1
echo "  0001_init.sql ............ ok"; sleep 0.05
echo "  0002_sessions.sql ........ ok"; sleep 0.05
printf '  0003_users.sql ........... \033[1;31mFAILED\033[0m\n'
printf '\033[31merror:\033[0m relation "users" already exists (SQLSTATE 42P07)\n' >&2
exit 3"#,
        lost: None,
    },
    Script {
        machine: "web-1",
        by_bot: true,
        command: "make release",
        script: r#"printf '\033[1mBuilding release\033[0m\n'
for i in $(seq 0 5 100); do
  bar=$(printf '%*s' $((i / 5)) '' | tr ' ' '#')
  printf '\rcompiling [%-20s] %3d%%' "$bar" "$i"
  sleep 0.03
done
printf '\n\033[32m✔ release built\033[0m in 0.6s\n'"#,
        lost: Some((2, 18_432)),
    },
    Script {
        machine: "db-1",
        by_bot: false,
        command: "palette",
        script: r#"printf '\033[1mbold\033[0m \033[3mitalic\033[0m \033[4munderline\033[0m \033[7minverse\033[0m\n'
for c in 30 31 32 33 34 35 36 37; do printf '\033[%dm %d \033[0m' $c $c; done; echo
for c in 90 91 92 93 94 95 96 97; do printf '\033[%dm %d \033[0m' $c $c; done; echo
for c in $(seq 16 51); do printf '\033[48;5;%dm  \033[0m' $c; done; echo
for r in $(seq 0 12 255); do printf '\033[48;2;%d;80;160m \033[0m' $r; done; echo
printf 'wide: 日本語 ✓  emoji: 🚀\n'"#,
        lost: None,
    },
];

/// What the demo seeding tells the person who started the server.
pub struct DemoLogins {
    pub seeded_now: bool,
}

/// Seeds the demo once; later starts find the fleet and leave everything as it is.
pub async fn seed(store: &dyn Store) -> StoreResult<DemoLogins> {
    match store.fleet_by_name(DEMO_FLEET).await {
        Ok(_) => return Ok(DemoLogins { seeded_now: false }),
        Err(StoreError::NotFound(_)) => {}
        Err(e) => return Err(e),
    }
    let fleet = store.create_fleet(DEMO_FLEET).await?;
    let owner = add_member(store, fleet.id, DEMO_EMAIL, "Dana Demo", Some(DEMO_PASSWORD), Role::Owner).await?;
    let viewer =
        add_member(store, fleet.id, VIEWER_EMAIL, "Victor Viewer", Some(VIEWER_PASSWORD), Role::Member).await?;
    let bot = add_member(store, fleet.id, BOT_EMAIL, "CI bot", None, Role::Member).await?;

    let web = store.create_machine(fleet.id, "web-1").await?;
    let db = store.create_machine(fleet.id, "db-1").await?;
    store.grant_machine(web.id, viewer.id).await?;
    store.grant_machine(web.id, bot.id).await?;

    for s in SCRIPTS {
        let machine = if s.machine == "web-1" { &web } else { &db };
        let (member, kind) = if s.by_bot { (&bot, ClientKind::Bot) } else { (&owner, ClientKind::Cli) };
        let session = store
            .create_session(NewSession {
                fleet_id: fleet.id,
                machine_id: machine.id,
                started_by: member.id,
                command: s.command.into(),
                cols: COLS,
                rows: ROWS,
                chat_thread_id: None,
                started_at: None,
            })
            .await?;
        store
            .attach_client(
                session,
                NewClient { kind, name: format!("cmdop on {}", machine.name), member_id: Some(member.id) },
            )
            .await?;
        let script = s.script.to_string();
        let run = tokio::task::spawn_blocking(move || run_in_pty(&script)).await.expect("pty thread");
        let (chunks, exit_code) =
            run.map_err(|e| StoreError::invalid("demo", format!("running a demo program: {e}")))?;
        let mut writes = Vec::with_capacity(chunks.len() + 1);
        let mut shift = 0;
        for (i, mut chunk) in chunks.into_iter().enumerate() {
            if let Some((_, bytes_lost)) = s.lost.filter(|(at, _)| *at == i) {
                writes.push(TranscriptWrite::Gap { at_offset: chunk.offset, bytes_lost });
                shift = bytes_lost;
            }
            chunk.offset += shift;
            writes.push(TranscriptWrite::Output(chunk));
        }
        store.append(session, writes).await?;
        store
            .end_session(
                session,
                SessionEnd { exit_code: Some(exit_code), exit_signal: None, reason: EndReason::Exited, ended_at: None },
            )
            .await?;
    }
    Ok(DemoLogins { seeded_now: true })
}

/// A member of the demo fleet; without a password it is a bot (bots use API tokens).
async fn add_member(
    store: &dyn Store,
    fleet_id: uuid::Uuid,
    email: &str,
    name: &str,
    password: Option<&str>,
    role: Role,
) -> StoreResult<cmdop_store::Member> {
    let member = store
        .create_member(NewMember {
            email: email.into(),
            display_name: name.into(),
            password_hash: password.map(secrets::hash_password),
            is_bot: password.is_none(),
        })
        .await?;
    store.add_fleet_member(fleet_id, member.id, role).await?;
    Ok(member)
}

/// Runs `bash -c script` in a fresh PTY and returns its output as timed chunks, and its exit code.
pub fn run_in_pty(script: &str) -> anyhow::Result<(Vec<OutputChunk>, i32)> {
    let pair = native_pty_system().openpty(PtySize { rows: ROWS, cols: COLS, pixel_width: 0, pixel_height: 0 })?;
    let mut cmd = CommandBuilder::new("bash");
    cmd.args(["--noprofile", "--norc", "-c", script]);
    cmd.env("TERM", "xterm-256color");
    cmd.env("LANG", "C.UTF-8");
    let mut child = pair.slave.spawn_command(cmd)?;
    drop(pair.slave);
    let mut reader = pair.master.try_clone_reader()?;
    let started = Instant::now();
    let mut chunks = Vec::new();
    let mut offset = 0u64;
    let mut buf = [0u8; 8192];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                chunks.push(OutputChunk {
                    offset,
                    t_ms: started.elapsed().as_millis() as u64,
                    bytes: buf[..n].to_vec(),
                });
                offset += n as u64;
            }
            // Linux reports EIO on the master once the child side is closed: that is the end of output.
            Err(_) => break,
        }
    }
    let status = child.wait()?;
    Ok((chunks, status.exit_code() as i32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pty_captures_bytes_and_exit_code() {
        let (chunks, code) = run_in_pty("printf 'a\\033[31mred\\033[0m\\n'; exit 7").unwrap();
        let bytes: Vec<u8> = chunks.iter().flat_map(|c| c.bytes.clone()).collect();
        // Exactly what a terminal receives: the PTY's line discipline turns "\n" into "\r\n" (ONLCR).
        assert_eq!(bytes, b"a\x1b[31mred\x1b[0m\r\n");
        assert_eq!(code, 7);
        let mut expected_offset = 0;
        for c in &chunks {
            assert_eq!(c.offset, expected_offset);
            expected_offset += c.bytes.len() as u64;
        }
    }
}
