//! pgoutput bytes to typed messages ([`pgoutput`]), the relation cache
//! ([`relations`]), the PostgreSQL types the engine knows ([`types`]) and
//! their values as JSON ([`values`]). Pure: no I/O, no stage above.

pub(crate) mod pgoutput;
pub(crate) mod relations;
pub(crate) mod types;
pub(crate) mod values;
