//! `cmdop login`: checks a token against the server and saves it for the other commands.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, bail};
use cmdop_protocol::MemberInfo;

use crate::cli::LoginArgs;
use crate::config::{self, Credentials, Target};
use crate::http::{Api, block_on};

pub fn run(args: LoginArgs) -> anyhow::Result<()> {
    let server = config::normalize_server(&args.server, "--server")?;
    let (token, token_source) = match args.token {
        Some(token) => (token, "--token"),
        None => (read_token(&server)?, "stdin"),
    };
    let token = token.trim().to_string();
    if token.is_empty() {
        bail!("the token from {token_source} is empty");
    }
    let api = Api::new(Target { server: server.clone(), token: token.clone(), token_source: token_source.into() })?;
    let member: MemberInfo = match block_on(api.get("/api/v1/auth/me", &[]))? {
        Ok(member) => member,
        Err(e) if e.status() == Some(401) => bail!("token refused by {server} ({e})"),
        Err(e) => return Err(e).context("cannot check the token"),
    };
    let path = config::save_credentials(&Credentials { server: server.clone(), token })?;
    let bot = if member.is_bot { " (bot)" } else { "" };
    println!("Logged in to {server} as {} <{}>{bot}.", member.name, member.email);
    println!("Credentials saved to {}.", path.display());
    Ok(())
}

/// Reads the token from stdin: prompted and without echo on a terminal, else the first line.
fn read_token(server: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let mut line = String::new();
    if stdin.is_terminal() {
        eprint!("API token for {server}: ");
        let _ = std::io::stderr().flush();
        let echo_off = EchoOff::new();
        stdin.lock().read_line(&mut line).context("cannot read the token from stdin")?;
        drop(echo_off);
        eprintln!();
    } else {
        stdin.lock().read_line(&mut line).context("cannot read the token from stdin")?;
    }
    if line.trim().is_empty() {
        bail!("no token given: pass --token TOKEN or type it on stdin");
    }
    Ok(line)
}

/// Turns terminal echo off on stdin for as long as it lives.
struct EchoOff(Option<libc::termios>);

impl EchoOff {
    fn new() -> Self {
        // SAFETY: termios is plain data; tcgetattr/tcsetattr on fd 0 only read/write it.
        unsafe {
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(libc::STDIN_FILENO, &mut saved) != 0 {
                return EchoOff(None);
            }
            let mut quiet = saved;
            quiet.c_lflag &= !libc::ECHO;
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &quiet);
            EchoOff(Some(saved))
        }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            // SAFETY: restores the attributes read in `new`.
            unsafe {
                libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, saved);
            }
        }
    }
}
