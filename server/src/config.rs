//! Command line and environment of `cmdop-inspector`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cmdop-inspector",
    version,
    about = "The cmdop sessions inspector: a read-only web window into terminal sessions"
)]
pub struct Cli {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the data lives. Shared by `serve` and every `admin` command.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Directory for the embedded SQLite database [default: $XDG_DATA_HOME/cmdop-inspector or
    /// ~/.local/share/cmdop-inspector]
    #[arg(long, env = "CMDOP_DATA_DIR", global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL: `postgres://...` for PostgreSQL, `sqlite://PATH` for SQLite [default: SQLite in the data dir]
    #[arg(long, env = "CMDOP_DATABASE_URL", global = true, value_name = "URL")]
    pub database_url: Option<String>,
}

impl StoreArgs {
    pub fn data_dir(&self) -> PathBuf {
        if let Some(d) = &self.data_dir {
            return d.clone();
        }
        let base = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local").join("share")))
            .unwrap_or_else(|| PathBuf::from("."));
        base.join("cmdop-inspector")
    }

    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir().join("inspector.db").display()),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the web server
    Serve(ServeArgs),
    /// Manage fleets, members, machines, grants and API tokens
    #[command(subcommand)]
    Admin(crate::admin::AdminCommand),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on
    #[arg(long, env = "CMDOP_LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    /// The URL people reach the inspector at; `https://...` makes cookies Secure
    #[arg(long, env = "CMDOP_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// How long a session waits for a recorder that vanished without an exit before it ends as
    /// `recorder_lost` (e.g. 5m, 90s)
    #[arg(long, env = "CMDOP_RECORDER_GRACE", default_value = "5m", value_parser = humantime::parse_duration)]
    pub recorder_grace: std::time::Duration,
    /// On first start, seed a demo fleet, login, machines and recorded sessions
    #[arg(long)]
    pub demo: bool,
}
