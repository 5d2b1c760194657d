//! The one table of PostgreSQL type OIDs the engine knows, and what each
//! type is. Value encoding (`values.rs`) and filter comparison
//! (`transform/typed.rs`) both read it, so a type means the same in a record
//! and in a filter.

/// Built-in type OIDs (`pg_type.oid`, fixed across PostgreSQL versions).
pub(crate) mod oid {
    #![allow(missing_docs)]
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const OID: u32 = 26;
    pub const XID: u32 = 28;
    pub const JSON: u32 = 114;
    pub const XML: u32 = 142;
    pub const XML_ARRAY: u32 = 143;
    pub const JSON_ARRAY: u32 = 199;
    pub const POINT: u32 = 600;
    pub const LSEG: u32 = 601;
    pub const PATH: u32 = 602;
    pub const BOX: u32 = 603;
    pub const POLYGON: u32 = 604;
    pub const LINE: u32 = 628;
    pub const CIDR_ARRAY: u32 = 651;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const CIRCLE: u32 = 718;
    pub const MONEY_ARRAY: u32 = 791;
    pub const BOOL_ARRAY: u32 = 1000;
    pub const BYTEA_ARRAY: u32 = 1001;
    pub const CHAR_ARRAY: u32 = 1002;
    pub const NAME_ARRAY: u32 = 1003;
    pub const INT2_ARRAY: u32 = 1005;
    pub const INT4_ARRAY: u32 = 1007;
    pub const TEXT_ARRAY: u32 = 1009;
    pub const XID_ARRAY: u32 = 1011;
    pub const BPCHAR_ARRAY: u32 = 1014;
    pub const VARCHAR_ARRAY: u32 = 1015;
    pub const INT8_ARRAY: u32 = 1016;
    pub const FLOAT4_ARRAY: u32 = 1021;
    pub const FLOAT8_ARRAY: u32 = 1022;
    pub const OID_ARRAY: u32 = 1028;
    pub const MACADDR_ARRAY: u32 = 1040;
    pub const INET_ARRAY: u32 = 1041;
    pub const DATE: u32 = 1082;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMP_ARRAY: u32 = 1115;
    pub const DATE_ARRAY: u32 = 1182;
    pub const TIME_ARRAY: u32 = 1183;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const TIMESTAMPTZ_ARRAY: u32 = 1185;
    pub const INTERVAL_ARRAY: u32 = 1187;
    pub const NUMERIC_ARRAY: u32 = 1231;
    pub const TIMETZ_ARRAY: u32 = 1270;
    pub const NUMERIC: u32 = 1700;
    pub const UUID_ARRAY: u32 = 2951;
    pub const JSONB: u32 = 3802;
    pub const JSONB_ARRAY: u32 = 3807;
}

/// What a scalar type is, as far as the engine cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Base {
    /// boolean.
    Bool,
    /// int2, int4, int8, oid, xid.
    Integer,
    /// float4, float8.
    Float,
    /// numeric.
    Numeric,
    /// json, jsonb.
    Json,
    /// bytea.
    Bytea,
    /// timestamp without time zone.
    Timestamp,
    /// timestamp with time zone.
    TimestampTz,
    /// date.
    Date,
    /// xml and the geometric types: text with no useful order.
    Unordered,
    /// Everything else: its text form is what users see and compare.
    Text,
}

/// A type: a scalar, an array of a known scalar, or another array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PgType {
    /// A scalar.
    Scalar(Base),
    /// An array whose elements are `Base`.
    Array(Base),
    /// A built-in array type whose elements the engine does not render.
    OtherArray,
}

/// What the type with OID `type_oid` is.
pub(crate) fn pg_type(type_oid: u32) -> PgType {
    use oid::*;
    use PgType::{Array, OtherArray, Scalar};
    match type_oid {
        BOOL => Scalar(Base::Bool),
        INT2 | INT4 | INT8 | OID | XID => Scalar(Base::Integer),
        FLOAT4 | FLOAT8 => Scalar(Base::Float),
        NUMERIC => Scalar(Base::Numeric),
        JSON | JSONB => Scalar(Base::Json),
        BYTEA => Scalar(Base::Bytea),
        TIMESTAMP => Scalar(Base::Timestamp),
        TIMESTAMPTZ => Scalar(Base::TimestampTz),
        DATE => Scalar(Base::Date),
        XML | POINT | LSEG | PATH | BOX | POLYGON | LINE | CIRCLE => Scalar(Base::Unordered),
        BOOL_ARRAY => Array(Base::Bool),
        INT2_ARRAY | INT4_ARRAY | INT8_ARRAY | OID_ARRAY | XID_ARRAY => Array(Base::Integer),
        FLOAT4_ARRAY | FLOAT8_ARRAY => Array(Base::Float),
        NUMERIC_ARRAY => Array(Base::Numeric),
        JSON_ARRAY | JSONB_ARRAY => Array(Base::Json),
        BYTEA_ARRAY => Array(Base::Bytea),
        TIMESTAMP_ARRAY => Array(Base::Timestamp),
        TIMESTAMPTZ_ARRAY => Array(Base::TimestampTz),
        DATE_ARRAY => Array(Base::Date),
        TEXT_ARRAY | VARCHAR_ARRAY | BPCHAR_ARRAY | NAME_ARRAY | CHAR_ARRAY | UUID_ARRAY
        | TIME_ARRAY | TIMETZ_ARRAY | INTERVAL_ARRAY | INET_ARRAY | CIDR_ARRAY | MACADDR_ARRAY
        | MONEY_ARRAY => Array(Base::Text),
        XML_ARRAY => Array(Base::Unordered),
        // The other built-in array types have OIDs in these ranges.
        1000..=1041 | 1182..=1187 | 1263 => OtherArray,
        _ => Scalar(Base::Text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_array_is_an_array() {
        for oid in [
            oid::XID_ARRAY,
            oid::CIDR_ARRAY,
            oid::MONEY_ARRAY,
            oid::JSON_ARRAY,
        ] {
            assert!(matches!(pg_type(oid), PgType::Array(_)), "{oid}");
        }
        assert_eq!(pg_type(1017), PgType::OtherArray, "point[]");
        assert_eq!(pg_type(oid::XID), PgType::Scalar(Base::Integer));
        assert_eq!(pg_type(25), PgType::Scalar(Base::Text), "text");
    }
}
