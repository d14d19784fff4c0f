//! A clock the test sets, for code that takes a [`Clock`].

use std::sync::{Arc, Mutex};

use skypilot_host::time::{Clock, Timestamp};

/// The time as the test sets it.
pub struct TestClock(Mutex<Timestamp>);

impl TestClock {
    pub fn new(t: impl Into<Timestamp>) -> Arc<TestClock> {
        Arc::new(TestClock(Mutex::new(t.into())))
    }

    pub fn set(&self, t: impl Into<Timestamp>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = t.into();
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
