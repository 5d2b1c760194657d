//! How the engine creates the data topics it writes to (Debezium's
//! `topic.creation.*`): `spec.kafka.topicDefaults` for every topic, a
//! target's `topicCreation` over it for that target's topic. Topics that
//! exist are left as they are.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Partitions, replication factor and topic configs for a topic the engine
/// creates; each omitted part is the broker's default.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TopicCreation {
    /// Partition count; the broker's `num.partitions` when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub partitions: Option<i32>,
    /// Replication factor; the broker's `default.replication.factor` when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub replication_factor: Option<i32>,
    /// Topic configs as Kafka names them, for example `cleanup.policy: compact`,
    /// `retention.ms: "604800000"`, `min.insync.replicas: "2"`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub configs: BTreeMap<String, String>,
}

impl TopicCreation {
    /// `over` on top of `self`: its partitions and replication factor when
    /// set, its configs key by key.
    pub fn merged(&self, over: &TopicCreation) -> TopicCreation {
        let mut configs = self.configs.clone();
        configs.extend(over.configs.iter().map(|(k, v)| (k.clone(), v.clone())));
        TopicCreation {
            partitions: over.partitions.or(self.partitions),
            replication_factor: over.replication_factor.or(self.replication_factor),
            configs,
        }
    }

    /// Whether nothing is set (the broker's defaults throughout).
    pub fn is_default(&self) -> bool {
        *self == TopicCreation::default()
    }

    /// What is wrong with these settings at `field`, each as (path, message).
    pub(crate) fn problems(&self, field: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (name, value) in [
            ("partitions", self.partitions),
            ("replicationFactor", self.replication_factor),
        ] {
            if let Some(v) = value.filter(|&v| v < 1) {
                out.push((format!("{field}.{name}"), format!("{v} must be at least 1")));
            }
        }
        for (key, value) in &self.configs {
            if key.trim().is_empty() || key.chars().any(char::is_whitespace) {
                out.push((
                    format!("{field}.configs"),
                    format!("{key:?} is not a topic config name"),
                ));
            } else if value.is_empty() {
                out.push((format!("{field}.configs.{key}"), "must not be empty".into()));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_overrides_the_defaults_part_by_part() {
        let defaults = TopicCreation {
            partitions: Some(6),
            replication_factor: Some(3),
            configs: [("cleanup.policy", "compact"), ("retention.ms", "1000")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let over = TopicCreation {
            partitions: Some(12),
            replication_factor: None,
            configs: [("retention.ms".to_string(), "5".to_string())].into(),
        };
        let m = defaults.merged(&over);
        assert_eq!(m.partitions, Some(12));
        assert_eq!(m.replication_factor, Some(3));
        assert_eq!(m.configs["cleanup.policy"], "compact");
        assert_eq!(m.configs["retention.ms"], "5");
        assert!(TopicCreation::default().is_default() && !m.is_default());
    }

    #[test]
    fn bad_settings_name_their_field() {
        let bad = TopicCreation {
            partitions: Some(0),
            replication_factor: Some(-1),
            configs: [
                ("retention ms".to_string(), "1".to_string()),
                ("segment.ms".to_string(), String::new()),
            ]
            .into(),
        };
        let paths: Vec<String> = bad
            .problems("spec.kafka.topicDefaults")
            .into_iter()
            .map(|p| p.0)
            .collect();
        assert_eq!(
            paths,
            [
                "spec.kafka.topicDefaults.partitions",
                "spec.kafka.topicDefaults.replicationFactor",
                "spec.kafka.topicDefaults.configs",
                "spec.kafka.topicDefaults.configs.segment.ms",
            ]
        );
    }
}
