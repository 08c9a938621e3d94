//! The Event Hub trigger's batch (`cardinality: many`, `dataType: string`). The bodies come as
//! a string holding a JSON array of strings and every metadata array string-wrapped; each is
//! read straight into typed values (no JSON tree per event).

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value as Json;

use super::recover::{self, Unreadable, recover_bodies};
use super::{HostError, Invocation, plain_element};
use crate::contract::value::parse_timestamp;

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
    /// Bodies (by index) that could not be read as sent, when the array had to be recovered
    /// element by element: each goes to quarantine with its raw text.
    pub unreadable: Vec<(usize, Unreadable)>,
}

pub fn decode_event_hub_batch(inv: &Invocation, binding: &str) -> Result<EventHubBatch, HostError> {
    let data = inv
        .data
        .get(binding)
        .ok_or_else(|| HostError::Missing(format!("Data.{binding}")))?;
    let (bodies, unreadable) = decode_bodies(data).map_err(|e| HostError::Malformed {
        field: format!("Data.{binding}"),
        detail: e.to_string(),
    })?;
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

    let sequence_numbers = metadata_array(inv, "SequenceNumberArray", |e| match e.unwrapped() {
        Element::Int(n) => Ok(n),
        Element::Text(s) => s.trim().parse().map_err(|_| format!("{s:?} is not an integer")),
        other => Err(format!("{} is not an integer", other.describe())),
    })?;
    // Text elements are unwrapped twice (as the element of a wrapped array, then as text), as
    // the batch has always read them: bronze keeps the same offsets and keys across versions.
    let offsets = metadata_array(inv, "OffsetArray", |e| {
        Ok(e.unwrapped().unwrapped().into_text().unwrap_or_default())
    })?;
    let enqueued_times = metadata_array(inv, "EnqueuedTimeUtcArray", |e| match e.unwrapped() {
        Element::Text(s) => Ok(parse_timestamp(&s)),
        _ => Ok(None),
    })?;
    let partition_keys = metadata_array(inv, "PartitionKeyArray", |e| Ok(e.unwrapped().unwrapped().into_text()))?;
    let properties = match inv.metadata.get("PropertiesArray") {
        None => Vec::new(),
        Some(raw) => read_wrapped(raw, |source| source.parse::<Option<Vec<Json>>>())
            .map_err(|e| malformed("PropertiesArray", e.to_string()))?
            .unwrap_or_default()
            .into_iter()
            .map(plain_element)
            .collect(),
    };

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
        unreadable,
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

/// The bodies, and those that could not be read as sent. A wrapped array that does not parse
/// as a whole is split element by element ([`recover_bodies`]) rather than taken as one body.
fn decode_bodies(data: &Json) -> Result<recover::Bodies, serde_json::Error> {
    let whole = |data: &Json| read_wrapped(data, |source| source.parse::<Bodies>()).map(|b| (b.0, Vec::new()));
    match data {
        Json::String(inner) if inner.trim_start().starts_with('[') => match Source::Text(inner).parse::<Bodies>() {
            Ok(bodies) => Ok((bodies.0, Vec::new())),
            Err(_) => recover_bodies(inner).map_or_else(|| whole(data), Ok),
        },
        _ => whole(data),
    }
}

fn malformed(key: &str, detail: String) -> HostError {
    HostError::Malformed {
        field: format!("Metadata.{key}"),
        detail,
    }
}

/// Where a possibly wrapped value is read from: the JSON text a string holds, or a plain value.
#[derive(Clone, Copy)]
enum Source<'a> {
    Text(&'a str),
    Value(&'a Json),
}

impl<'a> Source<'a> {
    fn parse<T: Deserialize<'a>>(self) -> Result<T, serde_json::Error> {
        match self {
            Source::Text(text) => serde_json::from_str(text),
            Source::Value(value) => T::deserialize(value),
        }
    }
}

/// Reads a possibly string-wrapped value with `read`: a string's content when it reads,
/// otherwise the value itself (a plain string stays a string). When both fail, the error is the
/// one of the wrapped content, which is what the sender meant. Text is read in place, so values
/// borrow from it rather than going through a second JSON tree.
fn read_wrapped<T>(
    value: &Json,
    read: impl Fn(Source<'_>) -> Result<T, serde_json::Error>,
) -> Result<T, serde_json::Error> {
    match value {
        Json::String(inner) => {
            read(Source::Text(inner)).or_else(|wrapped| read(Source::Value(value)).map_err(|_| wrapped))
        }
        plain => read(Source::Value(plain)),
    }
}

/// A metadata array (absent or null: empty), each element typed by `convert`.
fn metadata_array<T>(
    inv: &Invocation,
    key: &str,
    convert: impl Fn(Element<'_>) -> Result<T, String>,
) -> Result<Vec<T>, HostError> {
    let Some(raw) = inv.metadata.get(key) else {
        return Ok(Vec::new());
    };
    let read = |source: Source<'_>| -> Result<Result<Vec<T>, String>, serde_json::Error> {
        let elements: Option<Vec<Element<'_>>> = source.parse()?;
        Ok(elements.unwrap_or_default().into_iter().map(&convert).collect())
    };
    read_wrapped(raw, read)
        .map_err(|e| malformed(key, e.to_string()))?
        .map_err(|detail| malformed(key, detail))
}

/// The event bodies: an array of strings (a non-string item is kept as its JSON text), or one
/// body when the binding holds a single value.
struct Bodies(Vec<String>);

impl<'de> Deserialize<'de> for Bodies {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Bodies;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array of event bodies")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bodies, A::Error> {
                let mut bodies = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(Body(body)) = seq.next_element()? {
                    bodies.push(body);
                }
                Ok(Bodies(bodies))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Bodies, E> {
                Ok(Bodies(vec![v.to_owned()]))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Bodies, E> {
                Ok(Bodies(vec![v]))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Bodies, A::Error> {
                let value = Json::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Bodies(vec![value.to_string()]))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Bodies, E> {
                Ok(Bodies(vec![v.to_string()]))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Bodies, E> {
                Ok(Bodies(vec![v.to_string()]))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Bodies, E> {
                Ok(Bodies(vec![Json::from(v).to_string()]))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Bodies, E> {
                Ok(Bodies(vec![v.to_string()]))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Bodies, E> {
                Ok(Bodies(vec!["null".into()]))
            }
        }
        deserializer.deserialize_any(Visit)
    }
}

/// One event body: a string as it is, anything else as its JSON text.
struct Body(String);

impl<'de> Deserialize<'de> for Body {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Json::deserialize(deserializer)? {
            Json::String(s) => Ok(Body(s)),
            other => Ok(Body(other.to_string())),
        }
    }
}

/// One element of a metadata array, as far as those arrays need it: text borrowed from the
/// array when it has no escapes, integers typed, structures only named.
#[derive(Debug)]
enum Element<'a> {
    Text(Cow<'a, str>),
    Int(i64),
    Number(String),
    Other(&'static str),
}

impl Element<'_> {
    /// A text element that is itself wrapped JSON (`"\"x\""`, `"{...}"`) read once more.
    fn unwrapped(self) -> Self {
        match self {
            Element::Text(s) if s.starts_with(['{', '[', '"']) => {
                let inner = serde_json::from_str::<Element<'_>>(&s).ok().map(Element::into_owned);
                inner.unwrap_or(Element::Text(s))
            }
            other => other,
        }
    }

    fn into_owned(self) -> Element<'static> {
        match self {
            Element::Text(s) => Element::Text(Cow::Owned(s.into_owned())),
            Element::Int(n) => Element::Int(n),
            Element::Number(n) => Element::Number(n),
            Element::Other(what) => Element::Other(what),
        }
    }

    fn into_text(self) -> Option<String> {
        match self {
            Element::Text(s) => Some(s.into_owned()),
            Element::Int(n) => Some(n.to_string()),
            Element::Number(n) => Some(n),
            Element::Other(_) => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            Element::Text(s) => format!("{s:?}"),
            Element::Int(n) => n.to_string(),
            Element::Number(n) => n.clone(),
            Element::Other(what) => (*what).to_string(),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Element<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Element<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a metadata value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Element<'de>, E> {
                Ok(Element::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Element<'de>, E> {
                Ok(Element::Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Element<'de>, E> {
                Ok(Element::Text(Cow::Owned(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Element<'de>, E> {
                Ok(Element::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Element<'de>, E> {
                Ok(i64::try_from(v).map_or_else(|_| Element::Number(v.to_string()), Element::Int))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Element<'de>, E> {
                Ok(Element::Number(Json::from(v).to_string()))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Element<'de>, E> {
                Ok(Element::Other("a boolean"))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Element<'de>, E> {
                Ok(Element::Other("null"))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Element<'de>, A::Error> {
                while seq.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(Element::Other("an array"))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Element<'de>, A::Error> {
                while map.next_entry::<de::IgnoredAny, de::IgnoredAny>()?.is_some() {}
                Ok(Element::Other("an object"))
            }
        }
        deserializer.deserialize_any(Visit)
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
    use crate::host::decode_invocation;

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

    #[test]
    fn bodies_are_read_from_any_shape_the_binding_takes() {
        let bodies = |events: Json| {
            let body = json!({"Data": {"events": events}, "Metadata": {"PartitionContext": {"PartitionId": "0"}}});
            let inv = decode_invocation(body.to_string().as_bytes()).expect("invocation");
            decode_event_hub_batch(&inv, "events").expect("batch").bodies
        };
        // Wrapped array with a non-string item (kept as its JSON text) and an escaped body.
        assert_eq!(
            bodies(json!("[\"{\\\"k\\\":\\\"\\\\u00e9\\\"}\", 7, {\"a\": [1]}, null]")),
            ["{\"k\":\"\\u00e9\"}", "7", "{\"a\":[1]}", "null"]
        );
        // A plain (unwrapped) array, a string that holds no JSON, a lone wrapped string.
        assert_eq!(bodies(json!(["x", "y"])), ["x", "y"]);
        assert_eq!(bodies(json!("not json [")), ["not json ["]);
        assert_eq!(bodies(json!("\"one\"")), ["one"]);
    }

    #[test]
    fn a_metadata_value_that_is_no_array_is_malformed() {
        for array in [json!("{\"a\": 1}"), json!(5), json!("[1, 2")] {
            let body = json!({
                "Data": {"events": "[\"{}\"]"},
                "Metadata": {"PartitionContext": {"PartitionId": "0"}, "OffsetArray": array},
            });
            let inv = decode_invocation(body.to_string().as_bytes()).expect("invocation");
            let err = decode_event_hub_batch(&inv, "events").expect_err("malformed");
            assert!(
                matches!(err, HostError::Malformed { ref field, .. } if field == "Metadata.OffsetArray"),
                "{array}: {err}"
            );
        }
    }

    #[test]
    fn text_elements_are_unwrapped_twice_as_they_always_were() {
        let wrap = |v: Json| Json::String(v.to_string());
        let twice = |v: Json| wrap(wrap(v));
        let batch = batch_of(json!({
            "PartitionContext": {"PartitionId": "0"},
            "PartitionKeyArray": wrap(json!([twice(json!("user-7")), twice(json!({"t": 1}))])),
            "OffsetArray": wrap(json!([twice(json!("512")), twice(json!([1]))])),
        }));
        assert_eq!(batch.partition_keys, [Some("user-7".to_string()), None]);
        assert_eq!(batch.offsets, ["512", ""]);
    }

    #[test]
    fn a_plain_number_body_is_read_once() {
        // Reading a plain value back from its text would parse the float twice (one ulp off).
        let text = r#"{"Data": {"events": ["a", 1.0715660391465826e-75]}, "Metadata": {"PartitionContext": {"PartitionId": "0"}}}"#;
        let inv = decode_invocation(text.as_bytes()).expect("invocation");
        let bodies = decode_event_hub_batch(&inv, "events").expect("batch").bodies;
        let once = serde_json::from_str::<Json>("1.0715660391465826e-75")
            .expect("float")
            .to_string();
        assert_eq!(bodies, ["a".to_string(), once]);
    }
}
