//! The `PgKafkaConnector` custom resource: the types users write in YAML, their
//! defaults, and the validation that names the offending field. No I/O here: the
//! engine reads these types from a file and the operator from the API server.

mod connector;
mod filter;
mod generate;
mod schema;
mod table;
mod validate;

pub use connector::*;
pub use filter::{ConditionSpec, Field, FilterSpec, Image, Logic, Operator};
pub use generate::{check_manifest, crd_yaml, openapi_schema, reference_markdown};
pub use table::{QualifiedTable, TableNameError};
pub use validate::{FieldError, ValidationErrors};
