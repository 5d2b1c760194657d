//! pgoutput bytes to typed messages ([`pgoutput`]), the relation cache
//! ([`relations`]), the PostgreSQL types the engine knows ([`types`]) and
//! their values as JSON ([`values`], with the Debezium handling modes of
//! [`decimal`] and [`temporal`] values). "Decode" means from PostgreSQL's
//! wire forms: the stream's bytes into messages, and a value's text into
//! the JSON the envelope carries. Pure: no I/O, no stage above.

pub(crate) mod decimal;
pub(crate) mod pgoutput;
pub(crate) mod relations;
pub(crate) mod temporal;
pub(crate) mod types;
pub(crate) mod values;
