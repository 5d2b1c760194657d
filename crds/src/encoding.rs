//! How values are written: the options Debezium users know by name
//! (`decimal.handling.mode`, `time.precision.mode`, `binary.handling.mode`),
//! spelled with Debezium's own values; and `json`/`jsonb`, which Debezium
//! always writes as a string (`io.debezium.data.Json`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `numeric` and `decimal` columns (Debezium's `decimal.handling.mode`).
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DecimalHandlingMode {
    /// The exact digits as a string, `"1234.50"` (NaN and infinities too).
    #[default]
    String,
    /// Base64 of the unscaled value's big-endian two's-complement bytes, the
    /// scale in the schema (`org.apache.kafka.connect.data.Decimal`); an
    /// unconstrained `numeric` is `{"scale": s, "value": "<base64>"}`
    /// (`io.debezium.data.VariableScaleDecimal`). NaN and infinities become null.
    Precise,
    /// A JSON number (a 64-bit float: digits beyond 17 are lost).
    Double,
}

/// `date`, `time` and `timestamp` columns (Debezium's `time.precision.mode`).
/// `timestamptz` is always an ISO-8601 string in UTC
/// (`io.debezium.time.ZonedTimestamp`) and `timetz` one in UTC
/// (`io.debezium.time.ZonedTime`) outside `isostring`.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimePrecisionMode {
    /// ISO-8601 strings as PostgreSQL holds them: `2024-02-29`,
    /// `13:04:05.123456`, `2024-02-29T13:04:05.123456`.
    #[default]
    Isostring,
    /// Numbers at the column's precision: days since the epoch for `date`;
    /// milliseconds (precision 0-3) or microseconds (4-6) since midnight for
    /// `time` and since the epoch for `timestamp`.
    Adaptive,
    /// As `adaptive`, but `time` is always microseconds.
    AdaptiveTimeMicroseconds,
    /// Kafka Connect's own types: days for `date`, milliseconds for `time`
    /// and `timestamp` (sub-millisecond digits are dropped).
    Connect,
}

/// `bytea` columns (Debezium's `binary.handling.mode`).
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum BinaryHandlingMode {
    /// Standard base64.
    #[default]
    #[serde(rename = "base64")]
    Base64,
    /// URL-safe base64 (`-` and `_`, padded).
    #[serde(rename = "base64-url-safe")]
    Base64UrlSafe,
    /// Lower-case hexadecimal.
    #[serde(rename = "hex")]
    Hex,
}

/// `json` and `jsonb` columns.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum JsonHandlingMode {
    /// A string holding the JSON text, as Debezium writes it
    /// (`io.debezium.data.Json`): SQL NULL is `null`, the JSON value `null`
    /// is `"null"`, a JSON string stays a string of JSON.
    #[default]
    String,
    /// The JSON itself, embedded in the envelope. Ambiguous: the JSON value
    /// `null` and SQL NULL both arrive as `null`, and a consumer that
    /// expects Debezium's form reads a JSON string as text. The schema form
    /// (`spec.kafka.schemas`) always writes strings.
    Json,
}
