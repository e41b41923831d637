//! The load generator's HTTP client for its few JSON calls (create the market, read a show's
//! stock, publish to nchan, probe for readiness): one pooled `reqwest` client for the process,
//! so the nchan publisher reuses its connection the way a seller keeps its WebSocket, and the
//! fan-out figures measure the server, not a TCP handshake per event. Plain HTTP: every target
//! is a socket address.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Client, Method};
use serde::de::DeserializeOwned;

/// Longest one request may take, answer included.
const TIMEOUT: Duration = Duration::from_secs(30);
/// A readiness probe polls a port nothing may listen on yet; a refused or silent connect
/// should fail fast so the probe tries again.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The process's client, built on first use. Its pool outlives any one runtime; a pooled
/// connection whose runtime is gone is dropped by the pool and the request retried on a new one.
fn client() -> anyhow::Result<&'static Client> {
    static CLIENT: OnceLock<Result<Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            // reqwest is built without a crypto provider of its own; rustls needs one installed
            // for the process (installing it twice is harmless), the same one the server uses.
            let _ = rustls::crypto::ring::default_provider().install_default();
            Client::builder()
                .timeout(TIMEOUT)
                .connect_timeout(CONNECT_TIMEOUT)
                // A redirect would send the operator token elsewhere; the API never redirects.
                .redirect(reqwest::redirect::Policy::none())
                // Targets are on this machine or the benchmark network, never behind a proxy.
                .no_proxy()
                .tcp_nodelay(true)
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| anyhow!("building the HTTP client: {e}"))
}

/// Sends one request and returns the status and body text.
pub async fn raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<String>,
) -> anyhow::Result<(u16, String)> {
    let verb = Method::from_bytes(method.as_bytes())
        .with_context(|| format!("{method:?} is not an HTTP method"))?;
    let mut req = client()?.request(verb, format!("http://{addr}{path}"));
    if let Some(token) = token {
        req = req.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    if let Some(body) = body {
        req = req.header(CONTENT_TYPE, "application/json").body(body);
    }
    let response = req
        .send()
        .await
        .with_context(|| format!("{method} {path} on {addr}"))?;
    let status = response.status().as_u16();
    let text = response
        .text()
        .await
        .with_context(|| format!("{method} {path}: reading the answer"))?;
    Ok((status, text))
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
