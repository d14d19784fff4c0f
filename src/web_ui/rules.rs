//! The gateway's authorization table: every route of SkyPilot 0.14.1's API server (its
//! `openapi.json` and its three websocket routes), what each role may do there, and
//! whether it changes state (those requests are audited).
//!
//! - `admin`: everything (an admin is SkyPilot's admin too).
//! - `user`: reads, launches, and acts only on what they own ([`Access::Own`]): the
//!   clusters, managed jobs, services and pools whose SkyPilot user is them.
//! - `viewer`: reads only; SkyPilot's own viewer allowlist (`sky/users/rbac.py`) is the
//!   reference, with logs and job queues of a cluster narrowed to its owner.
//!
//! A route the table does not list is refused to every role but admin. The path is
//! matched as SkyPilot routes it: percent-decoded, and with the dashboard's
//! `/internal/dashboard` prefix removed once. SkyPilot's RBAC is kept equal to ours (the
//! web UI's role sync) and decides again behind us; this table is the first decision,
//! not the only one.

use super::identity::Role;

/// What a role may do on a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Allow,
    /// Only on what the caller owns, named in the request as [`Owned`] says.
    Own(Owned),
    Deny,
}

/// Where a request names what it acts on, and whose it must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owned {
    /// Existing clusters in the JSON body's `cluster_name` or `cluster_names`.
    Clusters,
    /// A cluster in the query's `cluster_name` (the SSH websockets).
    ClusterQuery,
    /// A launch: `cluster_name` may name a new cluster (or none); an existing one must be
    /// the caller's.
    Launch,
    /// Managed jobs by `job_ids`, `job_id` or `name`; `all` / `all_users` are refused.
    Jobs,
    /// Services by `service_names` or `service_name`; `all` is refused.
    Services,
    /// Pools by `pool_names` or `pool_name`; `all` is refused. `create` lets a new pool
    /// name through (`/jobs/pool_apply`).
    Pools { create: bool },
    /// `/api/cancel`: SkyPilot binds it to the caller (`role_filter`); a cancel of every
    /// user's requests (`user_id` naming another) is refused here too.
    Requests,
}

/// Whether a route changes state (audited) or only reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Read,
    Write,
}

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rule {
    pub(crate) method: &'static str,
    /// The path; a `{name}` segment matches one segment, a final `{full_path}` the rest.
    pub(crate) path: &'static str,
    pub(crate) kind: Kind,
    pub(crate) user: Access,
    pub(crate) viewer: Access,
}

use Access::{Allow, Deny, Own};
use Kind::{Read, Write};
use Owned::{ClusterQuery, Clusters, Jobs, Launch, Pools, Requests, Services};

const fn r(
    method: &'static str,
    path: &'static str,
    kind: Kind,
    user: Access,
    viewer: Access,
) -> Rule {
    Rule {
        method,
        path,
        kind,
        user,
        viewer,
    }
}

/// The table: method, path, kind, `user`, `viewer`. `admin` may do everything.
#[rustfmt::skip]
pub(crate) const RULES: &[Rule] = &[
    // The dashboard, its settings, the API's own plumbing.
    r("GET",  "/",                                   Read,  Allow, Allow),
    r("GET",  "/dashboard/{full_path}",              Read,  Allow, Allow),
    r("GET",  "/dashboard_config",                   Read,  Allow, Allow),
    r("GET",  "/api/health",                         Read,  Allow, Allow),
    r("GET",  "/api/get",                            Read,  Allow, Allow),
    r("GET",  "/api/status",                         Read,  Allow, Allow),
    r("GET",  "/api/stream",                         Read,  Allow, Allow),
    r("GET",  "/api/plugins",                        Read,  Allow, Allow),
    r("POST", "/api/cancel",                         Write, Own(Requests), Deny),
    r("GET",  "/api/completion/api_request",         Read,  Allow, Allow),
    r("GET",  "/api/completion/cluster_name",        Read,  Allow, Allow),
    r("GET",  "/api/completion/storage_name",        Read,  Allow, Allow),
    r("GET",  "/api/completion/volume_name",         Read,  Allow, Allow),
    // SkyPilot's browser login for its CLI.
    r("GET",  "/token",                              Read,  Allow, Allow),
    r("GET",  "/auth/authorize",                     Read,  Allow, Allow),
    r("POST", "/api/v1/auth/authorize",              Read,  Allow, Allow),
    r("GET",  "/api/v1/auth/token",                  Read,  Allow, Allow),
    // Clusters: reads.
    r("POST", "/status",                             Read,  Allow, Allow),
    r("POST", "/cost_report",                        Read,  Allow, Allow),
    r("POST", "/endpoints",                          Read,  Allow, Allow),
    r("POST", "/cluster_events",                     Read,  Allow, Allow),
    r("POST", "/queue",                              Read,  Own(Clusters), Own(Clusters)),
    r("POST", "/job_status",                         Read,  Own(Clusters), Own(Clusters)),
    r("POST", "/logs",                               Read,  Own(Clusters), Own(Clusters)),
    r("POST", "/download_logs",                      Read,  Own(Clusters), Own(Clusters)),
    r("POST", "/provision_logs",                     Read,  Own(Clusters), Own(Clusters)),
    r("POST", "/hook_logs",                          Read,  Own(Clusters), Own(Clusters)),
    r("POST", "/download",                           Read,  Allow, Allow),
    // Clusters: launches and actions.
    r("POST", "/launch",                             Write, Own(Launch), Deny),
    r("POST", "/exec",                               Write, Own(Clusters), Deny),
    r("POST", "/stop",                               Write, Own(Clusters), Deny),
    r("POST", "/start",                              Write, Own(Clusters), Deny),
    r("POST", "/down",                               Write, Own(Clusters), Deny),
    r("POST", "/autostop",                           Write, Own(Clusters), Deny),
    r("POST", "/cancel",                             Write, Own(Clusters), Deny),
    r("POST", "/upload",                             Write, Allow, Deny),
    r("POST", "/upload_v2",                          Write, Allow, Deny),
    r("GET",  "/upload_v2/blob",                     Read,  Allow, Allow),
    r("GET",  "/kubernetes-pod-ssh-proxy",           Write, Own(ClusterQuery), Deny),
    r("GET",  "/slurm-job-ssh-proxy",                Write, Own(ClusterQuery), Deny),
    r("GET",  "/ssh-interactive-auth",               Write, Allow, Deny),
    // Managed jobs.
    r("POST", "/jobs/launch",                        Write, Allow, Deny),
    r("POST", "/jobs/queue",                         Read,  Allow, Allow),
    r("POST", "/jobs/queue/v2",                      Read,  Allow, Allow),
    r("POST", "/jobs/events",                        Read,  Allow, Allow),
    r("POST", "/jobs/wait",                          Read,  Allow, Allow),
    r("POST", "/jobs/cancel",                        Write, Own(Jobs), Deny),
    r("POST", "/jobs/logs",                          Read,  Own(Jobs), Own(Jobs)),
    r("POST", "/jobs/download_logs",                 Read,  Own(Jobs), Own(Jobs)),
    r("POST", "/jobs/pool_status",                   Read,  Allow, Allow),
    r("POST", "/jobs/pool_apply",                    Write, Own(Pools { create: true }), Deny),
    r("POST", "/jobs/pool_down",                     Write, Own(Pools { create: false }), Deny),
    r("POST", "/jobs/pool_logs",                     Read,  Own(Pools { create: false }), Own(Pools { create: false })),
    r("POST", "/jobs/pool_sync-down-logs",           Read,  Own(Pools { create: false }), Own(Pools { create: false })),
    // Services (SkyServe).
    r("POST", "/serve/status",                       Read,  Allow, Allow),
    r("POST", "/serve/up",                           Write, Allow, Deny),
    r("POST", "/serve/update",                       Write, Own(Services), Deny),
    r("POST", "/serve/down",                         Write, Own(Services), Deny),
    r("POST", "/serve/terminate-replica",            Write, Own(Services), Deny),
    r("POST", "/serve/logs",                         Read,  Own(Services), Own(Services)),
    r("POST", "/serve/sync-down-logs",               Read,  Own(Services), Own(Services)),
    // Planning and catalog reads.
    r("POST", "/validate",                           Read,  Allow, Allow),
    r("POST", "/optimize",                           Read,  Allow, Allow),
    r("POST", "/list_accelerators",                  Read,  Allow, Allow),
    r("POST", "/list_accelerator_counts",            Read,  Allow, Allow),
    r("GET",  "/enabled_clouds",                     Read,  Allow, Allow),
    r("GET",  "/enabled_clouds/batch",               Read,  Allow, Allow),
    r("POST", "/check",                              Write, Allow, Deny),
    // Infrastructure: Kubernetes, Slurm, SSH node pools, a local cluster.
    r("GET",  "/all_contexts",                       Read,  Allow, Allow),
    r("GET",  "/kubernetes/allowed_nodes",           Read,  Allow, Allow),
    r("POST", "/kubernetes_node_info",               Read,  Allow, Allow),
    r("POST", "/realtime_kubernetes_gpu_availability", Read, Allow, Allow),
    r("GET",  "/status_kubernetes",                  Read,  Allow, Allow),
    r("POST", "/kubernetes_label_gpus",              Write, Deny,  Deny),
    r("POST", "/slurm_cluster_names",                Read,  Allow, Allow),
    r("POST", "/slurm_gpu_availability",             Read,  Allow, Allow),
    r("GET",  "/slurm_node_info",                    Read,  Allow, Allow),
    r("POST", "/slurm_node_info",                    Read,  Allow, Allow),
    r("GET",  "/ssh_node_pools",                     Read,  Allow, Allow),
    r("GET",  "/ssh_node_pools/{pool_name}/status",  Read,  Allow, Allow),
    r("GET",  "/ssh_node_pools/keys",                Read,  Deny,  Deny),
    r("POST", "/ssh_node_pools",                     Write, Deny,  Deny),
    r("POST", "/ssh_node_pools/keys",                Write, Deny,  Deny),
    r("POST", "/ssh_node_pools/deploy",              Write, Deny,  Deny),
    r("POST", "/ssh_node_pools/down",                Write, Deny,  Deny),
    r("POST", "/ssh_node_pools/{pool_name}/deploy",  Write, Deny,  Deny),
    r("POST", "/ssh_node_pools/{pool_name}/down",    Write, Deny,  Deny),
    r("DELETE", "/ssh_node_pools/{pool_name}",       Write, Deny,  Deny),
    r("POST", "/local_up",                           Write, Deny,  Deny),
    r("POST", "/local_down",                         Write, Deny,  Deny),
    // Storage, volumes, recipes.
    r("GET",  "/storage/ls",                         Read,  Allow, Allow),
    r("POST", "/storage/delete",                     Write, Deny,  Deny),
    r("GET",  "/volumes",                            Read,  Allow, Allow),
    r("POST", "/volumes/validate",                   Read,  Allow, Allow),
    r("POST", "/volumes/apply",                      Write, Allow, Deny),
    r("POST", "/volumes/delete",                     Write, Deny,  Deny),
    r("GET",  "/recipes",                            Read,  Allow, Allow),
    r("POST", "/recipes/list",                       Read,  Allow, Allow),
    r("POST", "/recipes/get",                        Read,  Allow, Allow),
    r("POST", "/recipes/create",                     Write, Allow, Deny),
    r("POST", "/recipes/update",                     Write, Deny,  Deny),
    r("POST", "/recipes/pin",                        Write, Deny,  Deny),
    r("POST", "/recipes/delete",                     Write, Deny,  Deny),
    // Users, roles and service accounts: administration.
    r("GET",  "/users",                              Read,  Allow, Allow),
    r("GET",  "/users/role",                         Read,  Allow, Allow),
    r("GET",  "/users/me/workspace",                 Read,  Allow, Allow),
    r("POST", "/users/me/workspace",                 Write, Allow, Deny),
    r("GET",  "/users/service-account-tokens",       Read,  Allow, Allow),
    r("GET",  "/users/export",                       Read,  Deny,  Deny),
    r("POST", "/users/create",                       Write, Deny,  Deny),
    r("POST", "/users/update",                       Write, Deny,  Deny),
    r("POST", "/users/batch_update",                 Write, Deny,  Deny),
    r("POST", "/users/delete",                       Write, Deny,  Deny),
    r("POST", "/users/import",                       Write, Deny,  Deny),
    r("POST", "/users/service-account-tokens",       Write, Deny,  Deny),
    r("POST", "/users/service-account-tokens/delete", Write, Deny, Deny),
    r("POST", "/users/service-account-tokens/get-role", Read, Deny, Deny),
    r("POST", "/users/service-account-tokens/rotate", Write, Deny, Deny),
    r("POST", "/users/service-account-tokens/update-role", Write, Deny, Deny),
    // Workspaces and SkyPilot's config (which holds the launch policy's token).
    r("GET",  "/workspaces",                         Read,  Allow, Allow),
    r("GET",  "/workspaces/config",                  Read,  Deny,  Deny),
    r("POST", "/workspaces/config",                  Write, Deny,  Deny),
    r("POST", "/workspaces/create",                  Write, Deny,  Deny),
    r("POST", "/workspaces/update",                  Write, Deny,  Deny),
    r("POST", "/workspaces/delete",                  Write, Deny,  Deny),
    r("POST", "/workspaces/batch_add_users",         Write, Deny,  Deny),
    r("POST", "/workspaces/batch_remove_users",      Write, Deny,  Deny),
    // Debugging dumps of the server's state.
    r("POST", "/debug/dump_create",                  Write, Deny,  Deny),
    r("GET",  "/debug/dump_download/{dump_filename}", Read, Deny,  Deny),
];

/// The path SkyPilot routes `raw_path` to: percent-decoded, the dashboard's
/// `/internal/dashboard` prefix removed once (SkyPilot's `InternalDashboardPrefixMiddleware`).
pub(crate) fn routed_path(raw_path: &str) -> String {
    let decoded = percent_encoding::percent_decode_str(raw_path).decode_utf8_lossy();
    match decoded.strip_prefix("/internal/dashboard/") {
        Some(rest) => format!("/{rest}"),
        None => decoded.into_owned(),
    }
}

fn matches(pattern: &str, path: &str) -> bool {
    let mut want = pattern.split('/');
    let mut have = path.split('/');
    loop {
        match (want.next(), have.next()) {
            (None, None) => return true,
            (Some("{full_path}"), _) => return true,
            (Some(w), Some(h)) if w.starts_with('{') && w.ends_with('}') => {
                if h.is_empty() {
                    return false;
                }
            }
            (Some(w), Some(h)) if w == h => {}
            _ => return false,
        }
    }
}

/// The rule of `method` on `path` (as [`routed_path`] gives it), if the table has one.
/// `HEAD` is looked up as `GET`.
pub(crate) fn rule_for(method: &str, path: &str) -> Option<&'static Rule> {
    let method = if method == "HEAD" { "GET" } else { method };
    RULES
        .iter()
        .find(|r| r.method == method && matches(r.path, path))
}

/// The decision for `role` on `method` `path`: the access and the rule's kind (a route
/// the table lacks is a write, allowed to admins only).
pub(crate) fn decide(role: Role, method: &str, path: &str) -> (Access, Kind) {
    let rule = rule_for(method, path);
    let kind = rule.map_or(Kind::Write, |r| r.kind);
    let access = match (role, rule) {
        (Role::Admin, _) => Access::Allow,
        (_, None) => Access::Deny,
        (Role::User, Some(r)) => r.user,
        (Role::Viewer, Some(r)) => r.viewer,
    };
    (access, kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SkyPilot 0.14.1's routes: every method and path of its `openapi.json`, and its
    /// websocket routes (which OpenAPI does not list).
    const SKYPILOT_ROUTES: &str = include_str!("../../tests/fixtures/skypilot-0.14.1-routes.txt");

    #[test]
    fn every_skypilot_route_is_classified() {
        let mut missing = Vec::new();
        let mut n = 0;
        for line in SKYPILOT_ROUTES.lines().filter(|l| !l.trim().is_empty()) {
            let (method, path) = line.split_once(' ').unwrap();
            n += 1;
            if rule_for(method, path).is_none() {
                missing.push(line);
            }
        }
        assert!(n > 120, "only {n} routes read");
        assert!(
            missing.is_empty(),
            "SkyPilot routes the gateway's table does not classify: {missing:?}"
        );
    }

    #[test]
    fn every_rule_is_a_skypilot_route() {
        let routes: Vec<&str> = SKYPILOT_ROUTES.lines().collect();
        for r in RULES {
            let line = format!("{} {}", r.method, r.path);
            assert!(
                routes.contains(&line.as_str()),
                "{line} is in the table but not a SkyPilot 0.14.1 route"
            );
        }
    }

    #[test]
    fn viewers_only_read_and_reads_never_need_more_than_users() {
        for r in RULES {
            if r.kind == Kind::Write {
                assert_eq!(r.viewer, Access::Deny, "a viewer may write {}", r.path);
            }
            if r.user == Access::Deny {
                assert_eq!(r.viewer, Access::Deny, "{}: viewer above user", r.path);
            }
        }
    }

    #[test]
    fn paths_are_routed_as_skypilot_routes_them() {
        assert_eq!(routed_path("/%73top"), "/stop");
        assert_eq!(routed_path("/internal/dashboard/down"), "/down");
        assert_eq!(
            routed_path("/internal/dashboard/internal/dashboard/down"),
            "/internal/dashboard/down"
        );
        assert!(rule_for("POST", "/stop/extra").is_none());
        assert!(rule_for("GET", "/stop").is_none());
        assert_eq!(
            rule_for("GET", "/dashboard/clusters/x").map(|r| r.path),
            Some("/dashboard/{full_path}")
        );
        assert_eq!(
            rule_for("GET", "/ssh_node_pools/p1/status").map(|r| r.path),
            Some("/ssh_node_pools/{pool_name}/status")
        );
        assert!(rule_for("GET", "/ssh_node_pools//status").is_none());
        assert!(rule_for("GET", "/dashboard").is_some());
        assert!(rule_for("GET", "/dashboard/").is_some());
        assert!(rule_for("GET", "/dashboardx").is_none());
        assert_eq!(
            rule_for("HEAD", "/api/health").map(|r| r.path),
            Some("/api/health")
        );
    }

    #[test]
    fn decisions_by_role() {
        let d = |role, m, p| decide(role, m, p).0;
        assert_eq!(d(Role::Admin, "POST", "/users/update"), Access::Allow);
        assert_eq!(d(Role::User, "POST", "/users/update"), Access::Deny);
        assert_eq!(d(Role::User, "POST", "/stop"), Access::Own(Owned::Clusters));
        assert_eq!(d(Role::Viewer, "POST", "/stop"), Access::Deny);
        assert_eq!(d(Role::Viewer, "POST", "/status"), Access::Allow);
        assert_eq!(d(Role::User, "POST", "/no-such-route"), Access::Deny);
        assert_eq!(d(Role::Admin, "POST", "/no-such-route"), Access::Allow);
        assert_eq!(decide(Role::User, "POST", "/no-such-route").1, Kind::Write);
    }
}
