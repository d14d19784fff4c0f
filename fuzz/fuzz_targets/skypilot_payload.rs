//! SkyPilot's answers around a request: the `GET /api/get` payload (HTTP 200), the
//! `{"detail": payload}` of an HTTP 500 with its JSON-in-a-string `error`, and
//! `GET /api/health`. Decoded as the client decodes them; a `return_value` goes on to
//! the `/status` parser, as in a poll.

use serde::Deserialize;
use skypilot_host::skypilot::{
    parse_status,
    wire::{Health, RequestError, RequestPayload},
};

#[derive(Deserialize)]
struct Detail {
    detail: RequestPayload,
}

fn payload(p: &RequestPayload) {
    if let Some(err) = p.error.as_deref() {
        let _ = serde_json::from_str::<Option<RequestError>>(err);
    }
    if let Some(rv) = p.return_value.as_deref() {
        let _ = parse_status(rv);
    }
}

fn main() {
    afl::fuzz!(|data: &[u8]| {
        if let Ok(p) = serde_json::from_slice::<RequestPayload>(data) {
            payload(&p);
        }
        if let Ok(d) = serde_json::from_slice::<Detail>(data) {
            payload(&d.detail);
        }
        if let Ok(h) = serde_json::from_slice::<Health>(data) {
            let _ = h.api_version_number();
        }
    });
}
