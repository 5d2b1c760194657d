//! Schema pieces the derive cannot express in a structural CRD schema:
//! nested conditions (a recursive type), free-form literals, and integer
//! formats Kubernetes knows.

use schemars::{json_schema, Schema, SchemaGenerator};

/// A literal of any JSON type (string, number, boolean, list).
pub(crate) fn any_value(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "x-kubernetes-preserve-unknown-fields": true })
}

/// A list of nested conditions; validated by the operator and the engine.
pub(crate) fn nested_list(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": { "type": "object", "x-kubernetes-preserve-unknown-fields": true }
    })
}

/// One nested condition.
pub(crate) fn nested_condition(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true })
}

/// A TCP port: `int32` (the API server knows no `uint16`) within 1..=65535.
pub(crate) fn port(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "integer", "format": "int32", "minimum": 1, "maximum": 65535 })
}

/// Rows per snapshot chunk: `int32` within 100..=1,000,000.
pub(crate) fn chunk_size(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "integer", "format": "int32", "minimum": 100, "maximum": 1000000 })
}

/// Tables snapshotted at once: `int32` within 1..=16.
pub(crate) fn snapshot_tables(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "integer", "format": "int32", "minimum": 1, "maximum": 16 })
}

/// Seconds between looks for tables patterns select: `int32` within 1..=3,600.
pub(crate) fn refresh_seconds(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "integer", "format": "int32", "minimum": 1, "maximum": 3600 })
}

/// Seconds between heartbeats: `int32` within 1..=86,400.
pub(crate) fn heartbeat_seconds(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "integer", "format": "int32", "minimum": 1, "maximum": 86400 })
}

/// A count: `int64`, never negative.
pub(crate) fn count(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "integer", "format": "int64", "minimum": 0 })
}
