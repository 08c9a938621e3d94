//! The Azure Functions custom-handler payload: decoding what the host sends, encoding what it
//! expects back. Pure; the HTTP server lives in the app crate.
//!
//! The host sends every value that is not a JSON object as a JSON *string holding its JSON*
//! (strings double-encoded, arrays as a string, numbers as strings). Everything here accepts
//! both that wrapped form and the plain one.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value as Json};

use crate::value::parse_timestamp;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HostError {
    #[error("the request body is not a JSON object: {0}")]
    NotJson(String),
    #[error("the request has no {0}")]
    Missing(String),
    #[error("{field} is malformed: {detail}")]
    Malformed { field: String, detail: String },
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Invocation {
    pub data: Map<String, Json>,
    pub metadata: Map<String, Json>,
}

pub fn decode_invocation(body: &[u8]) -> Result<Invocation, HostError> {
    let root: Json = serde_json::from_slice(body).map_err(|e| HostError::NotJson(e.to_string()))?;
    let Json::Object(mut root) = root else {
        return Err(HostError::NotJson("the top level is not an object".into()));
    };
    let object = |v: Option<Json>, field: &str| -> Result<Map<String, Json>, HostError> {
        match v.map(|v| unwrap_json(&v)) {
            None | Some(Json::Null) => Ok(Map::new()),
            Some(Json::Object(m)) => Ok(m),
            Some(_) => Err(HostError::Malformed {
                field: field.into(),
                detail: "expected an object".into(),
            }),
        }
    };
    if !root.contains_key("Data") {
        return Err(HostError::Missing("Data object".into()));
    }
    Ok(Invocation {
        data: object(root.remove("Data"), "Data")?,
        metadata: object(root.remove("Metadata"), "Metadata")?,
    })
}

/// An element of a metadata array: the array itself comes string-wrapped, its elements plain;
/// an element that is itself a wrapped object, array or string is unwrapped. Only those are
/// tried: a timestamp or a number in a string stays a string (and costs no failed parse, which
/// for 50 000 events a batch was most of the metadata's decoding time).
fn plain_element(v: Json) -> Json {
    match &v {
        Json::String(s) if s.starts_with(['{', '[', '"']) => serde_json::from_str(s).unwrap_or(v),
        _ => v,
    }
}

/// The plain value behind a possibly string-wrapped one. A string that does not hold JSON is a
/// plain string and comes back as it is.
pub fn unwrap_json(v: &Json) -> Json {
    match v {
        Json::String(s) => serde_json::from_str(s).unwrap_or_else(|_| v.clone()),
        other => other.clone(),
    }
}

impl Invocation {
    pub fn data(&self, binding: &str) -> Option<Json> {
        self.data.get(binding).map(unwrap_json)
    }

    pub fn metadata(&self, key: &str) -> Option<Json> {
        self.metadata.get(key).map(unwrap_json)
    }

    /// `Metadata.RetryContext.RetryCount`, 0 on a first attempt.
    pub fn retry_count(&self) -> u64 {
        self.metadata("RetryContext")
            .and_then(|rc| rc.get("RetryCount").map(unwrap_json))
            .and_then(|n| n.as_u64())
            .unwrap_or(0)
    }

    /// `Metadata.sys.UtcNow`: when the host invoked us (the host's clock, not ours).
    pub fn host_time(&self) -> Option<DateTime<Utc>> {
        let sys = self.metadata("sys")?;
        parse_timestamp(unwrap_json(sys.get("UtcNow")?).as_str()?)
    }
}

/// An Event Hub batch (`cardinality: many`, `dataType: string`), as delivered.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EventHubBatch {
    /// Each event body exactly as sent.
    pub bodies: Vec<String>,
    pub partition_id: String,
    pub event_hub: Option<String>,
    pub consumer_group: Option<String>,
    pub sequence_numbers: Vec<i64>,
    pub offsets: Vec<String>,
    pub enqueued_times: Vec<Option<DateTime<Utc>>>,
    pub partition_keys: Vec<Option<String>>,
    pub properties: Vec<Json>,
    /// Set when a metadata array does not line up with the bodies: the events cannot be
    /// attributed, so every one of them goes to quarantine with this reason.
    pub misaligned: Option<String>,
}

pub fn decode_event_hub_batch(inv: &Invocation, binding: &str) -> Result<EventHubBatch, HostError> {
    let data = inv
        .data(binding)
        .ok_or_else(|| HostError::Missing(format!("Data.{binding}")))?;
    let bodies: Vec<String> = match data {
        Json::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Json::String(s) => s,
                other => other.to_string(),
            })
            .collect(),
        Json::String(s) => vec![s],
        other => vec![other.to_string()],
    };
    let context = inv.metadata("PartitionContext").unwrap_or(Json::Null);
    let text = |v: Option<&Json>| {
        v.cloned().map(plain_element).and_then(|v| match v {
            Json::String(s) => Some(s),
            Json::Number(n) => Some(n.to_string()),
            _ => None,
        })
    };
    let partition_id = text(context.get("PartitionId"))
        .ok_or_else(|| HostError::Missing("Metadata.PartitionContext.PartitionId".into()))?;

    let array = |key: &str| -> Result<Vec<Json>, HostError> {
        match inv.metadata(key) {
            None | Some(Json::Null) => Ok(Vec::new()),
            Some(Json::Array(items)) => Ok(items.into_iter().map(plain_element).collect()),
            Some(_) => Err(HostError::Malformed {
                field: format!("Metadata.{key}"),
                detail: "expected an array".into(),
            }),
        }
    };
    let sequence_numbers = array("SequenceNumberArray")?
        .iter()
        .map(|v| {
            let number = v.as_i64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()));
            number.ok_or_else(|| HostError::Malformed {
                field: "Metadata.SequenceNumberArray".into(),
                detail: format!("{v} is not an integer"),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let offsets = array("OffsetArray")?
        .iter()
        .map(|v| text(Some(v)).unwrap_or_default())
        .collect();
    let enqueued_times = array("EnqueuedTimeUtcArray")?
        .iter()
        .map(|v| v.as_str().and_then(parse_timestamp))
        .collect();
    let partition_keys = array("PartitionKeyArray")?.iter().map(|v| text(Some(v))).collect();
    let properties = array("PropertiesArray")?;

    let mut batch = EventHubBatch {
        partition_id,
        event_hub: text(context.get("EventHubName")),
        consumer_group: text(context.get("ConsumerGroup")),
        sequence_numbers,
        offsets,
        enqueued_times,
        partition_keys,
        properties,
        bodies,
        misaligned: None,
    };
    let n = batch.bodies.len();
    let lengths = [
        ("SequenceNumberArray", batch.sequence_numbers.len(), true),
        ("EnqueuedTimeUtcArray", batch.enqueued_times.len(), true),
        ("OffsetArray", batch.offsets.len(), false),
        ("PartitionKeyArray", batch.partition_keys.len(), false),
        ("PropertiesArray", batch.properties.len(), false),
    ];
    let wrong: Vec<String> = lengths
        .iter()
        .filter(|(_, len, essential)| *len != n && (*essential || *len != 0))
        .map(|(key, len, _)| format!("{key} has {len} entries"))
        .collect();
    if !wrong.is_empty() {
        batch.misaligned = Some(format!("{n} events but {}", wrong.join(", ")));
    }
    Ok(batch)
}

/// A timer trigger's payload.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TimerInfo {
    pub is_past_due: bool,
}

pub fn decode_timer(inv: &Invocation, binding: &str) -> Result<TimerInfo, HostError> {
    let data = inv
        .data(binding)
        .ok_or_else(|| HostError::Missing(format!("Data.{binding}")))?;
    let is_past_due = data
        .get("IsPastDue")
        .map(unwrap_json)
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    Ok(TimerInfo { is_past_due })
}

/// The response body the host expects: always this shape, never empty.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct InvocationResponse {
    pub outputs: Map<String, Json>,
    pub logs: Vec<String>,
    pub return_value: Option<Json>,
}

impl InvocationResponse {
    pub fn with_logs(logs: Vec<String>) -> Self {
        InvocationResponse {
            logs,
            ..Default::default()
        }
    }
}

/// Builds an Event Hub invocation exactly as the host sends it (`cardinality: many`,
/// `dataType: string`): the bodies as a string holding a JSON array of strings, metadata arrays
/// string-wrapped, `PartitionContext` an object. `movielake run` and `send-events` use it to
/// stand in for the host.
pub fn event_hub_request(
    binding: &str,
    function: &str,
    partition_id: &str,
    first_sequence_number: i64,
    events: &[(String, DateTime<Utc>)],
) -> Json {
    let wrap = |v: Json| Json::String(v.to_string());
    let bodies: Vec<Json> = events.iter().map(|(b, _)| Json::String(b.clone())).collect();
    let seqs: Vec<i64> = (0..events.len() as i64).map(|i| first_sequence_number + i).collect();
    let offsets: Vec<String> = seqs.iter().map(|s| (s * 512).to_string()).collect();
    let enqueued: Vec<String> = events
        .iter()
        .map(|(_, t)| t.format("%Y-%m-%dT%H:%M:%S%.3f").to_string())
        .collect();
    let system: Vec<Json> = seqs
        .iter()
        .zip(&enqueued)
        .map(|(s, t)| serde_json::json!({"SequenceNumber": s, "EnqueuedTimeUtc": t, "PartitionKey": null}))
        .collect();
    let now = events.last().map(|(_, t)| *t).unwrap_or_default();
    serde_json::json!({
        "Data": { binding: wrap(Json::Array(bodies)) },
        "Metadata": {
            "PartitionContext": {
                "FullyQualifiedNamespace": "local.servicebus.windows.net",
                "EventHubName": "watch-events",
                "ConsumerGroup": "$Default",
                "PartitionId": partition_id
            },
            "SequenceNumberArray": wrap(serde_json::json!(seqs)),
            "OffsetArray": wrap(serde_json::json!(offsets)),
            "EnqueuedTimeUtcArray": wrap(serde_json::json!(enqueued)),
            "PartitionKeyArray": wrap(Json::Array(vec![Json::Null; events.len()])),
            "PropertiesArray": wrap(Json::Array(vec![serde_json::json!({}); events.len()])),
            "SystemPropertiesArray": wrap(Json::Array(system)),
            "sys": {
                "MethodName": function,
                "UtcNow": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "RandGuid": "00000000-0000-0000-0000-000000000000"
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn batch_of(metadata: Json) -> EventHubBatch {
        let body = json!({
            "Data": {"events": "[\"{\\\"a\\\":1}\",\"{\\\"a\\\":2}\"]"},
            "Metadata": metadata,
        });
        let inv = decode_invocation(body.to_string().as_bytes()).expect("invocation");
        decode_event_hub_batch(&inv, "events").expect("batch")
    }

    #[test]
    fn metadata_elements_are_read_plain_or_wrapped() {
        let batch = batch_of(json!({
            "PartitionContext": {"PartitionId": "3"},
            // Numbers as strings, a timestamp with and without offset, a wrapped object.
            "SequenceNumberArray": "[\"41\", 42]",
            "OffsetArray": "[512, \"1024\"]",
            "EnqueuedTimeUtcArray": "[\"2024-05-01T10:00:00.5\", \"2024-05-01T10:00:01Z\"]",
            "PartitionKeyArray": "[null, \"user-7\"]",
            "PropertiesArray": "[{\"k\": 1}, \"{\\\"k\\\": 2}\"]",
        }));
        assert_eq!(batch.bodies, ["{\"a\":1}", "{\"a\":2}"]);
        assert_eq!(batch.sequence_numbers, [41, 42]);
        assert_eq!(batch.offsets, ["512", "1024"]);
        let times: Vec<String> = batch.enqueued_times.iter().flatten().map(|t| t.to_rfc3339()).collect();
        assert_eq!(times, ["2024-05-01T10:00:00.500+00:00", "2024-05-01T10:00:01+00:00"]);
        assert_eq!(batch.partition_keys, [None, Some("user-7".to_string())]);
        assert_eq!(batch.properties, [json!({"k": 1}), json!({"k": 2})]);
        assert_eq!(batch.misaligned, None);
    }

    #[test]
    fn a_sequence_number_that_is_no_integer_is_malformed() {
        let body = json!({
            "Data": {"events": "[\"{}\"]"},
            "Metadata": {"PartitionContext": {"PartitionId": "0"}, "SequenceNumberArray": "[\"x1\"]"},
        });
        let inv = decode_invocation(body.to_string().as_bytes()).expect("invocation");
        let err = decode_event_hub_batch(&inv, "events").expect_err("malformed");
        assert!(
            matches!(err, HostError::Malformed { ref field, .. } if field == "Metadata.SequenceNumberArray"),
            "{err}"
        );
    }
}
