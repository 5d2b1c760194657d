//! Tables a pattern listener matches while the stream runs: their listener
//! joins the routes before the table joins the publication, so the first
//! change the stream sends of it already has somewhere to go.

use pgkafka_crds::{KafkaSpec, ListenerSpec};

use super::Transform;
use crate::decode::relations::RelationCache;
use crate::event::TableShape;
use crate::metrics::Metrics;
use crate::transform::assemble::{key_columns, own_limit};
use crate::transform::route::CompiledRoute;
use crate::transform::TransformError;

impl Transform {
    /// Adds listener `l` (spec path `field`; `settings`: `spec.kafka` and
    /// `spec.metrics.perTable`) for the table `shape` describes, keyed by `primary_key` unless `keyColumns` says
    /// otherwise. Its targets are checked against `shape` first: a filter,
    /// column selection, mask or key the table cannot satisfy is refused
    /// (naming the field and the table) and nothing is added.
    pub fn add_listener(
        &mut self,
        l: &ListenerSpec,
        field: &str,
        settings: (&KafkaSpec, bool),
        shape: &TableShape,
        primary_key: Vec<String>,
        metrics: &Metrics,
    ) -> Result<(), TransformError> {
        let i = self.routes.listeners.len();
        let mark = self.routes.mark();
        self.routes.add(l, i, field, settings, metrics)?;
        let table = &shape.table;
        let mut policy = self.policy.clone();
        policy.primary_keys.insert(table.clone(), primary_key);
        key_columns(&mut policy, table, l, field);
        let checked = CompiledRoute::compile(&self.routes.listeners[i], shape, &self.salts)
            .map_err(TransformError::from)
            .and_then(|_| {
                RelationCache::describe(0, shape.clone(), &policy).map_err(TransformError::from)
            });
        if let Err(e) = checked {
            self.routes.rollback(mark);
            return Err(e);
        }
        self.policy = policy;
        own_limit(&mut self.routes, i, l, &self.encoder.limit);
        self.groups.follow(&self.routes.groups);
        Ok(())
    }
}
