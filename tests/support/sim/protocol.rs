//! Serving SkyPilot's REST protocol: the request model (`POST /<op>` answers `null` and a
//! request id, `GET /api/get` the payload), `/api/health`, the version check, service
//! account tokens, and FastAPI's validation errors.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Serialize;
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use super::faults::http_fault_answer;
use super::operations::{error_json, execute, Op};
use super::{
    new_request_id, py_repr, FinishedRequest, LoggedRequest, Shared, Simulator, StoredRequest,
    ANSI_RESET, ANSI_YELLOW, API_VERSION, COMMIT, KEPT_BYTES, KEPT_REQUESTS,
    MIN_COMPATIBLE_API_VERSION, MIN_COMPATIBLE_VERSION, PICKLED_STANDIN, VERSION,
};

/// Accept connections until aborted. Connections live in a JoinSet owned by this task,
/// so aborting it closes them all, like a killed server.
pub(super) async fn serve(listener: TcpListener, app: Router) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let svc = hyper_util::service::TowerToHyperService::new(app.clone());
                conns.spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, svc)
                        .await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

pub(super) fn router(shared: Arc<Shared>) -> Router {
    let mut r = Router::new()
        .route("/api/health", get(health))
        .route("/api/get", get(api_get));
    for op in Op::ALL {
        r = r.route(
            op.path(),
            post(
                move |st: State<Arc<Shared>>, headers: HeaderMap, body: Bytes| {
                    run_op(st, op, headers, body)
                },
            ),
        );
    }
    r.fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(shared.clone(), front))
        .with_state(shared)
}

fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"null".to_vec());
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        bytes,
    )
        .into_response()
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// What every request passes first: the request log, faults, the version check, and the
/// headers the real server adds to every answer.
async fn front(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let is_op_post = req.method() == Method::POST && Op::from_path(&path).is_some();
    let (faults, service_accounts) = {
        let mut st = shared.lock();
        if !is_op_post {
            // Ops are logged by their handler, with their body and request id.
            st.log.push(LoggedRequest {
                method: req.method().to_string(),
                path: path.clone(),
                op: None,
                request_id: None,
                body: Value::Null,
                api_version_header: header_str(req.headers(), "x-skypilot-api-version"),
                authorization: header_str(req.headers(), "authorization"),
            });
        }
        (
            st.take_http_faults(&path),
            st.service_account_tokens.clone(),
        )
    };
    if let Some(resp) = http_fault_answer(&faults).await {
        return resp;
    }

    if let Some(detail) = bearer_rejection(req.headers(), service_accounts.as_deref()) {
        let mut resp = json_response(StatusCode::UNAUTHORIZED, &json!({"detail": detail}));
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        add_request_id(resp.headers_mut());
        return resp;
    }

    // The version check of SkyPilot's APIVersionMiddleware: only when the client sends
    // both headers; a non-integer API version is an unhandled ValueError (HTTP 500,
    // plain-text traceback, no request id).
    let api = header_str(req.headers(), "x-skypilot-api-version");
    let client_version = header_str(req.headers(), "x-skypilot-version");
    let mut versioned = false;
    if let (Some(api), Some(client_version)) = (api, client_version) {
        match api.trim().parse::<i64>() {
            Err(_) => {
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                    format!(
                        "Traceback (most recent call last):\n  ...\nValueError: Header \
                         X-SkyPilot-API-Version: {api} is not a valid API version.\n"
                    ),
                )
                    .into_response();
            }
            Ok(n) if n < MIN_COMPATIBLE_API_VERSION => {
                let message = format!(
                    "{ANSI_YELLOW}Your SkyPilot client version is too old:{client_version}\n\
                     {ANSI_RESET}The server is running on {VERSION} and the minimum \
                     compatible version is {MIN_COMPATIBLE_VERSION}.\nUpgrade your client \
                     with:\n{ANSI_YELLOW}pip install -U \"skypilot=={VERSION}\"{ANSI_RESET}"
                );
                let mut resp = json_response(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": "version_mismatch", "message": message}),
                );
                add_version_headers(resp.headers_mut());
                add_request_id(resp.headers_mut());
                return resp;
            }
            Ok(_) => versioned = true,
        }
    }
    let mut resp = next.run(req).await;
    if resp.status() == StatusCode::METHOD_NOT_ALLOWED {
        // FastAPI's 405 has a JSON body (axum's is empty); keep the Allow header.
        let allow = resp.headers().get(header::ALLOW).cloned();
        resp = json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"detail": "Method Not Allowed"}),
        );
        if let Some(a) = allow {
            resp.headers_mut().insert(header::ALLOW, a);
        }
    }
    if versioned {
        add_version_headers(resp.headers_mut());
    }
    add_request_id(resp.headers_mut());
    resp
}

/// SkyPilot's BearerTokenMiddleware (it runs before the version check): only requests
/// that carry `X-Skypilot-Auth-Mode: token` or a `Bearer sky_…` token are checked.
fn bearer_rejection(headers: &HeaderMap, tokens: Option<&[String]>) -> Option<&'static str> {
    let token_mode = header_str(headers, "x-skypilot-auth-mode").as_deref() == Some("token");
    let auth = header_str(headers, "authorization");
    let sky_bearer = auth.as_deref().is_some_and(|a| {
        a.to_ascii_lowercase().starts_with("bearer ")
            && a.split_once(' ')
                .is_some_and(|(_, t)| t.starts_with("sky_"))
    });
    if !token_mode && !sky_bearer {
        return None;
    }
    let Some(auth) = auth else {
        return Some("Authentication required");
    };
    let (scheme, token) = auth.split_once(' ').unwrap_or((auth.as_str(), ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Some("Invalid authentication method");
    }
    match tokens {
        None => Some("Service account authentication disabled"),
        Some(ok) if ok.iter().any(|t| t == token) => None,
        Some(_) => Some("Invalid or expired service account token"),
    }
}

fn add_version_headers(h: &mut HeaderMap) {
    h.insert("x-skypilot-api-version", HeaderValue::from(API_VERSION));
    h.insert("x-skypilot-version", HeaderValue::from_static(VERSION));
}

/// The real server puts a fresh request id on every answer, even `/api/health`.
fn add_request_id(h: &mut HeaderMap) {
    if !h.contains_key("x-skypilot-request-id") {
        if let Ok(v) = HeaderValue::from_str(&new_request_id()) {
            h.insert("x-skypilot-request-id", v);
        }
    }
}

/// FastAPI's answer for an unknown path.
async fn not_found() -> Response {
    json_response(StatusCode::NOT_FOUND, &json!({"detail": "Not Found"}))
}

async fn health(State(shared): State<Arc<Shared>>) -> Response {
    let mut body = json!({
        "status": "healthy",
        "api_version": API_VERSION.to_string(),
        "version": VERSION,
        "version_on_disk": VERSION,
        "commit": COMMIT,
        "basic_auth_enabled": false,
        "user": null,
        "service_account_token_enabled": false,
        "ingress_basic_auth_enabled": false,
        "latest_version": null,
        "external_proxy_auth_enabled": true,
        "telemetry_enabled": false,
        "restrict_config_to_admins": true,
    });
    let (overrides, service_accounts) = {
        let st = shared.lock();
        (
            st.health_overrides.clone(),
            st.service_account_tokens.is_some(),
        )
    };
    if let Value::Object(m) = &mut body {
        m.insert(
            "service_account_token_enabled".into(),
            Value::Bool(service_accounts),
        );
        for (k, v) in overrides {
            m.insert(k, v);
        }
    }
    json_response(StatusCode::OK, &body)
}

#[derive(Serialize)]
struct PayloadOut<'a> {
    request_id: &'a str,
    name: &'a str,
    entrypoint: &'a str,
    request_body: &'a str,
    status: &'a str,
    created_at: f64,
    user_id: &'a str,
    return_value: &'a str,
    error: &'a str,
    pid: i64,
    schedule_type: &'a str,
    user_name: Option<&'a str>,
    cluster_name: Option<&'a str>,
    status_msg: Option<&'a str>,
    should_retry: bool,
    finished_at: f64,
    file_mounts_blob_id: Option<&'a str>,
}

impl StoredRequest {
    fn payload(&self) -> PayloadOut<'_> {
        PayloadOut {
            request_id: &self.request_id,
            name: self.op.request_name(),
            entrypoint: PICKLED_STANDIN,
            request_body: PICKLED_STANDIN,
            status: if self.failed { "FAILED" } else { "SUCCEEDED" },
            created_at: self.created_at,
            user_id: super::SERVER_USER_ID,
            return_value: &self.return_value,
            error: &self.error,
            pid: 4242,
            schedule_type: if self.op == Op::Start {
                "long"
            } else {
                "short"
            },
            user_name: None,
            cluster_name: self.cluster_name.as_deref(),
            status_msg: None,
            should_retry: false,
            finished_at: self.finished_at,
            file_mounts_blob_id: None,
        }
    }
}

#[derive(serde::Deserialize)]
struct GetQuery {
    request_id: Option<String>,
}

async fn api_get(State(shared): State<Arc<Shared>>, Query(q): Query<GetQuery>) -> Response {
    let Some(id) = q.request_id else {
        return json_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!({"detail": [{"type": "missing", "loc": ["query", "request_id"],
                                "msg": "Field required", "input": null}]}),
        );
    };
    let st = shared.lock();
    // The real server resolves a unique prefix of the id.
    let exact = st.requests.iter().find(|r| r.request_id == id);
    let found = match exact {
        Some(r) => Some(r),
        None => {
            let matches: Vec<&FinishedRequest> = st
                .requests
                .iter()
                .filter(|r| r.request_id.starts_with(&id))
                .collect();
            if matches.len() > 1 {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    &json!({"detail": format!("Multiple requests found for request ID prefix: {id}")}),
                );
            }
            matches.into_iter().next()
        }
    };
    match found {
        None => json_response(
            StatusCode::NOT_FOUND,
            &json!({"detail": format!("Request {} not found", py_repr(&id))}),
        ),
        Some(r) => {
            let code = if r.failed {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::OK
            };
            (
                code,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                r.answer.clone(),
            )
                .into_response()
        }
    }
}

/// FastAPI's 422 for a body that does not validate.
fn validation_error(kind: &str, loc: Vec<Value>, msg: &str, input: Value) -> Response {
    json_response(
        StatusCode::UNPROCESSABLE_ENTITY,
        &json!({"detail": [{"type": kind, "loc": loc, "msg": msg, "input": input}]}),
    )
}

enum FieldKind {
    Str,
    Int,
    Bool,
    /// `Optional[Union[str, List[str]]]`.
    NamesOrNull,
}

/// Check the fields of an op's body the way pydantic does (required fields, types).
fn validate_body(op: Op, body: &Map<String, Value>) -> Result<(), Box<Response>> {
    let required: &[(&str, FieldKind)] = match op {
        Op::Autostop => &[
            ("cluster_name", FieldKind::Str),
            ("idle_minutes", FieldKind::Int),
        ],
        Op::Stop | Op::Down | Op::Start | Op::Queue => &[("cluster_name", FieldKind::Str)],
        // Optional[Union[str, List[str]]] without a default: required, null allowed.
        Op::ServeStatus => &[("service_names", FieldKind::NamesOrNull)],
        Op::Status | Op::CostReport | Op::JobsQueue => &[],
    };
    let optional: &[(&str, FieldKind)] = match op {
        Op::Autostop | Op::Start => &[("down", FieldKind::Bool)],
        Op::CostReport => &[("days", FieldKind::Int)],
        Op::JobsQueue => &[
            ("refresh", FieldKind::Bool),
            ("skip_finished", FieldKind::Bool),
            ("all_users", FieldKind::Bool),
        ],
        Op::Status => &[
            ("all_users", FieldKind::Bool),
            ("include_credentials", FieldKind::Bool),
            ("include_handle", FieldKind::Bool),
        ],
        _ => &[],
    };
    let input = Value::Object(body.clone());
    for (name, _) in required {
        if !body.contains_key(*name) {
            return Err(Box::new(validation_error(
                "missing",
                vec![json!("body"), json!(name)],
                "Field required",
                input,
            )));
        }
    }
    for (name, kind) in required.iter().chain(optional.iter()) {
        let Some(v) = body.get(*name) else { continue };
        if let FieldKind::NamesOrNull = kind {
            let names = v.as_array().is_some_and(|a| a.iter().all(Value::is_string));
            if v.is_null() || v.is_string() || names {
                continue;
            }
            // pydantic reports each member of the union it tried.
            return Err(Box::new(json_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                &json!({"detail": [
                    {"type": "string_type", "loc": ["body", name, "str"],
                     "msg": "Input should be a valid string", "input": v},
                    {"type": "list_type", "loc": ["body", name, "list[str]"],
                     "msg": "Input should be a valid list", "input": v},
                ]}),
            )));
        }
        if v.is_null() && matches!(op, Op::CostReport) {
            continue; // days: Optional[int]
        }
        let (ok, t, msg) = match kind {
            FieldKind::Str => (
                v.is_string(),
                "string_type",
                "Input should be a valid string",
            ),
            FieldKind::Int => (
                v.is_i64() || v.as_str().is_some_and(|s| s.trim().parse::<i64>().is_ok()),
                "int_parsing",
                "Input should be a valid integer, unable to parse string as an integer",
            ),
            FieldKind::Bool => (
                v.is_boolean(),
                "bool_parsing",
                "Input should be a valid boolean",
            ),
            FieldKind::NamesOrNull => continue,
        };
        if !ok {
            return Err(Box::new(validation_error(
                t,
                vec![json!("body"), json!(name)],
                msg,
                v.clone(),
            )));
        }
    }
    if op == Op::Status {
        if let Some(r) = body.get("refresh") {
            let ok = matches!(r.as_str(), Some("NONE" | "AUTO" | "FORCE"));
            if !ok {
                return Err(Box::new(validation_error(
                    "enum",
                    vec![json!("body"), json!("refresh")],
                    "Input should be 'NONE', 'AUTO' or 'FORCE'",
                    r.clone(),
                )));
            }
        }
    }
    Ok(())
}

async fn run_op(
    State(shared): State<Arc<Shared>>,
    op: Op,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let parsed: Result<Value, _> = if raw.iter().all(u8::is_ascii_whitespace) {
        Ok(Value::Object(Map::new()))
    } else {
        serde_json::from_slice(&raw)
    };
    let request_id = new_request_id();
    {
        let mut st = shared.lock();
        st.log.push(LoggedRequest {
            method: "POST".into(),
            path: op.path().into(),
            op: Some(op),
            request_id: Some(request_id.clone()),
            body: parsed.as_ref().cloned().unwrap_or(Value::Null),
            api_version_header: header_str(&headers, "x-skypilot-api-version"),
            authorization: header_str(&headers, "authorization"),
        });
    }
    let body = match parsed {
        Ok(Value::Object(m)) => m,
        Ok(other) => {
            return validation_error(
                "model_attributes_type",
                vec![json!("body")],
                "Input should be a valid dictionary or object to extract fields from",
                other,
            )
        }
        Err(e) => {
            return json_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                &json!({"detail": [{"type": "json_invalid", "loc": ["body", e.column()],
                                    "msg": "JSON decode error", "input": {},
                                    "ctx": {"error": "Expecting value"}}]}),
            )
        }
    };
    if let Err(resp) = validate_body(op, &body) {
        return *resp;
    }

    {
        let mut st = shared.lock();
        let created_at = st.now_f64();
        let faults = st.take_payload_faults(op);
        let (result, cluster_name) = execute(&mut st, op, &body, &faults);
        let (failed, return_value, error) = match result {
            Ok(rv) => (false, rv, "null".to_string()),
            Err((t, m)) => (true, "null".to_string(), error_json(&t, &m)),
        };
        let finished_at = st.now_f64();
        let stored = StoredRequest {
            request_id: request_id.clone(),
            op,
            cluster_name,
            failed,
            return_value,
            error,
            created_at,
            finished_at,
        };
        let answer = if failed {
            serde_json::to_vec(&json!({"detail": stored.payload()}))
        } else {
            serde_json::to_vec(&stored.payload())
        }
        .unwrap_or_else(|_| b"null".to_vec());
        st.requests_bytes += answer.len();
        st.requests.push_back(FinishedRequest {
            request_id: request_id.clone(),
            failed,
            answer: Bytes::from(answer),
        });
        while st.requests.len() > KEPT_REQUESTS
            || (st.requests_bytes > KEPT_BYTES && st.requests.len() > 1)
        {
            if let Some(old) = st.requests.pop_front() {
                st.requests_bytes -= old.answer.len();
            }
        }
    }

    let mut resp = json_response(StatusCode::OK, &Value::Null);
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-skypilot-request-id", v);
    }
    resp
}

impl Simulator {
    /// Override fields of `/api/health` (e.g. `basic_auth_enabled`, `api_version`).
    pub fn set_health_field(&self, key: &str, value: Value) {
        self.shared
            .lock()
            .health_overrides
            .insert(key.to_string(), value);
    }

    /// Turn service-account tokens on (as `SKYPILOT_ENABLE_SERVICE_ACCOUNTS=true` does)
    /// and accept these `sky_…` tokens as `Authorization: Bearer`.
    pub fn enable_service_accounts(&self, tokens: &[&str]) {
        self.shared.lock().service_account_tokens =
            Some(tokens.iter().map(|t| t.to_string()).collect());
    }

    /// Back to the default: a `Bearer sky_…` header gets HTTP 401.
    pub fn disable_service_accounts(&self) {
        self.shared.lock().service_account_tokens = None;
    }
}
