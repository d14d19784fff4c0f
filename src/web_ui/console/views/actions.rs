//! The pages of an action on a cluster: the confirmation form, and the result.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;

use super::{autostop_text, cluster_href, layout, page, status_cell};
use crate::store::ClusterRow;
use crate::web_ui::actions;
use crate::web_ui::auth::csrf;
use crate::web_ui::console::ctx::Ctx;

/// The form that confirms `action` on `row`'s cluster, posting with the session's `token`.
pub(crate) fn confirm_action(ctx: &Ctx, row: &ClusterRow, action: &str, token: &str) -> Response {
    let k = &row.cluster;
    let post = format!("{}/actions/{action}", cluster_href(&k.name));
    let body = html! {
        p { "Cluster " strong { (k.name) } " (" (status_cell(k.status)) ", user " (k.user_name.as_deref().unwrap_or("unknown")) ", autostop " (autostop_text(k.autostop_minutes, k.autostop_to_down)) ")." }
        form method="post" action=(post) {
            input type="hidden" name=(csrf::FIELD) value=(token);
            input type="hidden" name="action" value=(action);
            @match action {
                "autostop" => {
                    p { "Set autostop: stop the cluster after it has been idle for" }
                    label { input type="number" name="minutes" min="1" max=(actions::MAX_AUTOSTOP_MINUTES) value="60" required; " idle minutes" }
                    label { " " input type="checkbox" name="down" value="on"; " tear down instead of stopping" }
                    p { button type="submit" { "Set autostop" } " "
                        button.danger type="submit" formaction={ (cluster_href(&k.name)) "/actions/cancel_autostop" } name="action" value="cancel_autostop" { "Cancel autostop" } }
                }
                "down" => {
                    p.error { "Tear down " strong { (k.name) } "? The cluster is terminated and its disks are deleted." }
                    button.danger type="submit" { "Tear down" }
                }
                "cancel_autostop" => {
                    p { "Cancel the autostop of " strong { (k.name) } "?" }
                    button.danger type="submit" { "Cancel autostop" }
                }
                _ => {
                    p { "Stop " strong { (k.name) } "? Its disks are kept; it can be started again." }
                    button.danger type="submit" { "Stop" }
                }
            }
            " " a href=(cluster_href(&k.name)) { "Back" }
        }
    };
    page(layout(
        ctx,
        &format!("Confirm: {action} {}", k.name),
        "/console/clusters",
        false,
        body,
    ))
}

/// What came of an action on `name`: `text` in `class`, with `status`.
pub(crate) fn action_result(
    ctx: &Ctx,
    name: &str,
    status: StatusCode,
    text: &str,
    raw: Option<&str>,
    class: &str,
) -> Response {
    let body = html! {
        p class=(class) id="action-result" { (text) }
        @if let Some(r) = raw {
            details.raw { summary { "SkyPilot's whole error" } pre { (r) } }
        }
        p { a href=(cluster_href(name)) { "Back to " (name) } " · " a href="/console/audit" { "Audit log" } }
    };
    (
        status,
        page(layout(ctx, "Action", "/console/clusters", false, body)),
    )
        .into_response()
}
