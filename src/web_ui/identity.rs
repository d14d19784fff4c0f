//! Who a request comes from, once authenticated. The auth middleware inserts an
//! [`Identity`] into the request's extensions; the console, the JSON API and the gateway
//! read it from there and never look at credentials themselves.

/// What a person may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Sees everything; acts on any cluster.
    Admin,
    /// Sees everything; acts only on the clusters they own (per-owner control).
    Viewer,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
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
    /// `Authorization: Bearer` with one of our API tokens (scripts).
    Bearer,
    /// `Authorization: Bearer sky_…`: a SkyPilot service-account token, which SkyPilot
    /// verifies itself; the gateway passes it through untouched.
    SkyPilotServiceAccount,
}

/// An authenticated person (or script).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user's name from the users file; what SkyPilot sees in its identity header.
    pub name: String,
    pub role: Role,
    pub method: AuthMethod,
}

impl Identity {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}
