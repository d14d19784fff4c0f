//! `skypilot-host cluster-manager`: polls SkyPilot's API server and records cluster
//! state in the host database. It is the only writer of cluster state.
//!
//! A poll is a straight sequence: probe health; fetch `/status` (with `refresh = FORCE`
//! once per `force_refresh_interval_secs`, falling back to an unrefreshed read when the
//! forced one fails); with a forced poll, fetch the cost report; [`ingest`] the answer
//! (a pure step: skip records whose fingerprint is unchanged, [`diff`] the rest against
//! what is known); commit the changed rows, the transitions and the poll's outcome in
//! one transaction; prune old poll records. A poll that fails leaves the state as it was
//! (readers see it as stale, with its age) and the next attempt comes sooner, backing
//! off up to the poll interval, so the state is fresh again within one poll of the
//! server's return.

//!
//! Parts: [`diff`] (the pure step: a status answer against what is known) and
//! [`manager`] (the poll loop around it: SkyPilot, the store, the load budget).

mod diff;
mod manager;

pub use diff::diff;
pub(crate) use manager::run;
pub use manager::{FeedReport, Manager, PollReport};
