//! The outbox without a table (`spec.messages[].outbox`): a logical
//! decoding message whose content is a JSON object, read by the outbox
//! router as an outbox table's row (`outbox.rs`): the same topic template,
//! key, payload, headers and timestamp.

use bytes::Bytes;
use chrono::DateTime;
use pgkafka_crds::{OutboxSpec, Placement};

use super::outbox::{is_json_document, routed_topic, OutboxEvent};
use super::TransformError;
use crate::event::EventExtras;

/// The outbox without a table: a logical decoding message whose content is
/// a JSON object, its fields read as an outbox table's columns (`path`
/// names the messages entry). Strings are their text, other scalars their
/// JSON, objects and arrays their JSON text; the payload is JSON itself
/// (a string payload that holds an object or array too, unless
/// `expandJsonPayload: false`).
pub(super) fn event_from_json(
    spec: &OutboxSpec,
    content: &[u8],
    commit_ms: i64,
    path: &str,
) -> Result<OutboxEvent, TransformError> {
    let bad = |message: String| TransformError::Outbox {
        path: format!("{path}.outbox"),
        message,
    };
    let doc: serde_json::Value = serde_json::from_slice(content)
        .map_err(|e| bad(format!("the message's content is not JSON ({e})")))?;
    let fields = doc
        .as_object()
        .ok_or_else(|| bad("the message's content is not a JSON object".into()))?;
    let text = |name: &str| -> Option<String> {
        match fields.get(name)? {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    };
    let routed_by = text(&spec.route_by_field).ok_or_else(|| {
        bad(format!(
            "the content has no {:?} field to route by (routeByField)",
            spec.route_by_field
        ))
    })?;
    let topic = routed_topic(spec, &routed_by, path)?;
    let expand = spec.expand_json_payload.unwrap_or(true);
    let value = match fields.get(&spec.payload) {
        None | Some(serde_json::Value::Null) if spec.tombstone_on_empty_payload => None,
        Some(serde_json::Value::String(p))
            if p.trim().is_empty() && spec.tombstone_on_empty_payload =>
        {
            None
        }
        payload => Some(json_value(
            payload,
            expand,
            &spec.additional_placement,
            &text,
        )),
    };
    let mut headers = vec![("id".to_owned(), text(&spec.event_id))];
    for a in &spec.additional_placement {
        if a.placement == Placement::Header {
            headers.push((a.name().to_owned(), text(&a.column)));
        }
    }
    let timestamp_ms = spec
        .timestamp
        .as_ref()
        .and_then(|t| fields.get(t))
        .and_then(|v| match v {
            serde_json::Value::Number(n) => n.as_i64(),
            serde_json::Value::String(s) => DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.timestamp_millis()),
            _ => None,
        })
        .or(Some(commit_ms));
    Ok(OutboxEvent {
        topic,
        key: text(&spec.event_key).map(Bytes::from),
        value,
        extras: EventExtras {
            headers,
            timestamp_ms,
        },
    })
}

/// A JSON content's value: the payload, or `{"payload": ..., ...}` with
/// envelope-placed fields.
fn json_value(
    payload: Option<&serde_json::Value>,
    expand: bool,
    additional: &[pgkafka_crds::AdditionalField],
    text: &dyn Fn(&str) -> Option<String>,
) -> Bytes {
    let payload_json = match payload {
        None => "null".to_owned(),
        Some(serde_json::Value::String(s)) if expand && is_json_document(s) => s.clone(),
        Some(serde_json::Value::String(s)) if !expand => {
            serde_json::Value::from(s.as_str()).to_string()
        }
        Some(v) if !expand && (v.is_object() || v.is_array()) => {
            serde_json::Value::from(v.to_string()).to_string()
        }
        Some(v) => v.to_string(),
    };
    let envelope: Vec<_> = additional
        .iter()
        .filter(|a| a.placement == Placement::Envelope)
        .collect();
    if envelope.is_empty() {
        return Bytes::from(payload_json);
    }
    let mut out = format!("{{\"payload\":{payload_json}");
    for a in envelope {
        let v = text(&a.column).map_or(serde_json::Value::Null, serde_json::Value::from);
        out.push_str(&format!(",{}:{v}", serde_json::Value::from(a.name())));
    }
    out.push('}');
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgkafka_crds::AdditionalField;

    #[test]
    fn a_message_content_routes_as_an_outbox_row_would() {
        let spec = OutboxSpec {
            additional_placement: vec![AdditionalField {
                column: "type".into(),
                placement: Placement::Header,
                alias: None,
            }],
            ..OutboxSpec::default()
        };
        let content = br#"{"id": "e-1", "aggregatetype": "Order", "aggregateid": 42, "type": "OrderCreated", "payload": {"total": 10}}"#;
        let e = event_from_json(&spec, content, 7, "spec.messages[0]").expect("event");
        assert_eq!(e.topic, "outbox.event.Order");
        assert_eq!(e.key.as_deref(), Some(&b"42"[..]));
        assert_eq!(e.value.as_deref(), Some(&br#"{"total":10}"#[..]));
        assert_eq!(
            e.extras.headers,
            [
                ("id".to_owned(), Some("e-1".to_owned())),
                ("type".to_owned(), Some("OrderCreated".to_owned()))
            ]
        );
        assert_eq!(e.extras.timestamp_ms, Some(7));
        let err = event_from_json(&spec, b"[1]", 7, "spec.messages[0]").expect_err("not an object");
        assert!(
            err.to_string().starts_with("spec.messages[0].outbox: "),
            "{err}"
        );
        let err = event_from_json(&spec, br#"{"payload": 1}"#, 7, "spec.messages[0]")
            .expect_err("no aggregatetype");
        assert!(err.to_string().contains("\"aggregatetype\""), "{err}");
    }
}
