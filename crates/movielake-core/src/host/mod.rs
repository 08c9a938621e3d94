//! What the Functions host sends and expects back: invocation payloads, Event Hub batches, Event
//! Grid events and the bronze path guard. Pure decoding: the HTTP server and lake reads are the app's.
//!
//! The host sends every value that is not a JSON object as a JSON *string holding its JSON*
//! (strings double-encoded, arrays as a string, numbers as strings). Everything here accepts
//! both that wrapped form and the plain one.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value as Json};

use crate::contract::value::parse_timestamp;

mod event_hub;
pub mod eventgrid;
mod recover;

pub use event_hub::{EventHubBatch, decode_event_hub_batch, event_hub_request};
pub use recover::Unreadable;

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
