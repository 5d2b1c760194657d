//! Creating topics: the data topics as `spec.kafka.topicDefaults` and the
//! targets' `topicCreation` say, the engine's internal topics compacted (and
//! an existing internal topic checked to be). Topics that exist are left as
//! they are.

use std::time::Duration;

use pgkafka_crds::TopicCreation;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

use super::SinkError;
use crate::event::TopicFacts;

fn admin_options() -> AdminOptions {
    AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(10)))
        .request_timeout(Some(Duration::from_secs(10)))
}

/// Creates each topic that does not exist yet as its settings say (the
/// broker's default for each part left out); returns the admin client.
pub(crate) async fn create_missing<'a>(
    base: &ClientConfig,
    topics: impl Iterator<Item = (&'a str, &'a TopicCreation)>,
) -> Result<AdminClient<DefaultClientContext>, SinkError> {
    let admin: AdminClient<DefaultClientContext> = base.create().map_err(SinkError::Kafka)?;
    let topics: Vec<(&str, &TopicCreation)> = topics.collect();
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, c)| {
            let replication = TopicReplication::Fixed(c.replication_factor.unwrap_or(-1));
            c.configs.iter().fold(
                NewTopic::new(name, c.partitions.unwrap_or(-1), replication),
                |n, (k, v)| n.set(k, v),
            )
        })
        .collect();
    let results = admin
        .create_topics(&new, &admin_options())
        .await
        .map_err(SinkError::Kafka)?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                let settings = topics
                    .iter()
                    .find(|(name, _)| *name == topic)
                    .map(|(_, c)| describe(c))
                    .unwrap_or_default();
                return Err(SinkError::CreateTopic {
                    topic,
                    settings,
                    code,
                });
            }
        }
    }
    Ok(admin)
}

/// What the broker says of each of `topics` (its size limit, compaction);
/// a topic it does not describe gets unknown facts and a warning: the
/// records then meet only the engine's own limit.
pub(crate) async fn facts(
    admin: &AdminClient<DefaultClientContext>,
    topics: &[&str],
) -> Vec<TopicFacts> {
    let specifiers: Vec<ResourceSpecifier<'_>> =
        topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
    let described = match admin.describe_configs(&specifiers, &admin_options()).await {
        Ok(d) => d,
        Err(error) => {
            tracing::warn!(%error, "the broker does not describe topic configs: only spec.kafka.maxRecordBytes is checked");
            return vec![TopicFacts::default(); topics.len()];
        }
    };
    topics
        .iter()
        .zip(described)
        .map(|(topic, result)| match result {
            Ok(r) => {
                let value = |name: &str| r.get(name).and_then(|e| e.value.clone());
                TopicFacts {
                    max_message_bytes: value("max.message.bytes").and_then(|v| v.parse().ok()),
                    compacted: value("cleanup.policy")
                        .is_some_and(|p| p.split(',').any(|v| v.trim() == "compact")),
                    refused: None,
                }
            }
            Err(code) => {
                tracing::warn!(topic, ?code, "the broker does not describe this topic");
                TopicFacts::default()
            }
        })
        .collect()
}

/// The settings a topic was created with, for an error message: empty for
/// the broker's defaults.
fn describe(c: &TopicCreation) -> String {
    let mut parts = Vec::new();
    if let Some(p) = c.partitions {
        parts.push(format!("partitions {p}"));
    }
    if let Some(r) = c.replication_factor {
        parts.push(format!("replicationFactor {r}"));
    }
    parts.extend(c.configs.iter().map(|(k, v)| format!("{k}={v}")));
    if parts.is_empty() {
        String::new()
    } else {
        format!(" with {}", parts.join(", "))
    }
}

/// How the engine's internal topics are created: compacted, so the latest
/// record per key stays whatever the retention (a finished snapshot, the
/// last checkpoint); segments roll hourly so compaction can run.
const INTERNAL_TOPIC_CONFIG: [(&str, &str); 3] = [
    ("cleanup.policy", "compact"),
    ("min.compaction.lag.ms", "0"),
    ("segment.ms", "3600000"),
];

/// Creates the engine's internal `topics` compacted, and checks that those
/// which exist already are: one with `cleanup.policy=delete` would lose its
/// records to retention (and with them a finished snapshot, or the position
/// a restart resumes from), so it is refused, naming the topic and the fix.
/// A broker that does not report the setting is trusted, with a warning.
pub(crate) async fn ensure_compacted(
    base: &ClientConfig,
    topics: &[&str],
) -> Result<(), SinkError> {
    let compacted = TopicCreation {
        configs: INTERNAL_TOPIC_CONFIG
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..TopicCreation::default()
    };
    let admin = create_missing(base, topics.iter().map(|t| (*t, &compacted))).await?;
    let opts = admin_options();
    let specifiers: Vec<ResourceSpecifier<'_>> =
        topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
    let described = admin
        .describe_configs(&specifiers, &opts)
        .await
        .map_err(SinkError::Kafka)?;
    for (topic, result) in topics.iter().zip(described) {
        let policy = result
            .ok()
            .and_then(|r| r.get("cleanup.policy").and_then(|e| e.value.clone()));
        match policy {
            Some(p) if p.split(',').any(|v| v.trim() == "compact") => {}
            Some(p) => {
                return Err(SinkError::NotCompacted {
                    topic: (*topic).to_owned(),
                    policy: p,
                })
            }
            None => tracing::warn!(topic, "the broker does not report this internal topic's cleanup.policy; it must be compact"),
        }
    }
    Ok(())
}
