//! `skypilot-host policy`: SkyPilot's RESTful admin policy, as an HTTP endpoint.
//!
//! SkyPilot's config says `admin_policy: http://127.0.0.1:9190/v1/policy?token=…`;
//! SkyPilot then POSTs every launch (`sky launch`, `sky jobs launch`, `serve up`, the
//! API server's `/validate`, …) here before it acts, and takes back the task we return
//! (HTTP 200) or shows the user our text (HTTP 400, a refusal). What is changed and
//! refused: [`mutate`]. Prices: SkyPilot's own catalog files ([`catalog`]).
//!
//! - `POST /v1/policy?token=T`: the policy. A missing or wrong token is HTTP 403; a body
//!   larger than `policy.max_body_bytes` is 413; a request that cannot be read is 400
//!   with a message saying what was wrong.
//! - `GET /healthz`: `ok` while it serves (no token needed, nothing revealed).
//!
//! `skypilot-host policy sky-config IN OUT` writes SkyPilot's config with `admin_policy`
//! pointing here, token included, for the API server to read (mode 0400).

pub(crate) mod mutate;
pub(crate) mod token;

use crate::runner::Serving;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;

use crate::catalog::{Catalog, Prices};
use crate::config::Config;
use crate::launch_policy::LaunchPolicy;
use mutate::{Decision, Rules};
use token::Token;

/// Path of the policy on the listener.
pub(crate) const POLICY_PATH: &str = "/v1/policy";

/// Largest launch-policy file read.
const MAX_POLICY_BYTES: u64 = 1024 * 1024;

struct AppState {
    rules: Rules,
    prices: Arc<dyn Prices>,
    token: Token,
    max_body: usize,
}

/// Reads `launch-policy.json`; the error names the file and what is wrong.
pub(crate) fn load_launch_policy(path: &Path) -> anyhow::Result<LaunchPolicy> {
    let text = crate::files::read_regular_text(path, MAX_POLICY_BYTES).map_err(|e| {
        anyhow::anyhow!(
            "{}: cannot read the launch policy (policy.launch_policy): it {e}",
            path.display()
        )
    })?;
    let de = &mut serde_json::Deserializer::from_str(&text);
    let p: LaunchPolicy = serde_path_to_error::deserialize(de).map_err(|e| {
        anyhow::anyhow!(
            "{}: not a launch policy as `sky-config render` writes it: {}: {}",
            path.display(),
            e.path(),
            e.inner()
        )
    })?;
    if p.version != crate::launch_policy::POLICY_VERSION {
        anyhow::bail!(
            "{}: launch-policy version {}: this skypilot-host reads version {}",
            path.display(),
            p.version,
            crate::launch_policy::POLICY_VERSION
        );
    }
    if let Some(m) = p.max_hourly_price {
        if !(m.is_finite() && m > 0.0) {
            anyhow::bail!(
                "{}: max_hourly_price = {m}: expected a positive number",
                path.display()
            );
        }
    }
    if p.autostop_idle_minutes == Some(0) {
        anyhow::bail!(
            "{}: autostop_idle_minutes = 0: expected at least 1",
            path.display()
        );
    }
    Ok(p)
}

/// The policy's routes, for the server or a test.
pub(crate) fn router(rules: Rules, prices: Arc<dyn Prices>, token: Token, max_body: u64) -> Router {
    let state = Arc::new(AppState {
        rules,
        prices,
        token,
        max_body: usize::try_from(max_body).unwrap_or(usize::MAX),
    });
    Router::new()
        .route(POLICY_PATH, post(policy_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(state)
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

fn token_of(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
}

async fn policy_handler(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    body: Body,
) -> Response {
    let given = token_of(query.as_deref()).unwrap_or_default();
    if !state.token.matches(&given) {
        tracing::warn!(
            token_given = !given.is_empty(),
            "policy request refused: missing or wrong token"
        );
        return text(
            StatusCode::FORBIDDEN,
            format!(
                "forbidden: this admin-policy endpoint needs its token in the URL ({POLICY_PATH}?token=…, as `admin_policy` in SkyPilot's config carries it); the token {}\n",
                if given.is_empty() { "is missing" } else { "is wrong" }
            ),
        );
    }
    let bytes: Bytes = match axum::body::to_bytes(body, state.max_body).await {
        Ok(b) => b,
        Err(_) => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the request is larger than policy.max_body_bytes ({} bytes) or was cut off\n",
                    state.max_body
                ),
            )
        }
    };
    let st = state.clone();
    let outcome =
        tokio::task::spawn_blocking(move || decide(&st.rules, st.prices.as_ref(), &bytes)).await;
    match outcome {
        Ok(Ok((Decision::Accept { body, changes }, name))) => {
            tracing::info!(request = %name, changes = %changes.join("; "), "launch accepted");
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response()
        }
        Ok(Ok((Decision::Refuse(reason), name))) => {
            tracing::info!(request = %name, %reason, "launch refused");
            text(StatusCode::BAD_REQUEST, reason)
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "malformed policy request");
            text(
                StatusCode::BAD_REQUEST,
                format!("the admin-policy request cannot be read: {e}"),
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "the policy task failed");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the launch policy failed on this request; see the skypilot-policy log\n"
                    .to_string(),
            )
        }
    }
}

fn decide(
    rules: &Rules,
    prices: &dyn Prices,
    body: &[u8],
) -> Result<(Decision, String), mutate::Malformed> {
    let request = mutate::decode(body)?;
    let name = format!(
        "{}{}",
        request.request_name,
        if request.at_client_side {
            " (client side)"
        } else {
            ""
        }
    );
    Ok((mutate::apply(rules, prices, request)?, name))
}

/// Serves the policy on a bound listener until `shutdown` completes.
pub(crate) async fn serve(
    listener: TcpListener,
    config: &Config,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let p = &config.policy;
    let policy = load_launch_policy(&p.launch_policy)?;
    let token = token::load(&p.token_file, p.create_token)?;
    let rules = Rules {
        policy,
        controllers: p.controllers,
    };
    let app = router(
        rules,
        Arc::new(Catalog::new(&p.catalog_dir)),
        token,
        p.max_body_bytes,
    );
    crate::http::serve(listener, app, crate::http::Limits::default(), shutdown).await;
    Ok(())
}

/// The `policy` role: binds `policy.listen` and serves until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let addr = config.policy.listen;
    // Read everything before listening: a bad file fails the start, not a launch.
    load_launch_policy(&config.policy.launch_policy)?;
    token::load(&config.policy.token_file, config.policy.create_token)?;
    let listener = crate::runner::bind("policy.listen", addr).await?;
    tracing::info!(
        %addr,
        launch_policy = %config.policy.launch_policy.display(),
        catalog = %config.policy.catalog_dir.display(),
        controllers = config.policy.controllers,
        "launch policy serving {POLICY_PATH}"
    );
    let _serving = Serving::ready(&format!("serving the launch policy on {addr}"));
    serve(listener, &config, Serving::shutdown()).await?;
    tracing::info!("launch policy stopped");
    Ok(())
}

/// The URL SkyPilot's `admin_policy` gets, without the token: loopback when the policy
/// listens on a wildcard address.
pub(crate) fn policy_base_url(config: &Config) -> String {
    let addr = config.policy.listen;
    let host = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_string(),
        ip if ip.is_unspecified() => "[::1]".to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    format!("http://{host}:{}{POLICY_PATH}", addr.port())
}

/// `policy sky-config IN OUT`: SkyPilot's config IN (YAML or JSON) with `admin_policy`
/// set to this policy's URL and token, written to OUT (mode 0400, replaced atomically).
pub(crate) fn write_sky_config(
    config: &Config,
    input: &Path,
    output: &Path,
    token_file: Option<&Path>,
) -> anyhow::Result<()> {
    let token_path = token_file.unwrap_or(&config.policy.token_file);
    let token = token::load(token_path, config.policy.create_token)?;
    let mut value = crate::sky_config::read_config(input)?;
    let Some(map) = value.as_object_mut() else {
        anyhow::bail!(
            "{}: SkyPilot's config is not a mapping: expected the rendered config.yaml",
            input.display()
        );
    };
    if let Some(existing) = map.get("admin_policy") {
        anyhow::bail!(
            "{}: `admin_policy` is already set ({existing}): the launch policy sets it; remove it from the config",
            input.display()
        );
    }
    map.insert(
        "admin_policy".to_string(),
        serde_json::Value::String(format!(
            "{}?token={}",
            policy_base_url(config),
            token.as_str()
        )),
    );
    let yaml = crate::sky_config::yaml::to_yaml(
        &value,
        &format!(
            "SkyPilot config.yaml: {} with admin_policy set by `skypilot-host policy sky-config`.\n\
             It holds the policy's token: do not copy it anywhere readable by others.",
            input.display()
        ),
    );
    crate::files::write_atomic(output, yaml.as_bytes(), 0o400, crate::files::Place::Replace)
        .map_err(|e| anyhow::anyhow!("{}: cannot write: {e}", output.display()))?;
    println!(
        "{}: SkyPilot's config with admin_policy = {}?token=(from {})",
        output.display(),
        policy_base_url(config),
        token_path.display()
    );
    Ok(())
}
