//! A minimal HTTP/1.1 client for the few JSON calls the load generator makes (create the
//! market, read a show's stock). One request per connection, `Connection: close`.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde::de::DeserializeOwned;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_secs(30);

/// Sends one request and returns the status and body text.
pub async fn raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<String>,
) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let body = body.unwrap_or_default();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut buf))
        .await
        .with_context(|| format!("{method} {path}: no response within {TIMEOUT:?}"))??;
    let text = String::from_utf8(buf).context("response is not UTF-8")?;
    let (head, payload) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("{method} {path}: malformed response"))?;
    // The server answers JSON with a Content-Length; a chunked body would need decoding.
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        bail!("{method} {path}: chunked responses are not supported");
    }
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("{method} {path}: no status in {head:?}"))?;
    Ok((status, payload.to_owned()))
}

/// Sends one request, requires status `want` and parses the JSON body.
pub async fn call<T: DeserializeOwned>(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<String>,
    want: u16,
) -> anyhow::Result<T> {
    let (status, text) = raw(addr, method, path, token, body).await?;
    if status != want {
        bail!("{method} {path}: status {status}, expected {want}: {text}");
    }
    serde_json::from_str(&text).with_context(|| format!("{method} {path}: unexpected body {text}"))
}
