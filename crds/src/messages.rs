//! Logical decoding messages (`pg_logical_emit_message(transactional,
//! prefix, content)`, pgoutput's `messages` option): which prefixes a
//! connector sends on, and where.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Messages of some prefixes, sent as Debezium's message events.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MessageSpec {
    /// The prefixes taken (Debezium's `message.prefix.include.list`): each
    /// exact, or ending in `*` for every prefix that starts so (`*` alone
    /// takes all). A message goes to the first entry that takes it.
    #[schemars(length(min = 1))]
    pub prefixes: Vec<String>,
    /// Topic; `<topicPrefix>.message` (Debezium's) when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-zA-Z0-9._-]{1,249}$"))]
    pub topic: Option<String>,
    /// The outbox without a table: each message's content is a JSON object
    /// whose fields the outbox router reads as it reads an outbox table's
    /// columns (`id`, `aggregatetype`, `aggregateid`, `payload`... by
    /// default), so the event goes where an outbox row would, with nothing
    /// to insert, delete or vacuum. The topic then comes from `outbox.topic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbox: Option<crate::OutboxSpec>,
}

impl MessageSpec {
    /// Whether this entry takes messages with `prefix`.
    pub fn takes(&self, prefix: &str) -> bool {
        self.prefixes.iter().any(|p| match p.strip_suffix('*') {
            Some(start) => prefix.starts_with(start),
            None => p == prefix,
        })
    }

    /// Its topic for connectors with `topic_prefix`.
    pub fn topic_name(&self, topic_prefix: &str) -> String {
        self.topic
            .clone()
            .unwrap_or_else(|| format!("{topic_prefix}.message"))
    }

    /// What is wrong with entry `field`, each as (path, message).
    pub(crate) fn problems(&self, field: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(outbox) = &self.outbox {
            out.extend(outbox.problems(&format!("{field}.outbox")));
            if self.topic.is_some() {
                out.push((
                    format!("{field}.topic"),
                    "an outbox entry's topic is `outbox.topic`: remove it".into(),
                ));
            }
        }
        if self.prefixes.is_empty() {
            out.push((
                format!("{field}.prefixes"),
                "must list at least one prefix (`*` takes all)".into(),
            ));
        }
        for (i, p) in self.prefixes.iter().enumerate() {
            if p.is_empty() {
                out.push((format!("{field}.prefixes[{i}]"), "must not be empty".into()));
            } else if p[..p.len() - 1].contains('*') {
                out.push((
                    format!("{field}.prefixes[{i}]"),
                    format!("{p:?}: `*` may only end a prefix"),
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_starting_prefixes() {
        let m = MessageSpec {
            prefixes: vec!["audit".into(), "app.*".into()],
            topic: None,
            outbox: None,
        };
        assert!(m.takes("audit") && m.takes("app.orders") && m.takes("app."));
        assert!(!m.takes("audit2") && !m.takes("app"));
        assert_eq!(m.topic_name("cdc"), "cdc.message");
        let all = MessageSpec {
            prefixes: vec!["*".into()],
            topic: Some("t".into()),
            outbox: None,
        };
        assert!(all.takes("") && all.takes("anything"));
        let bad = MessageSpec {
            prefixes: vec![String::new(), "a*b".into()],
            topic: None,
            outbox: None,
        };
        let paths: Vec<String> = bad
            .problems("spec.messages[0]")
            .into_iter()
            .map(|p| p.0)
            .collect();
        assert_eq!(
            paths,
            [
                "spec.messages[0].prefixes[0]",
                "spec.messages[0].prefixes[1]"
            ]
        );
    }
}
