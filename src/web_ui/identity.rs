//! Who a request comes from, once authenticated. The auth middleware inserts an
//! [`Identity`] into the request's extensions; the console, the JSON API and the gateway
//! read it from there and never look at credentials themselves.

/// What a person may do: SkyPilot's own three roles (`sky/users/rbac.py`), kept equal
/// inside SkyPilot by the web UI's role sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Everything: any cluster, job or service, users, workspaces, config.
    Admin,
    /// Launches, and acts only on the clusters, jobs and services they own.
    User,
    /// Reads only.
    Viewer,
}

impl Role {
    pub const NAMES: &'static str = "admin, user or viewer";

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "user" => Some(Role::User),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
            Role::Viewer => "viewer",
        }
    }
}

/// How the request proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// The console's session cookie.
    Session,
    /// `Authorization: Basic` (SkyPilot's CLI with `http://name:password@host`).
    Basic,
    /// The cookie of a CLI login (`sky api login` through the web UI).
    CliLogin,
    /// `Authorization: Bearer` with one of our API tokens (scripts).
    Bearer,
    /// `Authorization: Bearer sky_…`: a SkyPilot service-account token, verified by
    /// SkyPilot before the request was let through (see `auth::service_account`).
    SkyPilotServiceAccount,
}

/// An authenticated person (or script).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user's name from the users file, or a verified service account's name; what
    /// SkyPilot sees in its identity header.
    pub name: String,
    pub role: Role,
    pub method: AuthMethod,
    /// SkyPilot's user id, when it was verified (a service account's); people are known
    /// by name.
    pub user_id: Option<String>,
}

impl Identity {
    /// A person (or script) known by name, with no SkyPilot user id.
    pub fn named(name: impl Into<String>, role: Role, method: AuthMethod) -> Identity {
        Identity {
            name: name.into(),
            role,
            method,
            user_id: None,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}
