//! Faults that tests switch on and off while the simulator runs, and refused
//! connections.

use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;

use super::operations::Op;
use super::protocol::{router, serve};
use super::{SimState, Simulator};

/// Faults that tests switch on and off at run time (see also
/// [`Simulator::stop_listening`] for refused connections).
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Accept the request and never answer (until the fault is cleared for new requests,
    /// or [`Simulator::stop_listening`] drops the connection).
    Hang,
    /// Wait this long before handling the request.
    Delay(Duration),
    /// HTTP 500 with an HTML body, as a broken reverse proxy or crashed app would send.
    Http500Html,
    /// HTTP 200 `application/json` whose body is cut off mid-document.
    MalformedBody,
    /// The op succeeds but its `return_value` is not valid JSON (status, cost_report,
    /// queue: the ops that return data).
    MalformedReturnValue,
    /// Every status / cost_report record lacks this field (e.g. `cluster_hash`).
    MissingField(String),
}

impl Fault {
    pub(super) fn is_payload_fault(&self) -> bool {
        matches!(self, Fault::MalformedReturnValue | Fault::MissingField(_))
    }
}

#[derive(Debug, Clone)]
pub(super) struct FaultRule {
    fault: Fault,
    /// Only requests to this path (`/status`, `/api/get`, `/api/health`, …); all if None.
    /// Payload faults match the op's path (`/status`), applied when the op runs.
    path: Option<String>,
    /// How many more requests it applies to; forever if None.
    remaining: Option<u32>,
}

impl SimState {
    /// Take the payload faults that apply to `op` now (decrementing counted ones).
    pub(super) fn take_payload_faults(&mut self, op: Op) -> Vec<Fault> {
        let mut out = Vec::new();
        for rule in self.faults.iter_mut() {
            if !rule.fault.is_payload_fault() {
                continue;
            }
            let applies_to_op = match &rule.fault {
                Fault::MalformedReturnValue => {
                    matches!(op, Op::Status | Op::CostReport | Op::Queue)
                }
                Fault::MissingField(_) => matches!(op, Op::Status | Op::CostReport),
                _ => false,
            };
            let path_ok = rule.path.as_deref().is_none_or(|p| p == op.path());
            if applies_to_op && path_ok && rule.remaining != Some(0) {
                if let Some(n) = rule.remaining.as_mut() {
                    *n -= 1;
                }
                out.push(rule.fault.clone());
            }
        }
        self.faults.retain(|r| r.remaining != Some(0));
        out
    }

    /// Take the HTTP-level faults that apply to a request to `path`.
    pub(super) fn take_http_faults(&mut self, path: &str) -> Vec<Fault> {
        let mut out = Vec::new();
        for rule in self.faults.iter_mut() {
            if rule.fault.is_payload_fault() {
                continue;
            }
            let path_ok = rule.path.as_deref().is_none_or(|p| p == path);
            if path_ok && rule.remaining != Some(0) {
                if let Some(n) = rule.remaining.as_mut() {
                    *n -= 1;
                }
                out.push(rule.fault.clone());
            }
        }
        self.faults.retain(|r| r.remaining != Some(0));
        out
    }
}

impl Simulator {
    /// Switch a fault on for every request until cleared.
    pub fn set_fault(&self, fault: Fault) {
        self.add_fault_rule(fault, None, None);
    }

    /// Switch a fault on for requests to one path (`/status`, `/api/get`, `/api/health`).
    pub fn set_fault_on(&self, path: &str, fault: Fault) {
        self.add_fault_rule(fault, Some(path.to_string()), None);
    }

    /// Switch a fault on for the next `times` requests it applies to.
    pub fn set_fault_times(&self, fault: Fault, times: u32) {
        self.add_fault_rule(fault, None, Some(times));
    }

    /// Switch a fault on for the next `times` requests to `path`.
    pub fn set_fault_on_times(&self, path: &str, fault: Fault, times: u32) {
        self.add_fault_rule(fault, Some(path.to_string()), Some(times));
    }

    fn add_fault_rule(&self, fault: Fault, path: Option<String>, remaining: Option<u32>) {
        self.shared.lock().faults.push(FaultRule {
            fault,
            path,
            remaining,
        });
    }

    /// Switch every fault off (requests already hanging stay so; see `stop_listening`).
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Slow answers: shorthand for `set_fault(Fault::Delay(d))`; `Duration::ZERO` removes
    /// every delay.
    pub fn set_delay(&self, d: Duration) {
        let mut st = self.shared.lock();
        st.faults.retain(|r| !matches!(r.fault, Fault::Delay(_)));
        if !d.is_zero() {
            st.faults.push(FaultRule {
                fault: Fault::Delay(d),
                path: None,
                remaining: None,
            });
        }
    }

    /// Refuse connections, as a stopped API server does: close the listening socket and
    /// every open connection (requests in flight, hanging ones included, see the
    /// connection close). The port stays reserved for [`resume_listening`].
    ///
    /// [`resume_listening`]: Self::resume_listening
    pub async fn stop_listening(&self) {
        let handle = self.server.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            h.abort();
            // Completes once the task, its listener and its connections are dropped.
            let _ = h.await;
        }
    }

    /// Listen again on the same port. Retries for up to 5 s if the port is still busy.
    pub async fn resume_listening(&self) -> std::io::Result<()> {
        if self
            .server
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
        {
            return Ok(());
        }
        let mut last_err = None;
        for _ in 0..100 {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => {
                    let handle = tokio::spawn(serve(listener, router(self.shared.clone())));
                    *self.server.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
                    return Ok(());
                }
                Err(e) => {
                    last_err = Some(e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        Err(last_err.unwrap_or_else(|| std::io::Error::other("cannot re-bind")))
    }

    pub fn is_listening(&self) -> bool {
        self.server
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }
}

/// Applies the HTTP-level faults taken for one request: delays first, then a hang, an
/// HTML 500 or a cut-off body. None when the request goes on to be handled.
pub(super) async fn http_fault_answer(faults: &[Fault]) -> Option<Response> {
    for fault in faults {
        if let Fault::Delay(d) = fault {
            tokio::time::sleep(*d).await;
        }
    }
    for fault in faults {
        match fault {
            Fault::Hang => std::future::pending::<()>().await,
            Fault::Http500Html => {
                return Some(
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                        "<html>\r\n<head><title>500 Internal Server Error</title></head>\r\n\
                         <body>\r\n<center><h1>500 Internal Server Error</h1></center>\r\n\
                         </body>\r\n</html>\r\n",
                    )
                        .into_response(),
                );
            }
            Fault::MalformedBody => {
                return Some(
                    (
                        StatusCode::OK,
                        [(header::CONTENT_TYPE, "application/json")],
                        "{\"request_id\":\"3f1c0a52-",
                    )
                        .into_response(),
                );
            }
            _ => {}
        }
    }
    None
}
