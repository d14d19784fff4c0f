//! The `Host` check against DNS rebinding: a page on another site whose name an
//! attacker points at this server's address reaches it with that name as `Host`. Only
//! names this server is known by are served: the host of `web_ui.public_url`, those of
//! `web_ui.allowed_hosts`, `localhost`, and any IP address literal (a rebinding attack
//! needs a name). Everything else gets 421 Misdirected Request, naming the setting.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::HOST;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::Config;

/// The host names (lower case, no port) this server answers to, beside `localhost` and
/// IP literals.
#[derive(Debug, Clone, Default)]
pub(crate) struct AllowedHosts {
    names: Vec<String>,
}

impl AllowedHosts {
    pub(crate) fn from_config(config: &Config) -> AllowedHosts {
        let mut names: Vec<String> = config
            .web_ui
            .allowed_hosts
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
        if let Some(host) = config
            .web_ui
            .public_url
            .as_deref()
            .and_then(|u| url::Url::parse(u).ok())
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        {
            names.push(host);
        }
        AllowedHosts { names }
    }

    /// Whether a `Host` header value is one of ours.
    pub(crate) fn allows(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        // [v6]:port, [v6], name:port, name, v4:port, v4.
        let name = if let Some(rest) = host.strip_prefix('[') {
            match rest.split_once(']') {
                Some((v6, tail)) if tail.is_empty() || tail.starts_with(':') => {
                    return v6.parse::<std::net::Ipv6Addr>().is_ok();
                }
                _ => return false,
            }
        } else {
            match host.rsplit_once(':') {
                Some((n, port)) if port.bytes().all(|b| b.is_ascii_digit()) => n.to_string(),
                Some(_) => return false,
                None => host.clone(),
            }
        };
        let name = name.trim_end_matches('.');
        name.parse::<std::net::Ipv4Addr>().is_ok()
            || name == "localhost"
            || self.names.iter().any(|n| n.trim_end_matches('.') == name)
    }
}

/// The middleware: refuses a request whose `Host` is not one of ours (but `/healthz`,
/// which says nothing and is probed by load balancers under any name).
pub(crate) async fn check_host(
    State(allowed): State<Arc<AllowedHosts>>,
    req: Request,
    next: Next,
) -> Response {
    if req.uri().path() == "/healthz" {
        return next.run(req).await;
    }
    if let Some(host) = req.headers().get(HOST) {
        let ok = host.to_str().is_ok_and(|h| allowed.allows(h));
        if !ok {
            let shown = String::from_utf8_lossy(host.as_bytes())
                .chars()
                .take(100)
                .collect::<String>();
            return (
                StatusCode::MISDIRECTED_REQUEST,
                axum::Json(serde_json::json!({
                    "detail": format!(
                        "this server does not answer to the host name {shown:?}: add it to web_ui.allowed_hosts (or set web_ui.public_url) if it is this server's name"
                    )
                })),
            )
                .into_response();
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_ours_and_ip_literals_pass() {
        let mut c = Config::default();
        c.web_ui.public_url = Some("https://Sky.Example.org".into());
        c.web_ui.allowed_hosts = vec!["gpu-box".into()];
        let a = AllowedHosts::from_config(&c);
        for ok in [
            "sky.example.org",
            "SKY.example.org:443",
            "gpu-box:9189",
            "localhost:9189",
            "127.0.0.1:9189",
            "10.0.0.5",
            "[::1]:9189",
            "[fe80::1]",
        ] {
            assert!(a.allows(ok), "{ok} refused");
        }
        for bad in [
            "evil.example",
            "evil.example:9189",
            "sky.example.org.evil.example",
            "localhost.evil.example",
            "[::1]x",
            "127.0.0.1:port",
            "",
        ] {
            assert!(!a.allows(bad), "{bad} allowed");
        }
    }
}
