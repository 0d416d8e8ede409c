//! `cmdop-inspector admin ...`: set up fleets, members, machines, grants and API tokens from the shell.

use clap::Subcommand;
use cmdop_store::{NewMember, Role, Store, StoreError, secrets};

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Fleets
    #[command(subcommand)]
    Fleet(FleetCommand),
    /// Members (people and bots)
    #[command(subcommand)]
    Member(MemberCommand),
    /// Machines
    #[command(subcommand)]
    Machine(MachineCommand),
    /// Let a member see (and record on) one machine of a fleet
    Grant { email: String, fleet: String, machine: String },
    /// API tokens
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Create a fleet
    Create { name: String },
    /// List fleets
    List,
    /// Change a fleet's settings
    Set {
        name: String,
        /// Ring buffer size of each session's stored transcript (e.g. 8MiB, 512KiB, 1048576); the oldest output
        /// beyond it is dropped and counted as truncated
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        transcript_limit: Option<i64>,
    },
}

/// Bytes with an optional binary suffix: 4096, 512KiB, 8MiB, 1GiB.
pub fn parse_size(s: &str) -> Result<i64, String> {
    match cmdop_protocol::parse_size(s)? {
        0 => Err(format!("{s:?} must be a positive size")),
        n => i64::try_from(n).map_err(|_| format!("{s:?} is too large")),
    }
}

#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Add a member. Without --password a person gets a generated one, printed once; bots get none (they use
    /// API tokens).
    Add {
        email: String,
        /// Password for signing in to the cabinet (at least 8 characters)
        #[arg(long, env = "CMDOP_MEMBER_PASSWORD")]
        password: Option<String>,
        /// Display name [default: the part of the email before @]
        #[arg(long)]
        name: Option<String>,
        /// The member is a bot
        #[arg(long)]
        bot: bool,
    },
    /// Make a member part of a fleet with a role
    Join {
        email: String,
        fleet: String,
        /// owner, admin or member (members see only machines they are granted)
        #[arg(long)]
        role: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum MachineCommand {
    /// Add a machine to a fleet
    Add { fleet: String, name: String },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token for a member; it is printed once and stored only as a digest
    Create {
        email: String,
        /// What the token is for
        #[arg(long, default_value = "api")]
        name: String,
    },
}

/// Runs one admin command; returns what to print.
pub async fn run(store: &dyn Store, command: AdminCommand) -> Result<String, StoreError> {
    match command {
        AdminCommand::Fleet(FleetCommand::Create { name }) => {
            let fleet = store.create_fleet(&name).await?;
            Ok(format!("created fleet {:?} ({})", fleet.name, fleet.id))
        }
        AdminCommand::Fleet(FleetCommand::List) => {
            let fleets = store.list_fleets().await?;
            if fleets.is_empty() {
                return Ok("no fleets yet: create one with `admin fleet create NAME`".into());
            }
            Ok(fleets
                .iter()
                .map(|f| {
                    format!(
                        "{}\t{}\tretention {} days\ttranscript limit {} bytes",
                        f.name, f.id, f.retention_days, f.transcript_limit_bytes
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"))
        }
        AdminCommand::Fleet(FleetCommand::Set { name, transcript_limit }) => {
            let fleet = store.fleet_by_name(&name).await?;
            let Some(limit) = transcript_limit else {
                return Err(StoreError::invalid(
                    "transcript_limit",
                    "say what to change, e.g. --transcript-limit 8MiB",
                ));
            };
            store.set_transcript_limit(fleet.id, limit).await?;
            Ok(format!("fleet {:?}: transcript limit {limit} bytes", fleet.name))
        }
        AdminCommand::Member(MemberCommand::Add { email, password, name, bot }) => {
            let (password, generated) = match (password, bot) {
                (Some(p), _) => {
                    if p.chars().count() < secrets::MIN_PASSWORD_LEN {
                        return Err(StoreError::invalid(
                            "password",
                            format!("must be at least {} characters", secrets::MIN_PASSWORD_LEN),
                        ));
                    }
                    (Some(p), false)
                }
                (None, true) => (None, false),
                (None, false) => (Some(secrets::new_token("pw").0[3..23].to_string()), true),
            };
            let password_hash = password.as_deref().map(secrets::hash_password);
            let member = store
                .create_member(NewMember { email, display_name: name.unwrap_or_default(), password_hash, is_bot: bot })
                .await?;
            let kind = if bot { "bot" } else { "member" };
            let mut out = format!("added {kind} {} ({})", member.email, member.id);
            if generated {
                out.push_str(&format!("\npassword (shown once): {}", password.unwrap()));
            }
            Ok(out)
        }
        AdminCommand::Member(MemberCommand::Join { email, fleet, role }) => {
            let role = Role::parse(&role)?;
            let member = store.member_by_email(&email).await?;
            let fleet = store.fleet_by_name(&fleet).await?;
            store.add_fleet_member(fleet.id, member.id, role).await?;
            Ok(format!("{} joined fleet {:?} as {}", member.email, fleet.name, role.as_str()))
        }
        AdminCommand::Machine(MachineCommand::Add { fleet, name }) => {
            let fleet = store.fleet_by_name(&fleet).await?;
            let machine = store.create_machine(fleet.id, &name).await?;
            Ok(format!("added machine {:?} to fleet {:?} ({})", machine.name, fleet.name, machine.id))
        }
        AdminCommand::Grant { email, fleet, machine } => {
            let member = store.member_by_email(&email).await?;
            let fleet = store.fleet_by_name(&fleet).await?;
            let machine = store.machine_by_name(fleet.id, &machine).await?;
            store.grant_machine(machine.id, member.id).await?;
            Ok(format!("{} may now see machine {:?} of fleet {:?}", member.email, machine.name, fleet.name))
        }
        AdminCommand::Token(TokenCommand::Create { email, name }) => {
            let member = store.member_by_email(&email).await?;
            let (token, digest) = secrets::new_token("cmdop");
            store.create_api_token(member.id, &name, &digest).await?;
            Ok(format!("API token for {} (shown once, store it now):\n{token}", member.email))
        }
    }
}
