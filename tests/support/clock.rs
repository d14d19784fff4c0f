//! A clock the test sets, for code that takes a [`Clock`].

use std::sync::{Arc, Mutex};

use skypilot_host::time::Clock;

/// Unix time in seconds, as the test sets it.
pub struct TestClock(Mutex<f64>);

impl TestClock {
    pub fn new(t: f64) -> Arc<TestClock> {
        Arc::new(TestClock(Mutex::new(t)))
    }

    pub fn set(&self, t: f64) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = t;
    }
}

impl Clock for TestClock {
    fn now(&self) -> f64 {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
