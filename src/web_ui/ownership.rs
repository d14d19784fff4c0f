//! One answer to "is this theirs?", for the console's actions and the gateway alike.
//!
//! SkyPilot records an owner as a user id (`user_hash`) and a name. A person reaches
//! SkyPilot through the identity header, which SkyPilot turns into the id
//! `md5(name)[:8]` (`sky/server/server.py`, `_extract_user_from_header`); a service
//! account has the id SkyPilot verified. Something is the caller's when its owner id is
//! the caller's SkyPilot id, or, for a person, when its owner name is theirs (only an
//! admin can make SkyPilot users of other ids: `/users/create`, service accounts).

use md5::{Digest, Md5};

use super::identity::{AuthMethod, Identity};

/// Length of SkyPilot's user ids (`common_utils.USER_HASH_LENGTH`).
const USER_HASH_LENGTH: usize = 8;

/// The id SkyPilot gives the name `name` sent in its identity header.
pub(crate) fn user_id_of_name(name: &str) -> String {
    let mut id = hex::encode(Md5::digest(name.as_bytes()));
    id.truncate(USER_HASH_LENGTH);
    id
}

/// The caller's SkyPilot user id.
pub(crate) fn skypilot_id(who: &Identity) -> String {
    who.user_id
        .clone()
        .unwrap_or_else(|| user_id_of_name(&who.name))
}

/// Whether something owned by (`owner_name`, `owner_hash`) is `who`'s.
pub(crate) fn owns(who: &Identity, owner_name: Option<&str>, owner_hash: Option<&str>) -> bool {
    if who.name.is_empty() && who.user_id.is_none() {
        return false;
    }
    if owner_hash.is_some_and(|h| h == skypilot_id(who)) {
        return true;
    }
    who.method != AuthMethod::SkyPilotServiceAccount && owner_name.is_some_and(|n| n == who.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web_ui::identity::Role;

    #[test]
    fn ids_are_skypilots() {
        // SkyPilot 0.14.1 recorded alice as 6384e2b2 (tests/it/gateway.rs checks it live).
        assert_eq!(user_id_of_name("alice"), "6384e2b2");
    }

    #[test]
    fn owners_by_id_or_name() {
        let bob = Identity::named("bob", Role::User, AuthMethod::Session);
        let bob_id = user_id_of_name("bob");
        assert!(owns(&bob, Some("bob"), Some(&bob_id)));
        assert!(owns(&bob, None, Some(&bob_id)));
        assert!(owns(&bob, Some("bob"), None));
        assert!(owns(&bob, Some("bob"), Some("b2")));
        assert!(!owns(&bob, Some("alice"), Some("b2")));
        assert!(!owns(&bob, Some("alice"), None));
        let sa = Identity {
            name: "bob".into(),
            role: Role::User,
            method: AuthMethod::SkyPilotServiceAccount,
            user_id: Some("sa-123".into()),
        };
        assert!(owns(&sa, None, Some("sa-123")));
        assert!(!owns(&sa, Some("bob"), None));
        let nobody = Identity::named("", Role::User, AuthMethod::Session);
        assert!(!owns(&nobody, Some(""), None));
    }
}
