//! Start-up validation of a spec. Every error names the field path
//! (`spec.listeners[1].table`) and the offending value, and all errors are
//! reported at once so a user fixes the manifest in one pass.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use crate::filter::condition_problems;
use crate::{Action, PgKafkaConnectorSpec, QualifiedTable, TargetSpec, TopicCreation};

/// One invalid field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path from the resource root, e.g. `spec.slot.name`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// Every invalid field of a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", e.field, e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

/// librdkafka properties the engine owns: overriding them would break the
/// delivery guarantee or the partitioning contract.
const RESERVED_KAFKA_PROPERTIES: [(&str, &str); 8] = [
    (
        "bootstrap.servers",
        "set spec.kafka.bootstrapServers instead",
    ),
    ("acks", "the engine requires acks=all"),
    ("request.required.acks", "the engine requires acks=all"),
    (
        "enable.idempotence",
        "the engine requires an idempotent producer",
    ),
    (
        "partitioner",
        "the engine uses the Java-compatible murmur2 partitioner",
    ),
    (
        "sasl.password",
        "never inline a secret: set spec.kafka.saslSecretRef",
    ),
    (
        "sasl.jaas.config",
        "never inline a secret: set spec.kafka.saslSecretRef",
    ),
    (
        "transactional.id",
        "the engine derives it from the slot for exactlyOnce",
    ),
];

#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }
}

impl PgKafkaConnectorSpec {
    /// Checks every field; `Err` lists each invalid one with its path.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errs = Errors::default();
        self.validate_postgres(&mut errs);
        self.validate_names(&mut errs);
        self.validate_kafka(&mut errs);
        self.validate_listeners(&mut errs);
        for (path, message) in self.errors.problems("spec.errors") {
            errs.push(path, message);
        }
        if let Some(dlq) = &self.errors.dead_letter_queue {
            if let Some(reason) = topic_name_problem(&dlq.topic) {
                errs.push("spec.errors.deadLetterQueue.topic", reason);
            }
        }
        if self.kafka.max_record_bytes.is_some_and(|n| n < 1) {
            errs.push("spec.kafka.maxRecordBytes", "must be at least 1");
        }
        for (i, m) in self.messages.iter().enumerate() {
            let field = format!("spec.messages[{i}]");
            for (path, message) in m.problems(&field) {
                errs.push(path, message);
            }
            if let Some(reason) = topic_name_problem(&m.topic_name(&self.kafka.topic_prefix)) {
                errs.push(format!("{field}.topic"), reason);
            }
        }
        if errs.0.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(errs.0))
        }
    }

    /// The listeners' tables, parsed. Call after `validate`; a name that does not
    /// parse is skipped here because `validate` already reported it.
    pub fn tables(&self) -> Vec<QualifiedTable> {
        self.listeners
            .iter()
            .filter_map(|l| QualifiedTable::parse(&l.table).ok())
            .collect()
    }

    fn validate_postgres(&self, errs: &mut Errors) {
        let pg = &self.postgres;
        if pg.host.trim().is_empty() {
            errs.push("spec.postgres.host", "must not be empty");
        }
        if pg.port == 0 {
            errs.push("spec.postgres.port", "must be between 1 and 65535");
        }
        if pg.database.is_empty() {
            errs.push("spec.postgres.database", "must not be empty");
        }
        match (&pg.user, &pg.user_secret_ref) {
            (Some(_), Some(_)) => errs.push(
                "spec.postgres.user",
                "set either user or userSecretRef, not both",
            ),
            (None, None) => errs.push("spec.postgres.user", "set user or userSecretRef"),
            (Some(u), None) if u.is_empty() => errs.push("spec.postgres.user", "must not be empty"),
            _ => {}
        }
        let refs = [
            ("userSecretRef", &pg.user_secret_ref),
            ("passwordSecretRef", &pg.password_secret_ref),
            ("caSecretRef", &pg.ca_secret_ref),
        ];
        for (name, r) in refs {
            if let Some(r) = r {
                if r.name.is_empty() || r.key.is_empty() || r.key.contains('/') {
                    errs.push(
                        format!("spec.postgres.{name}"),
                        format!(
                            "name and key must be non-empty and key without '/': {{name: {:?}, key: {:?}}}",
                            r.name, r.key
                        ),
                    );
                }
            }
        }
    }

    fn validate_names(&self, errs: &mut Errors) {
        let slot = &self.slot.name;
        if slot.is_empty()
            || slot.len() > 63
            || !slot
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            errs.push(
                "spec.slot.name",
                format!("{slot:?} must be 1-63 characters of a-z, 0-9 and _"),
            );
        }
        let publication = &self.publication.name;
        if publication.is_empty()
            || publication.len() > 63
            || publication.chars().any(char::is_control)
        {
            errs.push(
                "spec.publication.name",
                format!("{publication:?} must be 1-63 bytes without control characters"),
            );
        }
        let refresh = self.publication.refresh_interval_seconds;
        if !(1..=3600).contains(&refresh) {
            errs.push(
                "spec.publication.refreshIntervalSeconds",
                format!("{refresh} must be within 1..=3600"),
            );
        }
    }

    fn validate_kafka(&self, errs: &mut Errors) {
        let kafka = &self.kafka;
        if kafka.bootstrap_servers.is_empty() {
            errs.push(
                "spec.kafka.bootstrapServers",
                "must list at least one broker",
            );
        }
        for (i, server) in kafka.bootstrap_servers.iter().enumerate() {
            let port_ok = server.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
            });
            if !port_ok {
                errs.push(
                    format!("spec.kafka.bootstrapServers[{i}]"),
                    format!("{server:?} is not host:port"),
                );
            }
        }
        if let Some(reason) = topic_name_problem(&kafka.topic_prefix) {
            errs.push(
                "spec.kafka.topicPrefix",
                format!("{:?} {reason}", kafka.topic_prefix),
            );
        }
        for (path, message) in kafka.topic_defaults.problems("spec.kafka.topicDefaults") {
            errs.push(path, message);
        }
        if kafka.transaction_topic.is_some() && !kafka.provide_transaction_metadata {
            errs.push(
                "spec.kafka.transactionTopic",
                "set provideTransactionMetadata: true to write transaction metadata there",
            );
        }
        if let Some(heartbeat) = &kafka.heartbeat {
            for (path, message) in heartbeat.problems() {
                errs.push(path, message);
            }
            if let Some(reason) = topic_name_problem(&heartbeat.topic_name(&kafka.topic_prefix)) {
                errs.push("spec.kafka.heartbeat.topic", reason);
            }
        }
        for (key, why) in RESERVED_KAFKA_PROPERTIES {
            if let Some(value) = kafka.properties.get(key) {
                let harmless = match key {
                    "acks" | "request.required.acks" => matches!(value.as_str(), "all" | "-1"),
                    "enable.idempotence" => value == "true",
                    _ => false,
                };
                if !harmless {
                    errs.push(
                        format!("spec.kafka.properties.{key}"),
                        format!("{value:?}: {why}"),
                    );
                }
            }
        }
    }

    fn validate_listeners(&self, errs: &mut Errors) {
        if self.listeners.is_empty() {
            errs.push("spec.listeners", "must name at least one table");
        }
        let mut seen = HashSet::new();
        for (i, listener) in self.listeners.iter().enumerate() {
            let field = format!("spec.listeners[{i}]");
            if let Some(selector) = &listener.tables {
                if !listener.table.is_empty() {
                    errs.push(format!("{field}.table"), "give table or tables, not both");
                }
                for (path, message) in selector.problems(&format!("{field}.tables")) {
                    errs.push(path, message);
                }
            } else {
                match QualifiedTable::parse(&listener.table) {
                    Ok(table) => {
                        if !seen.insert(table.clone()) {
                            errs.push(
                                format!("{field}.table"),
                                format!(
                                    "{table} is listed twice; give one listener several targets"
                                ),
                            );
                        }
                    }
                    Err(e) => errs.push(
                        format!("{field}.table"),
                        format!("{e} (or select many with tables)"),
                    ),
                }
            }
            if listener.actions.is_empty() {
                errs.push(format!("{field}.actions"), "must list at least one action");
            }
            if let Some(keys) = &listener.key_columns {
                if keys.is_empty() || keys.iter().any(String::is_empty) {
                    errs.push(
                        format!("{field}.keyColumns"),
                        "must list non-empty column names (omit it for the primary key)",
                    );
                }
            }
            for (j, target) in listener.targets.iter().enumerate() {
                validate_target(
                    target,
                    &format!("{field}.targets[{j}]"),
                    &listener.actions,
                    errs,
                );
            }
        }
        self.validate_groups(errs);
        self.validate_topic_creation(errs);
    }

    /// Targets that write to one topic agree on how it is created.
    fn validate_topic_creation(&self, errs: &mut Errors) {
        let mut seen: BTreeMap<String, (&TopicCreation, String)> = BTreeMap::new();
        for (i, listener) in self.listeners.iter().enumerate() {
            let Ok(table) = QualifiedTable::parse(&listener.table) else {
                continue;
            };
            for (j, target) in listener.targets.iter().enumerate() {
                let Some(creation) = &target.topic_creation else {
                    continue;
                };
                if target.outbox.is_some() {
                    // Its topics are named by its rows: nothing to agree on.
                    for (path, message) in creation
                        .problems(&format!("spec.listeners[{i}].targets[{j}].topicCreation"))
                    {
                        errs.push(path, message);
                    }
                    continue;
                }
                let here = format!("spec.listeners[{i}].targets[{j}].topicCreation");
                for (path, message) in creation.problems(&here) {
                    errs.push(path, message);
                }
                let topic = target
                    .topic
                    .clone()
                    .unwrap_or_else(|| table.default_topic(&self.kafka.topic_prefix));
                match seen.get(&topic) {
                    Some((first, at)) if *first != creation => errs.push(
                        here,
                        format!("{topic:?} is also written by {at} with other settings; targets of one topic agree on how it is created"),
                    ),
                    Some(_) => {}
                    None => {
                        seen.insert(topic, (creation, here));
                    }
                }
            }
        }
    }

    /// Targets of one group share one topic: their messages are one message.
    fn validate_groups(&self, errs: &mut Errors) {
        let mut topics: BTreeMap<&str, (String, String)> = BTreeMap::new();
        for (i, listener) in self.listeners.iter().enumerate() {
            let Ok(table) = QualifiedTable::parse(&listener.table) else {
                continue;
            };
            for (j, target) in listener.targets.iter().enumerate() {
                let Some(group) = target.group.as_deref() else {
                    continue;
                };
                let topic = target
                    .topic
                    .clone()
                    .unwrap_or_else(|| table.default_topic(&self.kafka.topic_prefix));
                let here = format!("spec.listeners[{i}].targets[{j}]");
                match topics.get(group) {
                    None => {
                        topics.insert(group, (topic, here));
                    }
                    Some((first, at)) if *first != topic => errs.push(
                        format!("{here}.topic"),
                        format!("group {group:?} sends to {first:?} (at {at}); every target of a group names the same topic, not {topic:?}"),
                    ),
                    Some(_) => {}
                }
            }
        }
    }
}

fn validate_target(
    target: &TargetSpec,
    field: &str,
    listener_actions: &[Action],
    errs: &mut Errors,
) {
    if let Some(topic) = &target.topic {
        // A template is checked as a matched table would fill it.
        let sample = QualifiedTable {
            schema: "s".into(),
            name: "t".into(),
        };
        if let Some(reason) = topic_name_problem(&crate::fill_topic(topic, &sample)) {
            errs.push(format!("{field}.topic"), format!("{topic:?} {reason}"));
        }
    }
    if let Some(outbox) = &target.outbox {
        for (path, message) in outbox.problems(&format!("{field}.outbox")) {
            errs.push(path, message);
        }
        let own = [
            ("topic", target.topic.is_some()),
            ("envelope", target.envelope.is_some()),
            ("columns", target.columns.is_some()),
            ("sendAsTransaction", target.send_as_transaction),
            ("group", target.group.is_some()),
            ("columnMasks", !target.column_masks.is_empty()),
        ];
        for (name, set) in own {
            if set {
                errs.push(
                    format!("{field}.{name}"),
                    "an outbox target takes its topic and shape from `outbox`: remove it",
                );
            }
        }
    }
    validate_masks_and_errors(target, field, errs);
    if let Some(group) = &target.group {
        if group.is_empty() {
            errs.push(format!("{field}.group"), "must not be empty");
        }
    }
    if let Some(columns) = &target.columns {
        match (&columns.include, &columns.exclude) {
            (Some(list), None) | (None, Some(list)) if !list.is_empty() => {}
            _ => errs.push(
                format!("{field}.columns"),
                "give exactly one non-empty list: include or exclude",
            ),
        }
    }
    let Some(filter) = &target.filter else {
        return;
    };
    if let Some(actions) = &filter.actions {
        if actions.is_empty() {
            errs.push(
                format!("{field}.filter.actions"),
                "must list at least one action (omit it for all)",
            );
        }
        for a in actions.iter().filter(|a| !listener_actions.contains(a)) {
            errs.push(
                format!("{field}.filter.actions"),
                format!(
                    "{a:?} is not captured by the listener (its actions: {listener_actions:?})"
                ),
            );
        }
    }
    let mut problems = Vec::new();
    for (k, c) in filter.conditions.iter().enumerate() {
        condition_problems(c, &format!("{field}.filter.conditions[{k}]"), &mut problems);
    }
    for (path, message) in problems {
        errs.push(path, message);
    }
}

/// A target's `columnMasks` and its own `errors`.
fn validate_masks_and_errors(target: &TargetSpec, field: &str, errs: &mut Errors) {
    let masks = crate::masks::problems(&target.column_masks, &format!("{field}.columnMasks"));
    let errors = target
        .errors
        .as_ref()
        .map(|e| e.problems(&format!("{field}.errors")))
        .unwrap_or_default();
    for (path, message) in masks.into_iter().chain(errors) {
        errs.push(path, message);
    }
}

/// Kafka's own topic-name rule.
fn topic_name_problem(topic: &str) -> Option<&'static str> {
    if topic.is_empty() {
        Some("must not be empty")
    } else if topic.len() > 249 {
        Some("is longer than 249 characters")
    } else if topic == "." || topic == ".." {
        Some("is not a valid topic name")
    } else if !topic
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Some("may only hold a-z, A-Z, 0-9, '.', '_' and '-'")
    } else {
        None
    }
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
