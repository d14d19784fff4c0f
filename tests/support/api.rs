//! SkyPilot's REST protocol as a client speaks it, against any server (the simulator or
//! the real one): post an op, fetch its request payload, decode `return_value` and
//! `error`. Plus the crate's typed client for a URL.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use skypilot_host::config::SkypilotConfig;
use skypilot_host::skypilot::Client;

use super::sim::Simulator;

/// Starts a simulator on the current runtime; panics if it cannot.
pub async fn start_sim() -> Simulator {
    match Simulator::start().await {
        Ok(s) => s,
        Err(e) => panic!("simulator: {e}"),
    }
}

/// The crate's client for the API server at `url`, without a token.
pub fn client(url: &str, timeout_secs: u64, attempts: u32) -> Client {
    let cfg = SkypilotConfig {
        api_url: url.to_string(),
        token_file: None,
        request_timeout_secs: timeout_secs,
        connect_attempts: attempts,
        ..SkypilotConfig::default()
    };
    match Client::new(&cfg) {
        Ok(c) => c,
        Err(e) => panic!("client for {url}: {e}"),
    }
}

/// A plain HTTP client with a 60 s timeout.
pub fn http() -> reqwest::Client {
    match reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
    {
        Ok(c) => c,
        Err(e) => panic!("reqwest client: {e}"),
    }
}

/// True for `8-4-4-4-12` lowercase hex.
pub fn is_uuid_like(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// `POST /<op>` as SkyPilot's own client sends it; checks the answer (200, body `null`,
/// a request id) and returns the id.
pub async fn post_op(url: &str, op: &str, body: Value) -> String {
    let resp = http()
        .post(format!("{url}/{op}"))
        .header("X-SkyPilot-API-Version", "62")
        .header("X-SkyPilot-Version", "0.14.1")
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}/{op}: {e}"));
    assert_eq!(resp.status(), StatusCode::OK, "POST /{op}");
    let id = resp
        .headers()
        .get("x-skypilot-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("POST /{op}: no x-skypilot-request-id header"));
    assert!(is_uuid_like(&id), "request id {id:?} is not UUID-shaped");
    assert_eq!(
        resp.headers()
            .get("x-skypilot-api-version")
            .and_then(|v| v.to_str().ok()),
        Some("62"),
        "POST /{op} with version headers answers with the server's API version"
    );
    let text = resp.text().await.unwrap_or_default();
    assert_eq!(text, "null", "POST /{op} body");
    id
}

/// `GET /api/get?request_id=`: status code and JSON body.
pub async fn api_get(url: &str, id: &str) -> (StatusCode, Value) {
    let resp = http()
        .get(format!("{url}/api/get"))
        .query(&[("request_id", id)])
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}/api/get: {e}"));
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("/api/get answered non-JSON ({e}): {text}"));
    (status, v)
}

/// Run an op to completion: (HTTP status of /api/get, the request payload).
pub async fn run_op(url: &str, op: &str, body: Value) -> (StatusCode, Value) {
    let id = post_op(url, op, body).await;
    let (status, v) = api_get(url, &id).await;
    let payload = if status == StatusCode::OK {
        v
    } else {
        v.get("detail").cloned().unwrap_or(Value::Null)
    };
    assert_eq!(payload["request_id"], json!(id), "payload of {op}");
    (status, payload)
}

/// `return_value` of a successful payload, decoded.
pub fn return_value(payload: &Value) -> Value {
    assert_eq!(payload["status"], "SUCCEEDED", "payload: {payload}");
    assert_eq!(payload["error"], "null");
    let s = payload["return_value"]
        .as_str()
        .unwrap_or_else(|| panic!("return_value is not a string: {payload}"));
    serde_json::from_str(s).unwrap_or_else(|e| panic!("return_value is not JSON ({e}): {s}"))
}

/// `error` of a failed payload, decoded.
pub fn error_value(payload: &Value) -> Value {
    assert_eq!(payload["status"], "FAILED", "payload: {payload}");
    assert_eq!(payload["return_value"], "null");
    let s = payload["error"]
        .as_str()
        .unwrap_or_else(|| panic!("error is not a string: {payload}"));
    serde_json::from_str(s).unwrap_or_else(|e| panic!("error is not JSON ({e}): {s}"))
}

/// The status records of `names` (`refresh: NONE`), through the request model.
pub async fn status_of(url: &str, names: &[&str]) -> Vec<Value> {
    let (code, payload) = run_op(
        url,
        "status",
        json!({"cluster_names": names, "refresh": "NONE",
               "include_handle": false, "include_credentials": false}),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(payload["name"], "sky.status");
    match return_value(&payload) {
        Value::Array(a) => a,
        other => panic!("status return_value is not a list: {other}"),
    }
}
