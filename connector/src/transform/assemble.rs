//! How a [`super::stage::Transform`] is assembled from a spec: the record
//! keys (catalog primary keys, `keyColumns`), the encoder with its value
//! modes and record limit, and the targets with an error policy of their
//! own.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use pgkafka_crds::{JsonHandlingMode, ListenerSpec, PgKafkaConnectorSpec, QualifiedTable};

use super::encode::EnvelopeContext;
use super::fanout::Encoder;
use super::limit::RecordLimit;
use super::route::Routes;
use crate::decode::relations::{KeyColumns, KeyPolicy};
use crate::decode::values::ValueModes;
use crate::metrics::Metrics;

/// Record keys: the catalog's primary keys, and `keyColumns` where given.
pub(super) fn key_policy(
    routes: &Routes,
    spec: &PgKafkaConnectorSpec,
    primary_keys: HashMap<QualifiedTable, Vec<String>>,
) -> KeyPolicy {
    let mut policy = KeyPolicy {
        primary_keys,
        ..KeyPolicy::default()
    };
    for (i, (listener, l)) in routes.listeners.iter().zip(&spec.listeners).enumerate() {
        key_columns(&mut policy, &listener.table, l, &spec.listener_field(i));
    }
    policy
}

/// Listener `l`'s `keyColumns`, when given, key `table`'s records.
pub(super) fn key_columns(
    policy: &mut KeyPolicy,
    table: &QualifiedTable,
    l: &ListenerSpec,
    field: &str,
) {
    if let Some(keys) = &l.key_columns {
        policy.key_columns.insert(
            table.clone(),
            KeyColumns {
                field: format!("{field}.keyColumns"),
                columns: keys.clone(),
            },
        );
    }
}

/// How records are written: the handling modes, and the size limit with
/// what to do past it (`dead_letters`: the dead-letter topic, its index,
/// context headers or not).
pub(super) fn encoder(
    name: &str,
    spec: &PgKafkaConnectorSpec,
    metrics: &Metrics,
    max_message_bytes: usize,
    dead_letters: Option<(Arc<str>, usize, bool)>,
) -> Encoder {
    let kafka = &spec.kafka;
    Encoder {
        context: EnvelopeContext {
            name: name.to_owned(),
            database: spec.postgres.database.clone(),
            modes: ValueModes {
                decimal: kafka.decimal_handling_mode,
                time: kafka.time_precision_mode,
                binary: kafka.binary_handling_mode,
                json_as_text: kafka.schemas || kafka.json_handling_mode == JsonHandlingMode::String,
            },
        },
        payload_hint: AtomicUsize::new(256),
        limit: RecordLimit {
            max_bytes: kafka
                .max_record_bytes
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(max_message_bytes),
            connector: name.to_owned(),
            dead_letters,
            dead_lettered: metrics.dead_lettered.clone(),
        },
    }
}

/// Targets with an error policy of their own (`targets[].errors`) get a
/// limit of their own: the connector's, with their dead-letter topic.
pub(super) fn own_limits(routes: &mut Routes, spec: &PgKafkaConnectorSpec, base: &RecordLimit) {
    for (l, listener) in spec.listeners.iter().enumerate() {
        own_limit(routes, l, listener, base);
    }
}

/// [`own_limits`] of listener `l` alone.
pub(super) fn own_limit(
    routes: &mut Routes,
    l: usize,
    listener: &ListenerSpec,
    base: &RecordLimit,
) {
    for (j, t) in listener.targets.iter().enumerate() {
        let Some(errors) = &t.errors else {
            continue;
        };
        let dead_letters = errors.dead_letters().map(|d| {
            let (index, topic) = routes.topic_index(&d.topic);
            (topic, index, d.context_headers)
        });
        routes.listeners[l].targets[j].limit = Some(RecordLimit {
            dead_letters,
            ..base.clone()
        });
    }
}
