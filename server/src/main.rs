use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use cmdop_inspector_server::config::{Cli, Command};
use cmdop_inspector_server::{AppState, admin, demo, serve};
use cmdop_store::SystemClock;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("CMDOP_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let url = cli.store.database_url();
    let store = cmdop_store::open(&url, Arc::new(SystemClock))
        .await
        .map_err(|e| anyhow::anyhow!("opening the store at {}: {e}", redact(&url)))?;
    match cli.command {
        Command::Admin(cmd) => {
            println!("{}", admin::run(&*store, cmd).await?);
            Ok(())
        }
        Command::Serve(args) => {
            if args.demo {
                let seeded = demo::seed(&*store).await?;
                let url = args.public_url.clone().unwrap_or_else(|| format!("http://{}", args.listen));
                eprintln!(
                    "\n  cmdop inspector demo {}\n  open      {url}/\n  sign in   {} / {}   (owner: sees everything)\n            {} / {}   (member: sees only web-1)\n",
                    if seeded.seeded_now { "seeded" } else { "(already seeded)" },
                    demo::DEMO_EMAIL,
                    demo::DEMO_PASSWORD,
                    demo::VIEWER_EMAIL,
                    demo::VIEWER_PASSWORD,
                );
            }
            tracing::info!("store: {}", redact(&url));
            let mut state = AppState::new(store, args.public_url.as_deref());
            state.recorder_grace = args.recorder_grace;
            serve(state, args.listen).await
        }
    }
}

/// The URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => match url[s + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
            None => url.to_string(),
        },
        _ => url.to_string(),
    }
}
