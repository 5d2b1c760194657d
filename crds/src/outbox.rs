//! The outbox: a target that sends the rows of an outbox table as events,
//! Debezium's Outbox Event Router (`io.debezium.transforms.outbox.EventRouter`)
//! with its defaults, so a Debezium outbox table (`id`, `aggregatetype`,
//! `aggregateid`, `type`, `payload`) works unchanged. Field names are
//! Debezium's options in camelCase.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The template variable the routing column's value fills.
pub const ROUTED_BY_VALUE: &str = "${routedByValue}";

/// How an outbox table's rows become events.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutboxSpec {
    /// Column holding the event id, sent as header `id`
    /// (`table.field.event.id`).
    #[serde(default = "default_id")]
    pub event_id: String,
    /// Column holding the record key (`table.field.event.key`); its text is
    /// the key.
    #[serde(default = "default_key")]
    pub event_key: String,
    /// Column holding the event's payload, the record's value
    /// (`table.field.event.payload`).
    #[serde(default = "default_payload")]
    pub payload: String,
    /// Column whose value routes the event (`route.by.field`).
    #[serde(default = "default_route_by")]
    pub route_by_field: String,
    /// Topic name, `${routedByValue}` standing for the routing column's
    /// value (`route.topic.replacement`).
    #[serde(default = "default_topic")]
    pub topic: String,
    /// Column whose value is the record's Kafka timestamp (a `timestamp`,
    /// `timestamptz` or epoch-milliseconds `bigint`), instead of the commit
    /// time (`table.field.event.timestamp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// Other columns sent with the event (`table.fields.additional.placement`):
    /// as headers, or beside the payload in the value, which then becomes
    /// `{"payload": ..., <alias>: ...}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_placement: Vec<AdditionalField>,
    /// Send the payload as JSON rather than as a string holding JSON text
    /// (`table.expand.json.payload`). When omitted: expanded for `json` and
    /// `jsonb` columns, a string for others (Debezium's default is never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expand_json_payload: Option<bool>,
    /// A NULL or empty payload sends a tombstone (null value) for the key
    /// (`route.tombstone.on.empty.payload`).
    #[serde(default)]
    pub tombstone_on_empty_payload: bool,
    /// What an UPDATE of an outbox row does: `ignore` (the default; counted
    /// in `pgkafka_outbox_ignored_total`, as Debezium warns and skips),
    /// `route` (sent as an event of the new row) or `fail` (the engine
    /// halts, as Debezium's `table.op.invalid.behavior: fatal`).
    #[serde(default)]
    pub on_update: OutboxOperation,
    /// What a DELETE of an outbox row does: `ignore` (the default, so a row
    /// inserted and deleted in one transaction is one event and the table
    /// never grows), `route` (an event of the old row; the table needs
    /// `REPLICA IDENTITY FULL`) or `fail`.
    #[serde(default)]
    pub on_delete: OutboxOperation,
}

/// What an UPDATE or DELETE of an outbox row does.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OutboxOperation {
    /// Not sent; counted.
    #[default]
    Ignore,
    /// Sent as an event.
    Route,
    /// The engine halts (the slot keeps the change).
    Fail,
}

/// One more column of the outbox table sent with the event.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdditionalField {
    /// The column.
    pub column: String,
    /// `header` or `envelope` (beside the payload in the value).
    pub placement: Placement,
    /// Header or field name; the column's name when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
}

/// Where an additional column goes.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Placement {
    /// A record header holding the value's text.
    Header,
    /// A field of the value, beside `payload`.
    Envelope,
}

impl AdditionalField {
    /// Its header or field name.
    pub fn name(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.column)
    }
}

impl Default for OutboxSpec {
    fn default() -> Self {
        OutboxSpec {
            event_id: default_id(),
            event_key: default_key(),
            payload: default_payload(),
            route_by_field: default_route_by(),
            topic: default_topic(),
            timestamp: None,
            additional_placement: Vec::new(),
            expand_json_payload: None,
            tombstone_on_empty_payload: false,
            on_update: OutboxOperation::Ignore,
            on_delete: OutboxOperation::Ignore,
        }
    }
}

impl OutboxSpec {
    /// Every column it reads, with the field naming it.
    pub fn columns(&self) -> Vec<(String, &str)> {
        let mut out = vec![
            ("eventId".to_owned(), self.event_id.as_str()),
            ("eventKey".to_owned(), self.event_key.as_str()),
            ("payload".to_owned(), self.payload.as_str()),
            ("routeByField".to_owned(), self.route_by_field.as_str()),
        ];
        if let Some(t) = &self.timestamp {
            out.push(("timestamp".to_owned(), t.as_str()));
        }
        for (i, a) in self.additional_placement.iter().enumerate() {
            out.push((
                format!("additionalPlacement[{i}].column"),
                a.column.as_str(),
            ));
        }
        out
    }

    /// The topic of an event whose routing column holds `value`.
    pub fn topic_for(&self, value: &str) -> String {
        self.topic.replace(ROUTED_BY_VALUE, value)
    }

    /// What is wrong with it at `field`, each as (path, message).
    pub(crate) fn problems(&self, field: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (name, column) in self.columns() {
            if column.is_empty() {
                out.push((format!("{field}.{name}"), "must name a column".into()));
            }
        }
        let rest = self.topic.replace(ROUTED_BY_VALUE, "");
        if let Some(start) = rest.find("${") {
            let var: String = rest[start..].chars().take_while(|c| *c != '}').collect();
            out.push((
                format!("{field}.topic"),
                format!(
                    "{var}}} is not a template variable; the one there is is {ROUTED_BY_VALUE}"
                ),
            ));
        } else if rest.is_empty() && !self.topic.contains(ROUTED_BY_VALUE) {
            out.push((format!("{field}.topic"), "must not be empty".into()));
        }
        for (i, a) in self.additional_placement.iter().enumerate() {
            let taken = ["payload"];
            if a.placement == Placement::Envelope && taken.contains(&a.name()) {
                out.push((
                    format!("{field}.additionalPlacement[{i}].alias"),
                    "`payload` is the payload's own field: give another alias".into(),
                ));
            }
        }
        out
    }
}

fn default_id() -> String {
    "id".into()
}
fn default_key() -> String {
    "aggregateid".into()
}
fn default_payload() -> String {
    "payload".into()
}
fn default_route_by() -> String {
    "aggregatetype".into()
}
fn default_topic() -> String {
    format!("outbox.event.{ROUTED_BY_VALUE}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debeziums_defaults_and_the_template() {
        let o: OutboxSpec = serde_yaml::from_str("{}").expect("defaults");
        assert_eq!(o, OutboxSpec::default());
        assert_eq!(o.topic_for("Order"), "outbox.event.Order");
        assert!(o.problems("f").is_empty());
        let bad = OutboxSpec {
            topic: "events.${aggregate}".into(),
            ..OutboxSpec::default()
        };
        let problems = bad.problems("spec.listeners[0].targets[0].outbox");
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].0, "spec.listeners[0].targets[0].outbox.topic");
        assert!(problems[0].1.contains("${aggregate}"), "{problems:?}");
    }
}
