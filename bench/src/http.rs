//! The few plain HTTP requests the bench makes (health check, session metadata, sign-in, session lists): HTTP/1.0
//! over a fresh TCP socket per request, so the server answers with a plain body and closes.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A whole response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// One request: `headers` are extra lines (`Name: value`), `body` is sent with its Content-Length.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[String],
    body: Option<&[u8]>,
) -> anyhow::Result<Response> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: */*\r\n");
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    if let Some(b) = body {
        request.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    stream.write_all(&bytes).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let head_end =
        response.windows(4).position(|w| w == b"\r\n\r\n").context("HTTP response without end of headers")?;
    let head = String::from_utf8_lossy(&response[..head_end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line in {head:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Response { status, headers, body: response[head_end + 4..].to_vec() })
}

/// GET `path`; returns the status and the body.
pub async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> anyhow::Result<(u16, Vec<u8>)> {
    let auth: Vec<String> = token.map(|t| format!("Authorization: Bearer {t}")).into_iter().collect();
    let r = request(addr, "GET", path, &auth, None).await?;
    Ok((r.status, r.body))
}

/// GET `path` as JSON; fails unless the status is 200.
pub async fn get_json(addr: SocketAddr, path: &str, token: &str) -> anyhow::Result<serde_json::Value> {
    let (status, body) = get(addr, path, Some(token)).await?;
    if status != 200 {
        bail!("GET {path}: {status} {}", String::from_utf8_lossy(&body));
    }
    Ok(serde_json::from_slice(&body)?)
}

/// Percent-encodes a query parameter value (everything but RFC 3986's unreserved characters).
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The total of a `Server-Timing` header in milliseconds: its `total` metric, else the largest `dur`.
pub fn server_timing_ms(value: &str) -> Option<f64> {
    let mut largest: Option<f64> = None;
    for metric in value.split(',') {
        let mut parts = metric.split(';').map(str::trim);
        let name = parts.next().unwrap_or_default();
        let dur = parts.find_map(|p| p.strip_prefix("dur=")).and_then(|d| d.trim_matches('"').parse::<f64>().ok());
        if let Some(d) = dur {
            if name.eq_ignore_ascii_case("total") {
                return Some(d);
            }
            largest = Some(largest.map_or(d, |l: f64| l.max(d)));
        }
    }
    largest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_percent_encoded() {
        assert_eq!(encode("a@b.test"), "a%40b.test");
        assert_eq!(encode("2026-01-02T03:04:05Z"), "2026-01-02T03%3A04%3A05Z");
        assert_eq!(encode("x+y/z="), "x%2By%2Fz%3D");
    }

    #[test]
    fn server_timing_is_read() {
        assert_eq!(server_timing_ms("db;dur=3.5, total;dur=7"), Some(7.0));
        assert_eq!(server_timing_ms("db;desc=\"x\";dur=3.5, app;dur=1"), Some(3.5));
        assert_eq!(server_timing_ms("miss"), None);
    }
}
