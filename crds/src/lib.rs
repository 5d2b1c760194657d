//! The `PgKafkaConnector` custom resource: the types users write in YAML, their
//! defaults, and the validation that names the offending field. No I/O here: the
//! engine reads these types from a file and the operator from the API server.

mod connector;
mod filter;
mod table;
mod validate;

pub use connector::*;
pub use filter::{ConditionSpec, Field, FilterSpec, Image, Logic, Operator};
pub use table::{QualifiedTable, TableNameError};
pub use validate::{FieldError, ValidationErrors};
