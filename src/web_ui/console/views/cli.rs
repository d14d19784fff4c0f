//! The pages of CLI logins (`sky api login`): authorize a waiting CLI, show a token to
//! paste, and the list of a person's CLI logins with their revoke buttons.

use axum::response::Response;
use maud::html;

use super::{layout, page, utc};
use crate::store::CliLogin;
use crate::time::Timestamp;
use crate::web_ui::auth::csrf;
use crate::web_ui::console::ctx::Ctx;

const LIST: &str = "/console/cli-logins";

/// Asks the person to authorize the CLI that waits with `challenge`.
pub(crate) fn cli_authorize(ctx: &Ctx, challenge: &str, token: &str) -> Response {
    let body = html! {
        p { "SkyPilot's CLI (" code { "sky api login" } ") asks to act as "
            strong { (ctx.who.name) } " (" (ctx.who.role.as_str()) ") on this server." }
        p { "Authorize only a login you started yourself, just now, in your terminal." }
        form method="post" action="/auth/authorize" {
            input type="hidden" name=(csrf::FIELD) value=(token);
            input type="hidden" name="code_challenge" value=(challenge);
            button type="submit" { "Authorize" }
            " " a href="/console/" { "Cancel" }
        }
    };
    page(layout(ctx, "Authorize the SkyPilot CLI", "", false, body))
}

/// The CLI has its login (number `id`).
pub(crate) fn cli_authorized(ctx: &Ctx, id: i64) -> Response {
    let body = html! {
        p { "The CLI is logged in as " strong { (ctx.who.name) } " (CLI login " (id) "). "
            "Go back to your terminal; this tab can be closed." }
        p { "It can be revoked any time on " a href=(LIST) { "CLI logins" } "." }
    };
    page(layout(ctx, "CLI authorized", "", false, body))
}

/// The manual and localhost-callback flows: a button that makes a token (`csrf` of the
/// session), or the token; with the CLI's `port`, the page's script hands it over.
pub(crate) fn cli_token(
    ctx: &Ctx,
    csrf_token: &str,
    port: Option<u16>,
    made: Option<(i64, &str)>,
) -> Response {
    let body = html! {
        @match made {
            Some((id, token)) => {
                @if let Some(p) = port {
                    p #handover data-local-port=(p) { "Handing the token to the CLI on this computer (port " (p) ")…" }
                }
                p { "Or paste this token into the CLI's prompt (" code { "Paste the token" } "). It is shown once; it logs the CLI in as "
                    strong { (ctx.who.name) } " (CLI login " (id) ")." }
                pre #token { (token) }
                p { "Revoke it any time on " a href=(LIST) { "CLI logins" } "." }
            }
            None => {
                p { "Make a token for SkyPilot's CLI (" code { "sky api login" } " asks for it) that acts as "
                    strong { (ctx.who.name) } " (" (ctx.who.role.as_str()) ")." }
                @if let Some(p) = port {
                    p { "The CLI waits for it on this computer, port " (p) "." }
                }
                form method="post" action="/token" {
                    input type="hidden" name=(csrf::FIELD) value=(csrf_token);
                    @if let Some(p) = port { input type="hidden" name="local_port" value=(p); }
                    button type="submit" { "Make a CLI token" }
                }
            }
        }
    };
    page(layout(ctx, "Token for SkyPilot's CLI", "", false, body))
}

/// The CLI logins `rows` (every person's for an admin), with a revoke button each.
pub(crate) fn cli_logins(ctx: &Ctx, rows: &[CliLogin], now: Timestamp) -> Response {
    let body = html! {
        p { "Each " code { "sky api login -e URL" } " through this server is a CLI login: "
            "personal, ending on its expiry or when revoked here (the CLI is then asked to log in again)." }
        @if rows.is_empty() {
            p { "No CLI logins." }
        } @else {
            table {
                thead { tr { th { "#" } th { "person" } th { "how" } th { "created" } th { "last used" } th { "expires" } th {} } }
                tbody {
                    @for r in rows {
                        tr {
                            td { (r.id) }
                            td { (r.name) }
                            td { @if r.groups.is_some() { "single sign-on" } @else { "password" } }
                            td { (utc(r.created)) }
                            td { @match r.last_used { Some(t) => (utc(t)), None => "never" } }
                            td { (utc(r.expires)) @if r.expires <= now { " (expired)" } }
                            td {
                                @if let Some(token) = &ctx.csrf {
                                    form method="post" action={ (LIST) "/" (r.id) "/revoke" } {
                                        input type="hidden" name=(csrf::FIELD) value=(token);
                                        button.danger type="submit" { "Revoke" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    page(layout(ctx, "CLI logins", LIST, false, body))
}
