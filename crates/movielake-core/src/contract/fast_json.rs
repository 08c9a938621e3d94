//! Typing a JSON object's fields straight into a contract's values, without a JSON tree.
//!
//! The general path parses a body into a `serde_json::Value` (a map with a `String` per key and
//! per text value) and converts each column from it. For event streams that is most of the
//! validation cost, so this path visits the object once: each key is matched to its column while
//! still borrowed, and each value is typed by the column as it is read. Only what the general
//! path would do identically is done here; anything else (not an object, a value of another
//! JSON type than its column's, a timestamp that does not parse, a number out of range) makes it
//! give up, and the caller takes the general path, which produces the reasons.

use std::fmt;

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value as Json};

use crate::contract::Contract;
use crate::contract::value::{ColumnType, InputKind, Value, convert_owned, convert_text};

/// One result per contract column (`Ok(Null)` for columns the body does not fill), and the
/// fields no column took.
pub(crate) type TypedFields = (Vec<Result<Value, String>>, Map<String, Json>);

/// The body's fields typed by the contract; `None` when the general path must decide.
pub(crate) fn typed_fields(contract: &Contract, raw: &str) -> Option<TypedFields> {
    let mut fields = Fields {
        contract,
        values: vec![None; contract.columns.len()],
        unknown: Map::new(),
        unusual: false,
    };
    let mut de = serde_json::Deserializer::from_str(raw);
    de.deserialize_map(&mut fields).ok()?;
    de.end().ok()?;
    if fields.unusual {
        return None;
    }
    let body = fields
        .values
        .into_iter()
        .map(|v| Ok(v.unwrap_or(Value::Null)))
        .collect();
    Some((body, fields.unknown))
}

struct Fields<'c> {
    contract: &'c Contract,
    values: Vec<Option<Value>>,
    unknown: Map<String, Json>,
    unusual: bool,
}

impl Fields<'_> {
    /// The column a body field fills: the first one reading it (as the general path takes it).
    fn column_of(&self, key: &str) -> Option<usize> {
        (self.contract.columns.iter()).position(|c| c.derive.is_none() && !c.from_metadata && c.input_field() == key)
    }
}

enum Key {
    Column(usize),
    Unknown(String),
}

struct KeySeed<'a, 'c>(&'a Fields<'c>);

impl<'de> DeserializeSeed<'de> for KeySeed<'_, '_> {
    type Value = Key;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Key, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_, '_> {
    type Value = Key;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E>(self, key: &str) -> Result<Key, E> {
        Ok(match self.0.column_of(key) {
            Some(i) => Key::Column(i),
            None => Key::Unknown(key.to_string()),
        })
    }
}

impl<'de> Visitor<'de> for &mut Fields<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(KeySeed(self))? {
            match key {
                Key::Column(i) => {
                    let ty = self.contract.columns[i].ty;
                    let value = map.next_value_seed(ColumnSeed(ty))?;
                    self.unusual |= value.is_none();
                    self.values[i] = value;
                }
                Key::Unknown(name) => {
                    let value: Json = map.next_value()?;
                    self.unknown.insert(name, value);
                }
            }
        }
        Ok(())
    }
}

/// Types one value for its column; `None` when the general path must decide.
struct ColumnSeed(ColumnType);

impl<'de> DeserializeSeed<'de> for ColumnSeed {
    type Value = Option<Value>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<Value>, D::Error> {
        match self.0 {
            ColumnType::ListOfString | ColumnType::ListOfInt64 => {
                let json = Json::deserialize(deserializer)?;
                Ok(convert_owned(Some(json), self.0, InputKind::Json).ok())
            }
            _ => deserializer.deserialize_any(self),
        }
    }
}

impl<'de> Visitor<'de> for ColumnSeed {
    type Value = Option<Value>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a {} value", self.0.name())
    }
    fn visit_str<E>(self, v: &str) -> Result<Option<Value>, E> {
        Ok(match self.0 {
            ColumnType::String => Some(Value::String(v.to_string())),
            ColumnType::Date | ColumnType::Timestamp => convert_text(v, self.0).ok(),
            _ => None,
        })
    }
    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Option<Value>, E> {
        match self.0 {
            ColumnType::String => Ok(Some(Value::String(v))),
            _ => self.visit_str(&v),
        }
    }
    fn visit_i64<E>(self, v: i64) -> Result<Option<Value>, E> {
        Ok(match self.0 {
            ColumnType::Int64 => Some(Value::Int64(v)),
            ColumnType::Int32 => i32::try_from(v).ok().map(Value::Int32),
            ColumnType::Float64 => Some(Value::Float64(v as f64)),
            _ => None,
        })
    }
    fn visit_u64<E>(self, v: u64) -> Result<Option<Value>, E> {
        Ok(match self.0 {
            ColumnType::Int64 => i64::try_from(v).ok().map(Value::Int64),
            ColumnType::Int32 => i32::try_from(v).ok().map(Value::Int32),
            ColumnType::Float64 => Some(Value::Float64(v as f64)),
            _ => None,
        })
    }
    fn visit_f64<E>(self, v: f64) -> Result<Option<Value>, E> {
        Ok((self.0 == ColumnType::Float64).then_some(Value::Float64(v)))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Option<Value>, E> {
        Ok((self.0 == ColumnType::Bool).then_some(Value::Bool(v)))
    }
    fn visit_unit<E>(self) -> Result<Option<Value>, E> {
        Ok(Some(Value::Null))
    }
    fn visit_none<E>(self) -> Result<Option<Value>, E> {
        Ok(Some(Value::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<Value>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<Value>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use proptest::prelude::*;

    use super::*;
    use crate::contract::validate::Verdict;
    use crate::sources::events::sample::{SampleOptions, watch_events};

    fn contract() -> Contract {
        Contract::from_toml(
            "contracts/watch_events.toml",
            include_str!("../../../../contracts/watch_events.toml"),
        )
        .expect("contract")
    }

    /// What `check_json_with` did before this path existed.
    fn general(contract: &Contract, raw: &str, metadata: &[(&str, Value)]) -> Verdict {
        match serde_json::from_str::<Json>(raw) {
            Ok(Json::Object(map)) => contract.check_record(map, metadata),
            _ => contract.check_json(raw),
        }
    }

    fn metadata() -> Vec<(&'static str, Value)> {
        let enqueued = DateTime::from_timestamp(1_714_557_700, 0).unwrap_or_default();
        vec![
            ("sequence_number", Value::Int64(7)),
            ("enqueued_at", Value::Timestamp(enqueued)),
        ]
    }

    #[test]
    fn generated_events_good_and_bad_get_the_same_verdict_both_ways() {
        let contract = contract();
        let events = watch_events(&SampleOptions {
            seed: 3,
            count: 5_000,
            start: DateTime::from_timestamp(1_714_557_600, 0).unwrap_or_default(),
            bad_share: 0.3,
            duplicate_share: 0.05,
            sessions_per_second: 100.0,
            users: crate::sources::events::sample::DEFAULT_USERS,
        });
        let mut fast = 0;
        for event in &events {
            assert_eq!(
                contract.check_json_with(&event.body, &metadata()),
                general(&contract, &event.body, &metadata()),
                "{}",
                event.body
            );
            fast += usize::from(typed_fields(&contract, &event.body).is_some());
        }
        // Most events take the fast path (else it would measure nothing).
        assert!(fast > events.len() * 6 / 10, "{fast} of {}", events.len());
    }

    /// A field value of any JSON type, including the awkward ones.
    fn json_value() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("null".to_string()),
            Just("true".to_string()),
            Just("[1, \"a\"]".to_string()),
            Just("{\"x\": [null]}".to_string()),
            Just("\"2024-05-01T10:00:00Z\"".to_string()),
            Just("\"2024-05-01 10:00:00\"".to_string()),
            Just("\"watch_started\"".to_string()),
            Just("\"tv\"".to_string()),
            Just("\"DE\"".to_string()),
            Just("\"e\\u00e9\\n\"".to_string()),
            Just("\"7b1f6a0e-0000-4000-8000-00000000000a\"".to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            Just("18446744073709551615".to_string()),
            Just("2147483648".to_string()),
            Just("1.5".to_string()),
            Just("1e3".to_string()),
            Just("-0".to_string()),
        ]
    }

    fn field_name() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("event_id"),
            Just("event_type"),
            Just("user_id"),
            Just("session_id"),
            Just("movie_id"),
            Just("occurred_at"),
            Just("device"),
            Just("country"),
            Just("position_seconds"),
            Just("duration_seconds"),
            Just("sequence_number"),
            Just("enqueued_at"),
            Just("hour"),
            Just("extra"),
            Just("event\\u005fid"),
        ]
        .prop_map(str::to_string)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]
        #[test]
        fn any_object_gets_the_same_verdict_both_ways(
            changes in prop::collection::vec((field_name(), json_value()), 0..6),
            drop_base in any::<bool>(),
            garbage in prop_oneof![Just(""), Just(" "), Just("x"), Just("}"), Just(",")],
        ) {
            let contract = contract();
            // A valid event, then fields changed, added or repeated: many stay valid, so rescued
            // fields and typed values are compared too, not only reasons.
            let base = [
                ("event_id", "\"7b1f6a0e-0000-4000-8000-00000000000a\""),
                ("event_type", "\"watch_finished\""),
                ("user_id", "\"u-1\""),
                ("session_id", "\"s-1\""),
                ("movie_id", "550"),
                ("occurred_at", "\"2024-05-01T10:00:00Z\""),
                ("device", "\"tv\""),
                ("country", "\"DE\""),
                ("position_seconds", "10"),
                ("duration_seconds", "100"),
            ];
            let mut body: Vec<String> = if drop_base {
                Vec::new()
            } else {
                base.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect()
            };
            body.extend(changes.iter().map(|(k, v)| format!("\"{k}\": {v}")));
            let raw = format!("{{{}}}{garbage}", body.join(", "));
            prop_assert_eq!(
                contract.check_json_with(&raw, &metadata()),
                general(&contract, &raw, &metadata())
            );
        }
    }
}
