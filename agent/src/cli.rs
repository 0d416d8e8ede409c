//! Command-line syntax.

use std::ffi::OsString;

use clap::{Args, Parser, Subcommand, ValueEnum};
use cmdop_protocol::ClientKind;
use uuid::Uuid;

#[derive(Debug, Parser)]
#[command(name = "cmdop", version, about = "Record terminal sessions to a cmdop sessions inspector")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command in a PTY and stream its output to the server.
    Record(RecordArgs),
    /// Check an API token and save it for later commands.
    Login(LoginArgs),
    /// List and inspect sessions.
    #[command(subcommand)]
    Session(SessionCommand),
}

/// Server and token; each defaults to $CMDOP_SERVER / $CMDOP_TOKEN, then to what `cmdop login` saved.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Server URL, e.g. https://inspector.example.com
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// API token (visible to other local users in the process list: prefer $CMDOP_TOKEN or `cmdop login`)
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct RecordArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Machine name as registered on the server [default: this host's name]
    #[arg(long, value_name = "NAME")]
    pub machine: Option<String>,
    /// Fleet name, when the machine name exists in several of your fleets
    #[arg(long, value_name = "NAME")]
    pub fleet: Option<String>,
    /// No local terminal: stdin is not read and output is not shown (for scripts and bots)
    #[arg(long)]
    pub headless: bool,
    /// Chat thread to link the session to
    #[arg(long, value_name = "UUID")]
    pub chat_thread: Option<Uuid>,
    /// How this recorder shows among the session's clients
    #[arg(long, value_enum, default_value_t = Kind::Cli)]
    pub client_kind: Kind,
    /// Client name shown on the session [default: "cmdop on <host>"]
    #[arg(long, value_name = "NAME")]
    pub client_name: Option<String>,
    /// Terminal width when headless (or when the terminal's size is unknown)
    #[arg(long, value_name = "N", default_value_t = 80, value_parser = clap::value_parser!(u16).range(1..))]
    pub cols: u16,
    /// Terminal height when headless (or when the terminal's size is unknown)
    #[arg(long, value_name = "N", default_value_t = 24, value_parser = clap::value_parser!(u16).range(1..))]
    pub rows: u16,
    /// Most output kept locally while the server has not stored it (bytes, or with KiB/MiB/GiB); the oldest
    /// is dropped beyond that
    #[arg(long, value_name = "BYTES", default_value = "64MiB", value_parser = parse_size)]
    pub buffer_size: usize,
    /// After the command exits, how long to wait for the server to store the rest
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub flush_timeout: u64,
    /// Longest wait between reconnection attempts
    #[arg(long, value_name = "MS", default_value_t = 5000, hide = true)]
    pub retry_max_delay_ms: u64,
    /// The command to record [default: $SHELL, or /bin/sh]
    #[arg(trailing_var_arg = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    Cli,
    Bot,
}

impl From<Kind> for ClientKind {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Cli => ClientKind::Cli,
            Kind::Bot => ClientKind::Bot,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct LoginArgs {
    /// Server URL, e.g. https://inspector.example.com
    #[arg(long, value_name = "URL")]
    pub server: String,
    /// API token [default: read from stdin]
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// List the sessions you can see, newest first.
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// Only sessions still running
        #[arg(long)]
        active: bool,
        /// Print the sessions as a JSON array
        #[arg(long)]
        json: bool,
    },
    /// Show one session: who runs what where, its clients and its transcript.
    Attach {
        #[command(flatten)]
        server: ServerArgs,
        /// Session id
        #[arg(value_name = "ID")]
        id: String,
        /// Print the session as JSON
        #[arg(long)]
        json: bool,
    },
}

/// `65536`, `64KiB`, `64MiB`, `1GiB` (also `K`/`KB`/`M`/`MB`/`G`/`GB`, all powers of 1024).
pub fn parse_size(text: &str) -> Result<usize, String> {
    match cmdop_protocol::parse_size(text)? {
        0 => Err("the buffer size must be at least 1 byte".into()),
        n => usize::try_from(n).map_err(|_| format!("`{}` is too large", text.trim())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_accept_bytes_and_binary_suffixes() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64KiB"), Ok(64 * 1024));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("2 mib"), Ok(2 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert!(parse_size("0").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("MiB").is_err());
    }

    #[test]
    fn record_takes_the_command_after_its_options() {
        let cli = Cli::try_parse_from(["cmdop", "record", "--headless", "--", "sh", "-c", "exit 3"]).unwrap();
        let Command::Record(args) = cli.command else { panic!() };
        assert!(args.headless);
        assert_eq!(args.command, ["sh", "-c", "exit 3"]);
        assert_eq!((args.cols, args.rows, args.buffer_size, args.flush_timeout), (80, 24, 64 << 20, 60));
        let cli = Cli::try_parse_from(["cmdop", "record", "ls", "-la"]).unwrap();
        let Command::Record(args) = cli.command else { panic!() };
        assert_eq!(args.command, ["ls", "-la"]);
    }
}
