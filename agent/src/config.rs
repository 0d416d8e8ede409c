//! Where the server and token come from: flag, then environment, then the credentials file `cmdop login` wrote.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

pub const SERVER_ENV: &str = "CMDOP_SERVER";
pub const TOKEN_ENV: &str = "CMDOP_TOKEN";
pub const CONFIG_DIR_ENV: &str = "CMDOP_CONFIG_DIR";

/// What `cmdop login` saves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub server: String,
    pub token: String,
}

/// The server to talk to and the token to use, with where each came from (for error messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `http(s)://host[:port][/prefix]`, without a trailing slash.
    pub server: String,
    pub token: String,
    pub token_source: String,
}

impl Target {
    /// `{server}{path}`, `path` starting with `/`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server)
    }

    /// The WebSocket URL of the ingest endpoint.
    pub fn ingest_url(&self) -> String {
        let ws = if let Some(rest) = self.server.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = self.server.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            self.server.clone()
        };
        format!("{ws}/api/v1/ingest?protocol={}", cmdop_protocol::ingest::INGEST_PROTOCOL_VERSION)
    }
}

/// Checks a server URL and drops any trailing slash. `what` names where it came from.
pub fn normalize_server(url: &str, what: &str) -> anyhow::Result<String> {
    let url = url.trim().trim_end_matches('/');
    let Some((scheme, rest)) = url.split_once("://") else {
        bail!("{what}: `{url}` is not a URL; expected http(s)://host[:port]");
    };
    if !matches!(scheme, "http" | "https" | "ws" | "wss") || rest.is_empty() {
        bail!("{what}: `{url}` is not an http(s):// URL");
    }
    if rest.contains(['?', '#']) {
        bail!("{what}: `{url}` must not have a query or fragment");
    }
    // http for the API; the ingest URL is derived from it.
    Ok(match scheme {
        "ws" => format!("http://{rest}"),
        "wss" => format!("https://{rest}"),
        _ => url.to_string(),
    })
}

/// The directory holding `credentials.json`.
pub fn config_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = env_var(CONFIG_DIR_ENV) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = env_var("XDG_CONFIG_HOME") {
        return Ok(Path::new(&dir).join("cmdop"));
    }
    match env_var("HOME") {
        Some(home) => Ok(Path::new(&home).join(".config").join("cmdop")),
        None => bail!("cannot tell where to keep credentials: set {CONFIG_DIR_ENV}, XDG_CONFIG_HOME or HOME"),
    }
}

pub fn credentials_path() -> anyhow::Result<PathBuf> {
    Ok(config_dir()?.join("credentials.json"))
}

/// The saved credentials, if `cmdop login` saved any.
pub fn load_credentials() -> anyhow::Result<Option<(PathBuf, Credentials)>> {
    let path = credentials_path()?;
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let credentials = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid credentials JSON; run `cmdop login` again", path.display()))?;
    Ok(Some((path, credentials)))
}

/// Writes the credentials readable by the owner only (the file holds a token).
pub fn save_credentials(credentials: &Credentials) -> anyhow::Result<PathBuf> {
    let path = credentials_path()?;
    let dir = path.parent().expect("credentials path has a parent");
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = dir.join(".credentials.json.tmp");
    let _ = fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    let json = serde_json::to_string_pretty(credentials)?;
    file.write_all(json.as_bytes()).and_then(|()| file.write_all(b"\n")).and_then(|()| file.sync_all())?;
    fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Server and token: flag, then environment, then the credentials file.
pub fn resolve(server_flag: Option<&str>, token_flag: Option<&str>) -> anyhow::Result<Target> {
    let saved = load_credentials()?;
    resolve_from(server_flag, token_flag, env_var(SERVER_ENV), env_var(TOKEN_ENV), saved)
}

fn resolve_from(
    server_flag: Option<&str>,
    token_flag: Option<&str>,
    server_env: Option<String>,
    token_env: Option<String>,
    saved: Option<(PathBuf, Credentials)>,
) -> anyhow::Result<Target> {
    let server = match (server_flag, &server_env, &saved) {
        (Some(s), _, _) => normalize_server(s, "--server")?,
        (None, Some(s), _) => normalize_server(s, SERVER_ENV)?,
        (None, None, Some((path, c))) => normalize_server(&c.server, &path.display().to_string())?,
        (None, None, None) => {
            bail!("no server given: pass --server URL, set {SERVER_ENV}, or run `cmdop login --server URL` once")
        }
    };
    let (token, token_source) = match (token_flag, token_env, saved) {
        (Some(t), _, _) => (t.to_string(), "--token".to_string()),
        (None, Some(t), _) => (t, TOKEN_ENV.to_string()),
        (None, None, Some((path, c))) => {
            // Never hand a saved token to a different server than the one it was saved for.
            let saved_server = normalize_server(&c.server, &path.display().to_string())?;
            if saved_server != server {
                bail!(
                    "the token saved in {} is for {saved_server}, not {server}: pass --token, set {TOKEN_ENV}, or run \
                     `cmdop login --server {server}`",
                    path.display()
                );
            }
            (c.token, path.display().to_string())
        }
        (None, None, None) => {
            bail!("no token given: pass --token TOKEN, set {TOKEN_ENV}, or run `cmdop login --server {server}` once")
        }
    };
    if token.trim().is_empty() {
        bail!("the token from {token_source} is empty");
    }
    Ok(Target { server, token: token.trim().to_string(), token_source })
}

/// An environment variable, treating empty as unset.
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(server: &str) -> Option<(PathBuf, Credentials)> {
        Some((PathBuf::from("/c/credentials.json"), Credentials { server: server.into(), token: "saved".into() }))
    }

    #[test]
    fn flags_beat_environment_beat_the_credentials_file() {
        let t =
            resolve_from(Some("http://a/"), Some("f"), Some("http://b".into()), Some("e".into()), saved("http://c"))
                .unwrap();
        assert_eq!((t.server.as_str(), t.token.as_str(), t.token_source.as_str()), ("http://a", "f", "--token"));
        let t = resolve_from(None, None, Some("http://b".into()), Some("e".into()), saved("http://c")).unwrap();
        assert_eq!((t.server.as_str(), t.token.as_str()), ("http://b", "e"));
        let t = resolve_from(None, None, None, None, saved("https://c/x/")).unwrap();
        assert_eq!((t.server.as_str(), t.token.as_str()), ("https://c/x", "saved"));
        assert_eq!(t.ingest_url(), "wss://c/x/api/v1/ingest?protocol=1");
    }

    #[test]
    fn missing_or_mismatched_settings_say_how_to_fix_them() {
        let e = resolve_from(None, None, None, None, None).unwrap_err().to_string();
        assert!(e.contains("--server") && e.contains(SERVER_ENV) && e.contains("cmdop login"), "{e}");
        let e = resolve_from(Some("http://a"), None, None, None, None).unwrap_err().to_string();
        assert!(e.contains("--token") && e.contains(TOKEN_ENV), "{e}");
        let e = resolve_from(Some("http://other"), None, None, None, saved("http://c")).unwrap_err().to_string();
        assert!(e.contains("is for http://c"), "{e}");
        let e = resolve_from(Some("ftp://x"), Some("t"), None, None, None).unwrap_err().to_string();
        assert!(e.starts_with("--server"), "{e}");
    }

    #[test]
    fn ws_urls_are_accepted_as_servers() {
        assert_eq!(normalize_server("ws://h:3000/", "x").unwrap(), "http://h:3000");
        let t = Target { server: "http://h:3000".into(), token: "t".into(), token_source: "x".into() };
        assert_eq!(t.ingest_url(), "ws://h:3000/api/v1/ingest?protocol=1");
        assert_eq!(t.url("/api/v1/auth/me"), "http://h:3000/api/v1/auth/me");
    }
}
