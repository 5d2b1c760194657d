//! The one table of PostgreSQL type OIDs the engine knows, and what each
//! type is. Value encoding (`values.rs`) and filter comparison
//! (`transform/typed.rs`) both read it, so a type means the same in a record
//! and in a filter.
//!
//! A type the table does not know (a domain, an enum, an extension's type, an
//! array of one of them) is resolved through the catalog ([`TypeRow`]) to
//! the built-in type whose rules it follows ([`value_oid`]): a domain as its
//! base type, an array of anything as an array whose elements follow their
//! type's rules, anything else as text.

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
    pub const TEXT: u32 = 25;
    pub const CHAR: u32 = 18;
    pub const NAME: u32 = 19;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const BOX_ARRAY: u32 = 1020;
    pub const DATE: u32 = 1082;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMP_ARRAY: u32 = 1115;
    pub const DATE_ARRAY: u32 = 1182;
    pub const TIME_ARRAY: u32 = 1183;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const TIMESTAMPTZ_ARRAY: u32 = 1185;
    pub const INTERVAL_ARRAY: u32 = 1187;
    pub const NUMERIC_ARRAY: u32 = 1231;
    pub const TIMETZ_ARRAY: u32 = 1270;
    pub const TIMETZ: u32 = 1266;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
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
    /// time without time zone.
    Time,
    /// time with time zone.
    TimeTz,
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
}

/// What the type with OID `type_oid` is. Types outside the table are text;
/// [`value_oid`] maps the ones the catalog knows better onto the table first.
pub(crate) fn pg_type(type_oid: u32) -> PgType {
    known(type_oid).unwrap_or(PgType::Scalar(Base::Text))
}

fn known(type_oid: u32) -> Option<PgType> {
    use oid::*;
    use PgType::{Array, Scalar};
    Some(match type_oid {
        BOOL => Scalar(Base::Bool),
        INT2 | INT4 | INT8 | OID | XID => Scalar(Base::Integer),
        FLOAT4 | FLOAT8 => Scalar(Base::Float),
        NUMERIC => Scalar(Base::Numeric),
        JSON | JSONB => Scalar(Base::Json),
        BYTEA => Scalar(Base::Bytea),
        TIMESTAMP => Scalar(Base::Timestamp),
        TIMESTAMPTZ => Scalar(Base::TimestampTz),
        DATE => Scalar(Base::Date),
        TIME => Scalar(Base::Time),
        TIMETZ => Scalar(Base::TimeTz),
        XML | POINT | LSEG | PATH | BOX | POLYGON | LINE | CIRCLE => Scalar(Base::Unordered),
        // Built-in scalars whose text form is their value.
        CHAR | NAME | TEXT | 790 | 829 | 869 | 650 | 774 | BPCHAR | VARCHAR | 1186 | 1560
        | 1562 | UUID | 3220 => Scalar(Base::Text),
        BOOL_ARRAY => Array(Base::Bool),
        INT2_ARRAY | INT4_ARRAY | INT8_ARRAY | OID_ARRAY | XID_ARRAY => Array(Base::Integer),
        FLOAT4_ARRAY | FLOAT8_ARRAY => Array(Base::Float),
        NUMERIC_ARRAY => Array(Base::Numeric),
        JSON_ARRAY | JSONB_ARRAY => Array(Base::Json),
        BYTEA_ARRAY => Array(Base::Bytea),
        TIMESTAMP_ARRAY => Array(Base::Timestamp),
        TIMESTAMPTZ_ARRAY => Array(Base::TimestampTz),
        DATE_ARRAY => Array(Base::Date),
        TIME_ARRAY => Array(Base::Time),
        TIMETZ_ARRAY => Array(Base::TimeTz),
        TEXT_ARRAY | VARCHAR_ARRAY | BPCHAR_ARRAY | NAME_ARRAY | CHAR_ARRAY | UUID_ARRAY
        | INTERVAL_ARRAY | INET_ARRAY | CIDR_ARRAY | MACADDR_ARRAY | MONEY_ARRAY => {
            Array(Base::Text)
        }
        XML_ARRAY | BOX_ARRAY | 1017..=1019 | 1027 | 629 | 719 => Array(Base::Unordered),
        _ => return None,
    })
}

/// The separator of an array type's elements: `;` for `box[]` (a box's
/// text holds commas), `,` for every other built-in.
pub(crate) fn array_delimiter(type_oid: u32) -> u8 {
    if type_oid == oid::BOX_ARRAY {
        b';'
    } else {
        b','
    }
}

/// What the catalog says of a type outside the table (`pg_type`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TypeRow {
    /// `typtype`: `b`ase, `d`omain, `e`num, `c`omposite, `r`ange, ...
    pub kind: u8,
    /// `typbasetype`: what a domain is over.
    pub base: u32,
    /// `typelem` of an array type (`typcategory = 'A'`), else 0.
    pub element: u32,
    /// `typtypmod`: a domain's modifier (`numeric(12,2)`), else -1.
    pub modifier: i32,
}

impl TypeRow {
    /// The type OIDs this one refers to, which need rows too.
    pub fn refers_to(&self) -> Option<u32> {
        match self.kind {
            b'd' => Some(self.base),
            _ if self.element != 0 => Some(self.element),
            _ => None,
        }
    }
}

/// Whether the type needs a catalog row before [`value_oid`] can place it.
pub(crate) fn needs_catalog(type_oid: u32) -> bool {
    known(type_oid).is_none()
}

/// The modifier a domain column's values have: the attribute carries none
/// (-1), the domain (or one it is over) does.
pub(crate) fn domain_modifier(
    type_oid: u32,
    rows: &std::collections::HashMap<u32, TypeRow>,
) -> Option<i32> {
    let mut current = type_oid;
    for _ in 0..32 {
        let row = rows.get(&current).filter(|r| r.kind == b'd')?;
        if row.modifier != -1 {
            return Some(row.modifier);
        }
        current = row.base;
    }
    None
}

/// The built-in type whose rules values of `type_oid` follow, given the
/// catalog's rows of the types outside the table: a domain's base type, an
/// array of the element's resolved type, and text for anything else.
pub(crate) fn value_oid(type_oid: u32, rows: &std::collections::HashMap<u32, TypeRow>) -> u32 {
    let mut current = type_oid;
    // Domains over domains: a chain, never a cycle, but bounded anyway.
    for _ in 0..32 {
        if known(current).is_some() {
            return current;
        }
        let Some(row) = rows.get(&current) else {
            return oid::TEXT;
        };
        match row.kind {
            b'd' => current = row.base,
            _ if row.element != 0 => return array_of(value_oid(row.element, rows)),
            _ => return oid::TEXT,
        }
    }
    oid::TEXT
}

/// The built-in array type of a resolved element type.
fn array_of(element: u32) -> u32 {
    use oid::*;
    match element {
        BOOL => BOOL_ARRAY,
        INT2 => INT2_ARRAY,
        INT4 => INT4_ARRAY,
        INT8 => INT8_ARRAY,
        OID => OID_ARRAY,
        XID => XID_ARRAY,
        FLOAT4 => FLOAT4_ARRAY,
        FLOAT8 => FLOAT8_ARRAY,
        NUMERIC => NUMERIC_ARRAY,
        JSON => JSON_ARRAY,
        JSONB => JSONB_ARRAY,
        BYTEA => BYTEA_ARRAY,
        TIMESTAMP => TIMESTAMP_ARRAY,
        TIMESTAMPTZ => TIMESTAMPTZ_ARRAY,
        DATE => DATE_ARRAY,
        TIME => TIME_ARRAY,
        TIMETZ => TIMETZ_ARRAY,
        UUID => UUID_ARRAY,
        BOX => BOX_ARRAY,
        _ => TEXT_ARRAY,
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
            1017,
        ] {
            assert!(matches!(pg_type(oid), PgType::Array(_)), "{oid}");
        }
        assert_eq!(pg_type(oid::XID), PgType::Scalar(Base::Integer));
        assert_eq!(pg_type(25), PgType::Scalar(Base::Text), "text");
        assert_eq!(array_delimiter(oid::BOX_ARRAY), b';');
    }

    #[test]
    fn catalog_types_resolve_to_the_built_in_they_follow() {
        use std::collections::HashMap;
        let row = |kind, base, element| TypeRow {
            kind,
            base,
            element,
            modifier: -1,
        };
        let rows = HashMap::from([
            (16_384, row(b'd', oid::INT4, 0)),       // domain over int4
            (16_385, row(b'b', 0, 16_384)),          // its array type
            (16_386, row(b'e', 0, 0)),               // an enum
            (16_387, row(b'b', 0, 16_386)),          // enum[]
            (16_388, row(b'd', 16_384, 0)),          // domain over the domain
            (16_389, row(b'd', oid::INT4_ARRAY, 0)), // domain over int4[]
            (3905, row(b'b', 0, 3904)),              // int4range[]
        ]);
        assert!(needs_catalog(16_384) && needs_catalog(3905) && !needs_catalog(oid::INT4));
        assert_eq!(value_oid(16_384, &rows), oid::INT4);
        assert_eq!(value_oid(16_385, &rows), oid::INT4_ARRAY);
        assert_eq!(value_oid(16_386, &rows), oid::TEXT);
        assert_eq!(value_oid(16_387, &rows), oid::TEXT_ARRAY);
        assert_eq!(value_oid(16_388, &rows), oid::INT4);
        assert_eq!(value_oid(16_389, &rows), oid::INT4_ARRAY);
        assert_eq!(value_oid(3905, &rows), oid::TEXT_ARRAY);
        assert_eq!(value_oid(99_999, &rows), oid::TEXT, "unknown: text");
        assert_eq!(rows[&16_385].refers_to(), Some(16_384));
        let mut rows = rows;
        rows.insert(
            16_390,
            TypeRow {
                kind: b'd',
                base: oid::NUMERIC,
                element: 0,
                modifier: (12 << 16 | 2) + 4,
            },
        );
        rows.insert(
            16_391,
            TypeRow {
                kind: b'd',
                base: 16_390,
                element: 0,
                modifier: -1,
            },
        );
        assert_eq!(domain_modifier(16_391, &rows), Some((12 << 16 | 2) + 4));
        assert_eq!(domain_modifier(16_384, &rows), None);
    }
}
