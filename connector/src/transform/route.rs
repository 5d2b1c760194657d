//! Listeners and their targets, compiled from the spec once; and, per table
//! shape, each target's filter and column selection.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use pgkafka_crds::{
    Action, ColumnMaskSpec, ColumnsSpec, Envelope, FilterSpec, KafkaSpec, ListenerSpec, OutboxSpec,
    PgKafkaConnectorSpec, QualifiedTable, TargetSpec, TopicCreation,
};
use prometheus::IntCounter;

use super::filter::{CompiledFilter, FilterError};
use super::limit::RecordLimit;
use super::mask::{self, CompiledMasks, Salts};
use super::outbox::CompiledOutbox;
use super::TransformError;
use crate::event::{TableShape, TopicFacts};
use crate::metrics::Metrics;

/// Index of an action in per-action tables.
pub(crate) fn action_index(a: Action) -> usize {
    match a {
        Action::Insert => 0,
        Action::Update => 1,
        Action::Delete => 2,
        Action::Truncate => 3,
    }
}

/// A target of a listener.
#[derive(Debug)]
pub(crate) struct Target {
    /// `spec.listeners[i].targets[j]`, for errors.
    pub path: String,
    /// Destination topic.
    pub topic: Arc<str>,
    /// Position of `topic` in [`Routes::topics`]; [`NO_TOPIC`] for an
    /// outbox target, whose rows name their topics.
    pub topic_index: usize,
    /// The outbox spec of an outbox target.
    pub outbox: Option<OutboxSpec>,
    /// How the topics it creates at run time are created (outbox targets).
    pub creation: TopicCreation,
    /// Outbox rows its spec ignores (updates, deletes); an outbox target's only.
    pub ignored: Option<IntCounter>,
    /// Message shape.
    pub envelope: Envelope,
    /// Column selection, by name.
    pub columns: Option<ColumnsSpec>,
    /// Masked, hashed and truncated columns, by name.
    pub column_masks: Vec<ColumnMaskSpec>,
    /// Filter spec, compiled per table shape.
    pub filter: Option<FilterSpec>,
    /// The transaction group it feeds, if it sends whole transactions.
    pub group: Option<usize>,
    /// It receives snapshot rows.
    pub snapshot: bool,
    /// A tombstone follows each delete it receives.
    pub tombstones: bool,
    /// Changes it received.
    pub records: IntCounter,
    /// Changes its filter rejected.
    pub filtered: IntCounter,
    /// Bytes of the changes it received.
    pub bytes: IntCounter,
    /// Its own size limit and error policy (`targets[].errors`), instead
    /// of the connector's.
    pub limit: Option<RecordLimit>,
}

/// The sizes of a [`Routes`] at one moment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RoutesMark {
    listeners: usize,
    groups: usize,
    topics: usize,
}

/// The `topic_index` of a target with no topic of its own (an outbox).
pub(crate) const NO_TOPIC: usize = usize::MAX;

/// A listener: a table, the actions it captures, its targets.
#[derive(Debug)]
pub(crate) struct Listener {
    /// The table.
    pub table: QualifiedTable,
    /// `schema.table`, for messages.
    pub label: String,
    /// Captured actions, by [`action_index`].
    pub actions: [bool; 4],
    /// Where changes go.
    pub targets: Vec<Target>,
    /// Changes seen.
    pub changes: IntCounter,
}

/// A transaction group: one message per transaction to `topic`.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    /// Its name (`group`, or the target's path for a lone `sendAsTransaction`).
    pub name: String,
    /// Destination topic.
    pub topic: Arc<str>,
    /// Position of `topic` in [`Routes::topics`].
    pub topic_index: usize,
}

/// Every listener, group and topic of a spec.
#[derive(Debug)]
pub(crate) struct Routes {
    /// Listeners in spec order.
    pub listeners: Vec<Listener>,
    /// Listener index by table.
    by_table: HashMap<QualifiedTable, usize>,
    /// Transaction groups.
    pub groups: Vec<Group>,
    /// Every topic written to, each once.
    pub topics: TopicRegistry,
}

/// Every topic records go to, each once, with how it is created; records
/// carry their topic's index here. Outbox targets add topics while the
/// stream runs ([`TopicRegistry::take_added`]).
#[derive(Debug)]
pub(crate) struct TopicRegistry {
    /// The topics, in index order.
    pub names: Vec<Arc<str>>,
    /// Per topic (same index): how it is created when it does not exist.
    pub creation: Vec<TopicCreation>,
    /// Per topic (same index), once created: what the broker says of it.
    facts: Vec<TopicFacts>,
    /// `spec.kafka.topicDefaults`.
    defaults: TopicCreation,
    /// Topics below this index were handed out by `take_added` (or are
    /// the start-up ones).
    taken: usize,
}

impl TopicRegistry {
    /// The index of `topic`, added with `creation` when new.
    pub fn index_with(&mut self, topic: &str, creation: &TopicCreation) -> (usize, Arc<str>) {
        if let Some(i) = self.names.iter().position(|t| &**t == topic) {
            return (i, Arc::clone(&self.names[i]));
        }
        let name: Arc<str> = Arc::from(topic);
        self.names.push(Arc::clone(&name));
        self.creation.push(creation.clone());
        (self.names.len() - 1, name)
    }

    /// What the broker says of the topics from index `start` on.
    pub fn learn(&mut self, start: usize, facts: Vec<TopicFacts>) {
        let end = start + facts.len();
        if self.facts.len() < end {
            self.facts.resize(end, TopicFacts::default());
        }
        self.facts[start..end].clone_from_slice(&facts);
    }

    /// What the broker says of topic `index` (nothing known before it was
    /// created: an outbox row's new topic, say).
    pub fn facts(&self, index: usize) -> &TopicFacts {
        const UNKNOWN: &TopicFacts = &TopicFacts {
            max_message_bytes: None,
            compacted: false,
            refused: None,
        };
        self.facts.get(index).unwrap_or(UNKNOWN)
    }

    /// The topics added since last asked (the start-up ones count as asked
    /// once the stream starts), from `start` on.
    pub fn take_added(&mut self) -> (usize, Vec<(Arc<str>, TopicCreation)>) {
        let start = self.taken;
        self.taken = self.names.len();
        let added = self.names[start..]
            .iter()
            .cloned()
            .zip(self.creation[start..].iter().cloned())
            .collect();
        (start, added)
    }
}

impl Routes {
    /// Compiles a validated spec.
    pub fn new(spec: &PgKafkaConnectorSpec, metrics: &Metrics) -> Result<Self, TransformError> {
        let mut routes = Routes {
            listeners: Vec::with_capacity(spec.listeners.len()),
            by_table: HashMap::new(),
            groups: Vec::new(),
            topics: TopicRegistry {
                names: Vec::new(),
                creation: Vec::new(),
                facts: Vec::new(),
                defaults: spec.kafka.topic_defaults.clone(),
                taken: 0,
            },
        };
        for (i, l) in spec.listeners.iter().enumerate() {
            let settings = (&spec.kafka, spec.metrics.per_table);
            routes.add(l, i, &spec.listener_field(i), settings, metrics)?;
        }
        Ok(routes)
    }

    /// Adds listener `l` as listener `i` (the next one), its targets
    /// registering their topics and groups; `field` is its spec path; its
    /// series are its table's unless `per_table` is off
    /// (`spec.metrics.perTable`) and a pattern matched it.
    pub fn add(
        &mut self,
        l: &ListenerSpec,
        i: usize,
        field: &str,
        (kafka, per_table): (&KafkaSpec, bool),
        metrics: &Metrics,
    ) -> Result<(), TransformError> {
        debug_assert_eq!(i, self.listeners.len(), "listeners are added in order");
        let table = QualifiedTable::parse(&l.table)
            .map_err(|source| TransformError::Table { index: i, source })?;
        let mut actions = [false; 4];
        for a in &l.actions {
            actions[action_index(*a)] = true;
        }
        let table_label = format!("{}.{}", table.schema, table.name);
        // Series shared by a pattern listener's tables (`spec.metrics.perTable: false`).
        let shared = l.origin.as_ref().filter(|o| o.matched && !per_table);
        let metric_label = match shared {
            Some(o) => format!("listeners[{}]", o.index),
            None => table_label.clone(),
        };
        let default_target = [TargetSpec::default()];
        let specs: &[TargetSpec] = if l.targets.is_empty() {
            &default_target
        } else {
            &l.targets
        };
        let targets = specs
            .iter()
            .enumerate()
            .map(|(j, t)| {
                let path = format!("{field}.targets[{j}]");
                let name = t
                    .topic
                    .clone()
                    .unwrap_or_else(|| table.default_topic(&kafka.topic_prefix));
                if let Some(o) = shared {
                    let written = o.topics.get(j).cloned().flatten();
                    let written = written.unwrap_or_else(|| {
                        format!("{}.${{schema}}.${{table}}", kafka.topic_prefix)
                    });
                    metrics.label_topic(&name, &written);
                }
                self.target(path, name, t, kafka, &metric_label, metrics)
            })
            .collect();
        self.by_table.insert(table.clone(), i);
        self.listeners.push(Listener {
            changes: metrics
                .listener_changes
                .with_label_values(&[metric_label.as_str()]),
            label: table_label,
            table,
            actions,
            targets,
        });
        Ok(())
    }

    /// How many listeners, groups and topics there are: what
    /// [`Routes::rollback`] goes back to.
    pub fn mark(&self) -> RoutesMark {
        RoutesMark {
            listeners: self.listeners.len(),
            groups: self.groups.len(),
            topics: self.topics.names.len(),
        }
    }

    /// Forgets what was added since `mark` (a table that turned out not to
    /// fit its listener): its listener, and the groups and topics nothing
    /// else uses yet.
    pub fn rollback(&mut self, mark: RoutesMark) {
        for listener in self.listeners.drain(mark.listeners..) {
            self.by_table.remove(&listener.table);
        }
        self.groups.truncate(mark.groups);
        let keep = mark.topics.max(self.topics.taken);
        self.topics.names.truncate(keep);
        self.topics.creation.truncate(keep);
    }

    /// A target writing to topic `name`, registering its topic and group.
    fn target(
        &mut self,
        path: String,
        name: String,
        t: &TargetSpec,
        kafka: &KafkaSpec,
        table_label: &str,
        metrics: &Metrics,
    ) -> Target {
        let creation = match &t.topic_creation {
            Some(over) => self.topics.defaults.merged(over),
            None => self.topics.defaults.clone(),
        };
        let (topic_index, topic) = match &t.outbox {
            // Its rows name its topics; the template labels its metrics.
            Some(outbox) => (NO_TOPIC, Arc::from(outbox.topic.as_str())),
            None => self.topics.index_with(&name, &creation),
        };
        if t.topic_creation.is_some() && topic_index != NO_TOPIC {
            // Validation made every target of one topic agree.
            self.topics.creation[topic_index] = creation.clone();
        }
        let group = t.groups_transactions().then(|| {
            let group_name = t.group.clone().unwrap_or_else(|| path.clone());
            match self.groups.iter().position(|g| g.name == group_name) {
                Some(g) => g,
                None => {
                    self.groups.push(Group {
                        name: group_name,
                        topic: Arc::clone(&topic),
                        topic_index,
                    });
                    self.groups.len() - 1
                }
            }
        });
        let topic_label = metrics.topic_label(&topic);
        let labels = [table_label, topic_label.as_str()];
        Target {
            path,
            topic_index,
            outbox: t.outbox.clone(),
            creation,
            ignored: t
                .outbox
                .is_some()
                .then(|| metrics.outbox_ignored.with_label_values(&labels)),
            envelope: t.envelope.unwrap_or(kafka.envelope),
            columns: t.columns.clone(),
            column_masks: t.column_masks.clone(),
            filter: t.filter.clone(),
            group,
            snapshot: t.snapshot,
            // A whole-transaction message has no one key to delete.
            tombstones: group.is_none()
                && t.tombstones_on_delete.unwrap_or(kafka.tombstones_on_delete),
            records: metrics.target_records.with_label_values(&labels),
            filtered: metrics.target_filtered.with_label_values(&labels),
            bytes: metrics.target_bytes.with_label_values(&labels),
            limit: None,
            topic,
        }
    }

    /// The index of `topic` in [`Routes::topics`], added (as
    /// `spec.kafka.topicDefaults` says) when new.
    pub(super) fn topic_index(&mut self, topic: &str) -> (usize, Arc<str>) {
        let defaults = self.topics.defaults.clone();
        self.topics.index_with(topic, &defaults)
    }

    /// The listener of `table`, by index.
    pub fn listener_of(&self, table: &QualifiedTable) -> Option<usize> {
        self.by_table.get(table).copied()
    }
}

/// A listener's targets compiled for one table shape: filters and column masks.
#[derive(Debug, Default)]
pub(crate) struct CompiledRoute {
    /// Per target: its filter, if any.
    pub filters: Vec<Option<CompiledFilter>>,
    /// Per target: the columns kept, by position, if it selects columns.
    pub kept: Vec<Option<Vec<bool>>>,
    /// Per target: its masked, hashed and truncated columns, if any.
    pub masked: Vec<Option<CompiledMasks>>,
    /// The schema form's key schema (`spec.kafka.schemas`).
    pub key_schema: Option<Bytes>,
    /// Per target: the schema form's value schema; empty without it.
    pub value_schemas: Vec<Bytes>,
    /// Per target: its outbox columns, for an outbox target.
    pub outboxes: Vec<Option<CompiledOutbox>>,
}

impl CompiledRoute {
    /// Compiles `listener`'s targets for `shape` (hashes salted from
    /// `salts`); errors name the spec path.
    pub fn compile(
        listener: &Listener,
        shape: &TableShape,
        salts: &Salts,
    ) -> Result<Self, FilterError> {
        let mut route = CompiledRoute::default();
        for target in &listener.targets {
            route.filters.push(match &target.filter {
                Some(f) => Some(CompiledFilter::compile(
                    f,
                    shape,
                    &format!("{}.filter", target.path),
                )?),
                None => None,
            });
            route.masked.push(mask::compile(
                &target.column_masks,
                salts,
                shape,
                &format!("{}.columnMasks", target.path),
            )?);
            route.kept.push(match &target.columns {
                Some(c) => Some(column_mask(c, shape, &target.path)?),
                None => None,
            });
            route.outboxes.push(match &target.outbox {
                Some(o) => Some(CompiledOutbox::compile(o, shape, &target.path)?),
                None => None,
            });
        }
        Ok(route)
    }
}

fn column_mask(
    spec: &ColumnsSpec,
    shape: &TableShape,
    path: &str,
) -> Result<Vec<bool>, FilterError> {
    let (names, include, key) = match (&spec.include, &spec.exclude) {
        (Some(names), _) => (names, true, "include"),
        (None, Some(names)) => (names, false, "exclude"),
        (None, None) => return Ok(vec![true; shape.columns.len()]),
    };
    for (k, name) in names.iter().enumerate() {
        if !shape.columns.iter().any(|c| &c.name == name) {
            let all: Vec<&str> = shape.columns.iter().map(|c| c.name.as_str()).collect();
            return Err(FilterError {
                path: format!("{path}.columns.{key}[{k}]"),
                message: format!(
                    "{} has no column {name:?} (columns: {})",
                    shape.table,
                    all.join(", ")
                ),
            });
        }
    }
    Ok(shape
        .columns
        .iter()
        .map(|c| names.contains(&c.name) == include)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Column;

    fn spec() -> PgKafkaConnectorSpec {
        serde_yaml::from_str(
            r#"
postgres: {host: db, database: shop, user: cdc}
publication: {name: p}
slot: {name: s}
kafka: {bootstrapServers: ["k:9092"], topicPrefix: cdc, envelope: flat}
listeners:
  - table: orders
    targets:
      - {}
      - {topic: audit, envelope: debezium, columns: {exclude: [secret]}}
      - {topic: tx, group: shop}
  - table: lines
    targets: [{topic: tx, group: shop}, {topic: single, sendAsTransaction: true}]
"#,
        )
        .expect("spec parses")
    }

    #[test]
    fn compiles_topics_groups_and_envelopes() {
        let routes = Routes::new(&spec(), &Metrics::new("t")).expect("compiles");
        let names: Vec<&str> = routes.topics.names.iter().map(|t| &**t).collect();
        assert_eq!(names, ["cdc.public.orders", "audit", "tx", "single"]);
        let groups: Vec<(&str, &str)> = routes
            .groups
            .iter()
            .map(|g| (g.name.as_str(), &*g.topic))
            .collect();
        assert_eq!(
            groups,
            [("shop", "tx"), ("spec.listeners[1].targets[1]", "single")]
        );
        let orders = &routes.listeners[0];
        assert_eq!(orders.targets[0].envelope, Envelope::Flat);
        assert_eq!(orders.targets[1].envelope, Envelope::Debezium);
        assert_eq!(
            (
                orders.targets[2].group,
                routes.listeners[1].targets[0].group
            ),
            (Some(0), Some(0))
        );
        assert_eq!(
            routes.listener_of(&QualifiedTable::parse("public.lines").expect("valid")),
            Some(1)
        );
    }

    #[test]
    fn column_masks_check_names() {
        let routes = Routes::new(&spec(), &Metrics::new("t")).expect("compiles");
        let col = |name: &str| Column {
            is_key: false,
            name: name.into(),
            type_oid: 25,
            value_oid: 25,
            type_modifier: -1,
        };
        let mut shape = TableShape {
            table: QualifiedTable::parse("public.orders").expect("valid"),
            columns: vec![col("id"), col("secret")],
            replica_identity: b'd',
        };
        let route = CompiledRoute::compile(&routes.listeners[0], &shape, &Salts::default())
            .expect("compiles");
        assert_eq!(route.kept, [None, Some(vec![true, false]), None]);
        shape.columns = vec![col("id")];
        let err = CompiledRoute::compile(&routes.listeners[0], &shape, &Salts::default())
            .expect_err("must fail");
        assert_eq!(err.path, "spec.listeners[0].targets[1].columns.exclude[0]");
    }
}
