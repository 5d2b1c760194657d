//! The schema form: Kafka Connect's JsonConverter with `schemas.enable=true`
//! writes every key and value as `{"schema": {...}, "payload": {...}}`. The
//! schema is Debezium's: structs named `<topicPrefix>.<schema>.<table>.Key`,
//! `.Value` and `.Envelope`, fields typed with Connect's types and named with
//! Debezium's logical types. Built once per relation version and target, by
//! the same rules (`decode::types`, the handling modes) that write values.

use pgkafka_crds::{BinaryHandlingMode, DecimalHandlingMode, Envelope, TimePrecisionMode};
use serde_json::{json, Map, Value};

use super::mask::ColumnMask;
use crate::decode::decimal::{numeric_precision, numeric_scale};
use crate::decode::temporal::{time_in_millis, timestamp_in_millis};
use crate::decode::types::{oid, pg_type, Base, PgType};
use crate::decode::values::ValueModes;
use crate::event::{Column, Relation};

/// `logical` named `name` (version 1) over Connect type `kind`.
fn logical(kind: &str, name: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("type".into(), kind.into());
    m.insert("name".into(), name.into());
    m.insert("version".into(), 1.into());
    m
}

fn plain(kind: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("type".into(), kind.into());
    m
}

/// The Connect schema of one scalar of `base` (type OID `value_oid`).
fn scalar_schema(
    base: Base,
    value_oid: u32,
    type_modifier: i32,
    modes: &ValueModes,
) -> Map<String, Value> {
    match base {
        Base::Bool => plain("boolean"),
        Base::Integer => plain(match value_oid {
            oid::INT2 => "int16",
            oid::INT4 => "int32",
            _ => "int64",
        }),
        Base::Float => plain(if value_oid == oid::FLOAT4 {
            "float32"
        } else {
            "float64"
        }),
        Base::Numeric => decimal_schema(type_modifier, modes.decimal),
        Base::Json => logical("string", "io.debezium.data.Json"),
        Base::Bytea => match modes.binary {
            BinaryHandlingMode::Base64 => plain("bytes"),
            _ => plain("string"),
        },
        Base::TimestampTz => logical("string", "io.debezium.time.ZonedTimestamp"),
        Base::TimeTz => logical("string", "io.debezium.time.ZonedTime"),
        Base::Date | Base::Time | Base::Timestamp => {
            temporal_schema(base, type_modifier, modes.time)
        }
        Base::Unordered if value_oid == oid::XML => logical("string", "io.debezium.data.Xml"),
        Base::Unordered | Base::Text => match value_oid {
            oid::UUID => logical("string", "io.debezium.data.Uuid"),
            1186 => logical("string", "io.debezium.time.Interval"),
            _ => plain("string"),
        },
    }
}

fn decimal_schema(type_modifier: i32, mode: DecimalHandlingMode) -> Map<String, Value> {
    match (mode, numeric_scale(type_modifier)) {
        (DecimalHandlingMode::String, _) => plain("string"),
        (DecimalHandlingMode::Double, _) => plain("float64"),
        (DecimalHandlingMode::Precise, Some(scale)) => {
            let mut m = logical("bytes", "org.apache.kafka.connect.data.Decimal");
            let mut parameters = Map::new();
            parameters.insert("scale".into(), scale.to_string().into());
            if let Some(p) = numeric_precision(type_modifier) {
                parameters.insert("connect.decimal.precision".into(), p.to_string().into());
            }
            m.insert("parameters".into(), parameters.into());
            m
        }
        (DecimalHandlingMode::Precise, None) => {
            let mut m = logical("struct", "io.debezium.data.VariableScaleDecimal");
            m.insert(
                "fields".into(),
                json!([
                    {"type": "int32", "optional": false, "field": "scale"},
                    {"type": "bytes", "optional": false, "field": "value"}
                ]),
            );
            m.insert("doc".into(), "Variable scaled decimal".into());
            m
        }
    }
}

fn temporal_schema(base: Base, type_modifier: i32, mode: TimePrecisionMode) -> Map<String, Value> {
    use TimePrecisionMode::*;
    match (base, mode) {
        (Base::Date, Isostring) => logical("string", "io.debezium.time.IsoDate"),
        (Base::Date, Connect) => logical("int32", "org.apache.kafka.connect.data.Date"),
        (Base::Date, _) => logical("int32", "io.debezium.time.Date"),
        (Base::Time, Isostring) => logical("string", "io.debezium.time.IsoTime"),
        (Base::Time, Connect) => logical("int32", "org.apache.kafka.connect.data.Time"),
        (Base::Time, _) if time_in_millis(type_modifier, mode) => {
            logical("int32", "io.debezium.time.Time")
        }
        (Base::Time, _) => logical("int64", "io.debezium.time.MicroTime"),
        (_, Isostring) => logical("string", "io.debezium.time.IsoTimestamp"),
        (_, Connect) => logical("int64", "org.apache.kafka.connect.data.Timestamp"),
        _ if timestamp_in_millis(type_modifier, mode) => {
            logical("int64", "io.debezium.time.Timestamp")
        }
        _ => logical("int64", "io.debezium.time.MicroTimestamp"),
    }
}

/// The schema of `column` as the field `field` of a struct.
fn column_schema(column: &Column, optional: bool, modes: &ValueModes) -> Value {
    let mut m = match pg_type(column.value_oid) {
        PgType::Scalar(base) => scalar_schema(base, column.value_oid, column.type_modifier, modes),
        PgType::Array(element) => {
            let element_oid = element_oid(column.value_oid);
            let mut items = scalar_schema(element, element_oid, column.type_modifier, modes);
            items.insert("optional".into(), true.into());
            let mut m = plain("array");
            m.insert("items".into(), items.into());
            m
        }
    };
    m.insert("optional".into(), optional.into());
    m.insert("field".into(), column.name.clone().into());
    Value::Object(m)
}

/// The element type of a built-in array type, where it changes the schema.
fn element_oid(array_oid: u32) -> u32 {
    match array_oid {
        oid::INT2_ARRAY => oid::INT2,
        oid::INT4_ARRAY => oid::INT4,
        oid::FLOAT4_ARRAY => oid::FLOAT4,
        oid::UUID_ARRAY => oid::UUID,
        oid::XML_ARRAY => oid::XML,
        oid::INTERVAL_ARRAY => 1186,
        _ => 0,
    }
}

/// Names schemas after the connector's topic prefix, as Debezium does.
#[derive(Clone, Debug)]
pub(crate) struct SchemaNamer {
    /// `spec.kafka.topicPrefix`.
    pub prefix: String,
    /// Envelopes carry the `transaction` block (transaction metadata on).
    pub transaction: bool,
}

impl SchemaNamer {
    fn name(&self, relation: &Relation, suffix: &str) -> String {
        let t = &relation.shape.table;
        format!("{}.{}.{}.{suffix}", self.prefix, t.schema, t.name)
    }

    /// The key's schema: a struct of the key columns, none optional.
    pub fn key(&self, relation: &Relation, modes: &ValueModes) -> Vec<u8> {
        let fields: Vec<Value> = relation
            .key
            .iter()
            .map(|&i| column_schema(&relation.shape.columns[i], false, modes))
            .collect();
        let schema = json!({
            "type": "struct",
            "fields": fields,
            "optional": false,
            "name": self.name(relation, "Key"),
        });
        schema.to_string().into_bytes()
    }

    /// The row struct: the kept columns; key columns are required, the rest
    /// optional (pgoutput does not say which columns are NOT NULL). A
    /// masked column carries the parameter Debezium's column mapper sets
    /// (`masked`, or `truncateLength`).
    fn row_fields(
        &self,
        relation: &Relation,
        columns: Option<&[bool]>,
        masks: Option<&[Option<ColumnMask>]>,
        modes: &ValueModes,
    ) -> Vec<Value> {
        relation
            .shape
            .columns
            .iter()
            .enumerate()
            .filter(|(i, _)| columns.is_none_or(|keep| keep.get(*i).copied().unwrap_or(true)))
            .map(|(i, c)| {
                let mut field = column_schema(c, !relation.key.contains(&i), modes);
                let mask = masks.and_then(|m| m.get(i)).and_then(Option::as_ref);
                if let (Some(mask), Value::Object(m)) = (mask, &mut field) {
                    let (name, value) = mask.schema_parameter();
                    m.insert("parameters".into(), json!({ name: value }));
                }
                field
            })
            .collect()
    }

    /// The value's schema for a target with `envelope`, `columns` and `masks`.
    pub fn value(
        &self,
        relation: &Relation,
        envelope: Envelope,
        (columns, masks): (Option<&[bool]>, Option<&[Option<ColumnMask>]>),
        modes: &ValueModes,
    ) -> Vec<u8> {
        let fields = self.row_fields(relation, columns, masks, modes);
        let schema = match envelope {
            Envelope::Flat => {
                let mut fields = fields;
                fields.extend(flat_fields());
                json!({"type": "struct", "fields": fields, "optional": false,
                       "name": self.name(relation, "Value")})
            }
            Envelope::Debezium => {
                let row = |field: &str| {
                    json!({"type": "struct", "fields": fields, "optional": true,
                           "name": self.name(relation, "Value"), "field": field})
                };
                let mut envelope = vec![
                    row("before"),
                    row("after"),
                    source_schema(),
                    json!({"type": "string", "optional": false, "field": "op"}),
                    json!({"type": "int64", "optional": true, "field": "ts_ms"}),
                ];
                if self.transaction {
                    envelope.push(
                        serde_json::from_str(super::txmeta::BLOCK_SCHEMA).unwrap_or(Value::Null),
                    );
                }
                json!({
                    "type": "struct",
                    "fields": envelope,
                    "optional": false,
                    "name": self.name(relation, "Envelope"),
                    "version": 1
                })
            }
        };
        schema.to_string().into_bytes()
    }
}

/// `source`: `io.debezium.connector.postgresql.Source`, with our `commitLsn`.
pub(super) fn source_schema() -> Value {
    let field = |kind: &str, optional: bool, name: &str| json!({"type": kind, "optional": optional, "field": name});
    json!({
        "type": "struct",
        "fields": [
            field("string", false, "version"),
            field("string", false, "connector"),
            field("string", false, "name"),
            field("int64", false, "ts_ms"),
            {"type": "string", "optional": true, "name": "io.debezium.data.Enum", "version": 1,
             "parameters": {"allowed": "true,last,false,incremental"}, "default": "false",
             "field": "snapshot"},
            field("string", false, "db"),
            field("string", true, "sequence"),
            field("string", false, "schema"),
            field("string", false, "table"),
            field("int64", true, "txId"),
            field("int64", true, "lsn"),
            field("int64", true, "xmin"),
            field("string", true, "commitLsn")
        ],
        "optional": false,
        "name": "io.debezium.connector.postgresql.Source",
        "field": "source"
    })
}

/// The metadata fields of the flat envelope.
fn flat_fields() -> Vec<Value> {
    [
        ("string", "__op"),
        ("string", "__table"),
        ("int64", "__lsn"),
        ("int64", "__txId"),
        ("int64", "__source_ts_ms"),
        ("string", "__deleted"),
    ]
    .iter()
    .map(|(kind, name)| json!({"type": kind, "optional": true, "field": name}))
    .collect()
}

/// `{"schema":<schema>,"payload":<payload>}`.
pub(crate) fn wrap(schema: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(schema.len() + payload.len() + 24);
    out.extend_from_slice(b"{\"schema\":");
    out.extend_from_slice(schema);
    out.extend_from_slice(b",\"payload\":");
    out.extend_from_slice(payload);
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::relations::{KeyPolicy, RelationCache};
    use crate::event::TableShape;
    use pgkafka_crds::QualifiedTable;

    fn relation() -> Relation {
        let col = |name: &str, is_key, value_oid, type_modifier| Column {
            is_key,
            name: name.into(),
            type_oid: value_oid,
            value_oid,
            type_modifier,
        };
        let shape = TableShape {
            table: QualifiedTable::parse("shop.orders").expect("name"),
            columns: vec![
                col("id", true, oid::INT4, -1),
                col("price", false, oid::NUMERIC, (10 << 16 | 2) + 4),
                col("doc", false, oid::JSONB, -1),
                col("at", false, oid::TIMESTAMP, 3),
                col("tags", false, oid::TEXT_ARRAY, -1),
            ],
            replica_identity: b'd',
        };
        RelationCache::describe(1, shape, &KeyPolicy::default()).expect("key")
    }

    fn parse(bytes: Vec<u8>) -> Value {
        serde_json::from_slice(&bytes).expect("valid JSON")
    }

    #[test]
    fn key_and_value_schemas_name_debeziums_types() {
        let namer = SchemaNamer {
            prefix: "cdc".into(),
            transaction: false,
        };
        let modes = ValueModes {
            decimal: DecimalHandlingMode::Precise,
            time: TimePrecisionMode::Adaptive,
            binary: BinaryHandlingMode::Base64,
            json_as_text: true,
        };
        let rel = relation();
        assert_eq!(
            parse(namer.key(&rel, &modes)),
            json!({"type": "struct", "optional": false, "name": "cdc.shop.orders.Key",
                   "fields": [{"type": "int32", "optional": false, "field": "id"}]})
        );
        let value = parse(namer.value(&rel, Envelope::Debezium, (None, None), &modes));
        assert_eq!(value["name"], "cdc.shop.orders.Envelope");
        let after = &value["fields"][1];
        assert_eq!(after["field"], "after");
        assert_eq!(after["name"], "cdc.shop.orders.Value");
        assert_eq!(
            after["fields"],
            json!([
                {"type": "int32", "optional": false, "field": "id"},
                {"type": "bytes", "name": "org.apache.kafka.connect.data.Decimal", "version": 1,
                 "parameters": {"scale": "2", "connect.decimal.precision": "10"},
                 "optional": true, "field": "price"},
                {"type": "string", "name": "io.debezium.data.Json", "version": 1,
                 "optional": true, "field": "doc"},
                {"type": "int64", "name": "io.debezium.time.Timestamp", "version": 1,
                 "optional": true, "field": "at"},
                {"type": "array", "items": {"type": "string", "optional": true},
                 "optional": true, "field": "tags"}
            ])
        );
        assert_eq!(
            value["fields"][2]["name"],
            "io.debezium.connector.postgresql.Source"
        );
        assert_eq!(
            value["fields"][3],
            json!({"type": "string", "optional": false, "field": "op"})
        );
        let keep = [true, false, false, false, true];
        let flat = parse(namer.value(&rel, Envelope::Flat, (Some(&keep), None), &modes));
        let names: Vec<&str> = flat["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .filter_map(|f| f["field"].as_str())
            .collect();
        assert_eq!(
            names,
            [
                "id",
                "tags",
                "__op",
                "__table",
                "__lsn",
                "__txId",
                "__source_ts_ms",
                "__deleted"
            ]
        );
    }

    #[test]
    fn modes_change_the_schema() {
        let string_modes = ValueModes::default();
        let rel = relation();
        let after = |modes: &ValueModes| {
            let namer = SchemaNamer {
                prefix: "p".into(),
                transaction: false,
            };
            parse(namer.value(&rel, Envelope::Debezium, (None, None), modes))["fields"][1]["fields"]
                .clone()
        };
        let fields = after(&string_modes);
        assert_eq!(
            fields[1],
            json!({"type": "string", "optional": true, "field": "price"})
        );
        assert_eq!(fields[3]["name"], "io.debezium.time.IsoTimestamp");
        let unconstrained = Column {
            type_modifier: -1,
            ..rel.shape.columns[1].clone()
        };
        let precise = ValueModes {
            decimal: DecimalHandlingMode::Precise,
            time: TimePrecisionMode::Connect,
            ..ValueModes::default()
        };
        let schema = column_schema(&unconstrained, true, &precise);
        assert_eq!(schema["name"], "io.debezium.data.VariableScaleDecimal");
        assert_eq!(
            after(&precise)[3]["name"],
            "org.apache.kafka.connect.data.Timestamp"
        );
        assert_eq!(
            wrap(b"{}", b"[1]"),
            br#"{"schema":{},"payload":[1]}"#.to_vec()
        );
    }
}
