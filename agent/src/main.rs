//! `cmdop`: records terminal sessions in a real PTY and streams them to the sessions inspector.

mod cli;
mod config;
mod http;
mod login;
mod record;
mod session_cmd;

use clap::Parser;

use cli::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Record(args) => record::run(args),
        Command::Login(args) => login::run(args).map(|()| 0),
        Command::Session(command) => session_cmd::run(command).map(|()| 0),
    };
    match result {
        // `exit` skips destructors: everything that needed restoring was restored on the way here.
        Ok(code) => std::process::exit(code),
        Err(e) => {
            record::terminal::restore();
            eprintln!("cmdop: {e:#}");
            std::process::exit(1);
        }
    }
}
