//! What the last full apply of each connector left, so that the periodic
//! refresh of a connector at rest costs the API server nothing.
//!
//! A full apply reads the Secrets, provisions PostgreSQL and applies the
//! four child objects: six API requests or more. Done on every refresh
//! (15 s), a hundred connectors at rest cost the API server some 2,400
//! requests a minute. Instead a reconcile applies everything only when
//! something it depends on may have changed: the spec (its generation) or
//! its annotations and labels, an
//! object it owns or a Secret it reads (the controller's watches touch the
//! connector here before its reconcile is queued), the last apply failed, or
//! `RESYNC` passed (drift nobody announced). Otherwise it only reads the
//! slot and the engine and writes the status if that changed.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use pgkafka_crds::PgKafkaConnector;

use crate::postgres::Credentials;

/// A full apply at least this often, whatever the watches said.
pub const RESYNC: Duration = Duration::from_secs(600);

struct Applied {
    /// The spec generation and the annotations applied (the restart
    /// annotation, say, is in the pod template).
    fingerprint: u64,
    /// The touches counted when the apply began.
    touches: u64,
    creds: Credentials,
    at: Instant,
}

/// The last full apply of each connector, and what touched it since.
#[derive(Default)]
pub struct Freshness {
    applied: Mutex<HashMap<String, Applied>>,
    touches: Mutex<HashMap<String, u64>>,
}

fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

fn key_of(c: &PgKafkaConnector) -> String {
    key(&c.namespace().unwrap_or_default(), &c.name_any())
}

/// What of `c` besides its status an apply depends on.
fn fingerprint(c: &PgKafkaConnector) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (
        c.metadata.generation,
        &c.metadata.annotations,
        &c.metadata.labels,
    )
        .hash(&mut hasher);
    hasher.finish()
}

impl Freshness {
    /// Something connector `namespace/name` owns or reads changed.
    pub fn touch(&self, namespace: &str, name: &str) {
        if let Ok(mut touches) = self.touches.lock() {
            *touches.entry(key(namespace, name)).or_default() += 1;
        }
    }

    /// The touches counted for `c` now: handed back to [`Freshness::applied`].
    pub fn touches(&self, c: &PgKafkaConnector) -> u64 {
        self.touches
            .lock()
            .ok()
            .and_then(|t| t.get(&key_of(c)).copied())
            .unwrap_or(0)
    }

    /// The credentials of `c`'s last full apply when nothing it depends on
    /// changed since (and it is younger than [`RESYNC`]); `None`: apply all.
    pub fn current(&self, c: &PgKafkaConnector) -> Option<Credentials> {
        let touches = self.touches(c);
        let applied = self.applied.lock().ok()?;
        let last = applied.get(&key_of(c))?;
        (last.fingerprint == fingerprint(c)
            && last.touches == touches
            && last.at.elapsed() < RESYNC)
            .then(|| last.creds.clone())
    }

    /// A full apply of `c` that began when `touches` were counted succeeded
    /// with `creds`.
    pub fn applied(&self, c: &PgKafkaConnector, touches: u64, creds: Credentials) {
        if let Ok(mut applied) = self.applied.lock() {
            let last = Applied {
                fingerprint: fingerprint(c),
                touches,
                creds,
                at: Instant::now(),
            };
            applied.insert(key_of(c), last);
        }
    }

    /// `c` failed or is gone: its next reconcile applies everything.
    pub fn forget(&self, c: &PgKafkaConnector) {
        if let Ok(mut applied) = self.applied.lock() {
            applied.remove(&key_of(c));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::fixtures::{connector, SPEC};

    #[test]
    fn a_touch_a_new_generation_or_a_failure_asks_for_a_full_apply() {
        let fresh = Freshness::default();
        let mut c = connector(SPEC);
        c.metadata.generation = Some(1);
        assert!(fresh.current(&c).is_none(), "never applied");
        let began = fresh.touches(&c);
        fresh.applied(&c, began, Credentials::default());
        assert!(fresh.current(&c).is_some(), "nothing changed since");
        // A touch while an apply ran: that apply began before it.
        let began = fresh.touches(&c);
        fresh.touch(&c.namespace().unwrap_or_default(), &c.name_any());
        fresh.applied(&c, began, Credentials::default());
        assert!(fresh.current(&c).is_none(), "touched during the apply");
        fresh.applied(&c, fresh.touches(&c), Credentials::default());
        assert!(fresh.current(&c).is_some());
        c.metadata.generation = Some(2);
        assert!(fresh.current(&c).is_none(), "the spec changed");
        c.metadata.generation = Some(1);
        assert!(fresh.current(&c).is_some());
        c.annotations_mut()
            .insert("pgkafka.io/restart".into(), "1".into());
        assert!(fresh.current(&c).is_none(), "an annotation changed");
        fresh.applied(&c, fresh.touches(&c), Credentials::default());
        fresh.forget(&c);
        assert!(fresh.current(&c).is_none(), "forgotten");
    }
}
