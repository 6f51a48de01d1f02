//! The runtime policy sent to a Keylime verifier, as `keylime_tenant -c
//! updateruntimepolicy` does (keylime/tenant.py, keylime/cloud_verifier_tornado.py
//! `AllowlistHandler`):
//!
//! - `PUT /v<api>/allowlists/<name>` with `{"runtime_policy": base64 of the
//!   policy JSON, "runtime_policy_key": "", "tpm_policy": "{}"}` replaces a
//!   named policy; the verifier answers 404 when there is none, then
//!   `POST` to the same path creates it (201 for both);
//! - `GET /v<api>/allowlists/<name>` gives it back in
//!   `results.runtime_policy` (a string, the JSON as sent).
//!
//! Over mutual TLS: the verifier's server certificate is checked against
//! `ca` (host name or IP address included) and the tenant's `client_cert`
//! and `client_key` prove who asks. HTTP/1.1 over OpenSSL's TLS (the
//! `openssl` crate the signing core already uses), one request per
//! connection: three requests per emerge do not need an HTTP client crate.
//!
//! `<policy>.pushed` records the SHA-256 of the policy the verifier last
//! accepted, so a push that finds nothing new sends nothing, and one that
//! follows a failed push catches up.

use std::path::PathBuf;
#[cfg(feature = "openssl")]
use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64ct::{Base64, Encoding};

use crate::settings::KeylimeConfig;

/// Where the policy goes, and how to prove who sends it.
#[derive(Debug, Clone)]
pub struct Verifier {
    /// The verifier's host name or address (IPv6 without brackets).
    pub host: String,
    /// The verifier's TCP port, 8881 (Keylime's default) unless the URL names one.
    pub port: u16,
    /// The REST API version put in the request path (`/v2.5/...`).
    pub api_version: String,
    /// The runtime policy's name on the verifier (`policy_name`, else the host name).
    pub name: String,
    /// The CA (PEM) the verifier's server certificate must chain to.
    pub ca: PathBuf,
    /// The tenant's client certificate (PEM) for mTLS.
    pub client_cert: PathBuf,
    /// The private key (PEM) of `client_cert`.
    pub client_key: PathBuf,
}

/// Keylime's default verifier port.
const DEFAULT_PORT: u16 = 8881;
/// The API version sent in the path (the verifier serves 2.0 to 2.6).
const DEFAULT_API: &str = "2.5";

impl Verifier {
    /// The verifier `[keylime]` names; `None` without `verifier`.
    pub fn from_config(config: &KeylimeConfig) -> Result<Option<Verifier>> {
        let Some(url) = &config.verifier else {
            return Ok(None);
        };
        let Some(rest) = url.strip_prefix("https://") else {
            bail!("[keylime] verifier = {url:?}: must start with https:// (Keylime speaks mTLS)");
        };
        let authority = rest.trim_end_matches('/');
        if authority.contains('/') {
            bail!("[keylime] verifier = {url:?}: give only https://HOST:PORT");
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (
                h.trim_start_matches('[').trim_end_matches(']').to_string(),
                p.parse::<u16>()
                    .with_context(|| format!("[keylime] verifier = {url:?}: bad port {p:?}"))?,
            ),
            _ => (authority.to_string(), DEFAULT_PORT),
        };
        let need = |value: &Option<PathBuf>, key: &str| {
            value.clone().ok_or_else(|| {
                anyhow::anyhow!(
                    "[keylime] verifier is set but {key} is not: the verifier only talks to \
                     a tenant with a client certificate (mTLS); set {key} = \"/path\""
                )
            })
        };
        Ok(Some(Verifier {
            host,
            port,
            api_version: config
                .api_version
                .clone()
                .unwrap_or_else(|| DEFAULT_API.into()),
            name: config.name(),
            ca: need(&config.ca, "ca")?,
            client_cert: need(&config.client_cert, "client_cert")?,
            client_key: need(&config.client_key, "client_key")?,
        }))
    }

    fn path(&self) -> String {
        let name: String = self
            .name
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        format!("/v{}/allowlists/{name}", self.api_version)
    }

    /// Sends `policy` (the JSON bytes) under the configured name.
    pub fn push(&self, policy: &[u8]) -> Result<()> {
        let body = serde_json::json!({
            "runtime_policy": Base64::encode_string(policy),
            "runtime_policy_key": "",
            "tpm_policy": "{}",
        })
        .to_string();
        let mut reply = self.request("PUT", &body)?;
        if reply.status == 404 {
            reply = self.request("POST", &body)?;
        }
        if !(200..300).contains(&reply.status) {
            bail!(
                "the verifier at {}:{} refused the runtime policy {:?}: HTTP {} {}",
                self.host,
                self.port,
                self.name,
                reply.status,
                reply.message()
            );
        }
        Ok(())
    }

    /// The policy the verifier holds under the name; `None` when it has none.
    pub fn fetch(&self) -> Result<Option<String>> {
        let reply = self.request("GET", "")?;
        match reply.status {
            404 => Ok(None),
            200 => {
                let json: serde_json::Value = serde_json::from_slice(&reply.body)
                    .context("the verifier's answer is not JSON")?;
                Ok(json["results"]["runtime_policy"]
                    .as_str()
                    .map(str::to_string))
            }
            status => bail!(
                "the verifier at {}:{} answered HTTP {status} {} for the runtime policy {:?}",
                self.host,
                self.port,
                reply.message(),
                self.name
            ),
        }
    }

    #[cfg(not(feature = "openssl"))]
    fn request(&self, _method: &str, _body: &str) -> Result<Reply> {
        bail!("this portage-ima was built without the openssl feature: it cannot reach a verifier over TLS")
    }

    #[cfg(feature = "openssl")]
    fn request(&self, method: &str, body: &str) -> Result<Reply> {
        use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode};
        use std::io::{Read, Write};
        use std::net::ToSocketAddrs;
        let tls = || -> Result<SslConnector> {
            let mut b = SslConnector::builder(SslMethod::tls_client())?;
            b.set_ca_file(&self.ca)
                .with_context(|| format!("cannot load the CA {}", self.ca.display()))?;
            b.set_certificate_chain_file(&self.client_cert)
                .with_context(|| {
                    format!(
                        "cannot load the client certificate {}",
                        self.client_cert.display()
                    )
                })?;
            b.set_private_key_file(&self.client_key, SslFiletype::PEM)
                .with_context(|| {
                    format!("cannot load the client key {}", self.client_key.display())
                })?;
            b.check_private_key()
                .context("the client key does not match its certificate")?;
            b.set_verify(SslVerifyMode::PEER);
            Ok(b.build())
        };
        let connector = tls()?;
        let where_ = format!("{}:{}", self.host, self.port);
        let addr = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve {}", self.host))?
            .next()
            .with_context(|| format!("{} has no address", self.host))?;
        let tcp = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .with_context(|| format!("cannot reach the verifier at {where_}"))?;
        tcp.set_read_timeout(Some(Duration::from_secs(60)))?;
        tcp.set_write_timeout(Some(Duration::from_secs(60)))?;
        let mut stream = connector
            .connect(&self.host, tcp)
            .map_err(|e| anyhow::anyhow!("TLS with the verifier at {where_} failed: {e}"))?;
        let host = if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            where_.clone()
        };
        // A GET carries no body, and no Content-Type: the verifier would
        // try to parse the empty body as JSON (HTTP 400).
        let content = if body.is_empty() {
            String::new()
        } else {
            format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            )
        };
        let head = format!(
            "{method} {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: portage-ima\r\n\
             Accept: application/json\r\n{content}Connection: close\r\n\r\n",
            self.path(),
        );
        stream.write_all(head.as_bytes())?;
        stream.write_all(body.as_bytes())?;
        stream.flush()?;
        let mut raw = Vec::new();
        // A verifier that closes without close_notify still sent its answer.
        if let Err(e) = stream.read_to_end(&mut raw) {
            if raw.is_empty() {
                return Err(e).with_context(|| format!("no answer from the verifier at {where_}"));
            }
        }
        Reply::parse(&raw).with_context(|| format!("bad HTTP answer from the verifier at {where_}"))
    }
}

/// An HTTP answer.
#[derive(Debug)]
struct Reply {
    status: u16,
    body: Vec<u8>,
}

impl Reply {
    #[cfg_attr(not(feature = "openssl"), allow(dead_code))]
    fn parse(raw: &[u8]) -> Result<Reply> {
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .context("no end of headers")?;
        let head = std::str::from_utf8(&raw[..end]).context("headers are not text")?;
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .context("no status line")?;
        let mut chunked = false;
        for line in lines {
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("transfer-encoding")
                    && v.trim().eq_ignore_ascii_case("chunked")
                {
                    chunked = true;
                }
            }
        }
        let rest = &raw[end + 4..];
        let body = if chunked {
            dechunk(rest)?
        } else {
            rest.to_vec()
        };
        Ok(Reply { status, body })
    }

    /// Keylime's `status` text from the JSON body, or the body itself.
    fn message(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|j| j["status"].as_str().map(str::to_string))
            .unwrap_or_else(|| {
                String::from_utf8_lossy(&self.body)
                    .chars()
                    .take(200)
                    .collect()
            })
    }
}

#[cfg_attr(not(feature = "openssl"), allow(dead_code))]
fn dechunk(mut data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("bad chunk")?;
        let size = std::str::from_utf8(&data[..line_end])?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .context("bad chunk size")?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(data.get(..size).context("truncated chunk")?);
        data = data.get(size + 2..).context("truncated chunk")?;
    }
}

/// The SHA-256 of `policy`, as `<policy>.pushed` records it.
pub fn checksum(policy: &[u8]) -> String {
    let provider = ima_core::default_provider();
    ima_core::digest_bytes(provider, policy, ima_core::HashAlgo::Sha256)
        .map(hex::encode)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies() {
        let r = Reply::parse(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (201, b"{}".as_slice()));
        let r = Reply::parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, b"{}");
    }

    #[test]
    fn urls() {
        let config = KeylimeConfig {
            verifier: Some("https://127.0.0.1:18881/".into()),
            ca: Some("/ca".into()),
            client_cert: Some("/c".into()),
            client_key: Some("/k".into()),
            policy_name: Some("a b".into()),
            ..Default::default()
        };
        let v = Verifier::from_config(&config).unwrap().unwrap();
        assert_eq!((v.host.as_str(), v.port), ("127.0.0.1", 18881));
        assert_eq!(v.path(), "/v2.5/allowlists/a%20b");
        let plain = KeylimeConfig {
            verifier: Some("http://x".into()),
            ..config
        };
        assert!(Verifier::from_config(&plain).is_err());
    }
}
