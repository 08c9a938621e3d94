//! Integration tests of the core (one test binary): contracts, the rule engine, routing,
//! Parquet encoding; TMDB pages and Event Grid events in their own modules.

mod enrich;
mod eventgrid;
mod imdb;
mod movies_dataset;
mod tmdb;

use chrono::{TimeZone, Utc};
use movielake_core::contract::Contract;
use movielake_core::contract::validate::{Stage, Verdict};
use movielake_core::routing::quarantine::{SourcePointer, encode_jsonl};
use movielake_core::routing::route::{RunContext, SourceRecord, route};
use proptest::prelude::*;
use serde_json::json;

const WATCH_EVENTS: &str = include_str!("../../../../contracts/watch_events.toml");

fn watch_contract() -> Contract {
    Contract::from_toml("contracts/watch_events.toml", WATCH_EVENTS).expect("the shipped contract loads")
}

fn good_event() -> serde_json::Value {
    json!({
        "event_id": "0b7e5c4e-1f1a-4c55-9d7e-5a8f0e2c9b11",
        "event_type": "watch_finished",
        "user_id": "u-42",
        "session_id": "s-9",
        "movie_id": 550,
        "occurred_at": "2024-05-01T10:15:30.250Z",
        "device": "tv",
        "country": "FR",
        "position_seconds": 8340,
        "duration_seconds": 8340
    })
}

fn meta(seq: i64) -> Vec<(&'static str, movielake_core::Value)> {
    let enqueued = movielake_core::contract::value::parse_timestamp("2024-05-01T10:16:00.000Z").unwrap();
    vec![
        ("enqueued_at", movielake_core::Value::Timestamp(enqueued)),
        ("sequence_number", movielake_core::Value::Int64(seq)),
    ]
}

/// Checks an event body as the watch-events pipeline does: body plus delivery metadata.
fn check(e: &serde_json::Value) -> Verdict {
    watch_contract().check_record(e.as_object().unwrap().clone(), &meta(1))
}

fn ctx() -> RunContext {
    RunContext {
        run_id: "run-1".into(),
        ingested_at: Utc.with_ymd_and_hms(2024, 5, 1, 10, 16, 0).unwrap(),
    }
}

mod contracts {
    use super::*;

    #[test]
    fn every_failing_rule_is_reported_not_only_the_first() {
        let mut e = good_event();
        e["event_type"] = json!("watch_paused"); // one_of
        e["movie_id"] = json!(0); // min
        e["country"] = json!("France"); // regex
        e["position_seconds"] = json!(9000); // row rule: position <= duration
        e["user_id"] = json!(12); // type
        let Verdict::Rejected(r) = check(&e) else {
            panic!("a record breaking five rules was accepted");
        };
        let mut rules: Vec<(&str, Option<&str>)> = r
            .reasons
            .iter()
            .map(|r| (r.rule.as_str(), r.column.as_deref()))
            .collect();
        rules.sort();
        assert_eq!(
            rules,
            vec![
                ("min", Some("movie_id")),
                ("one_of", Some("event_type")),
                ("position_within_duration", None),
                ("regex", Some("country")),
                ("type", Some("user_id")),
            ]
        );
        assert_eq!(r.stage, Stage::Schema, "the earliest stage names the record");
    }

    #[test]
    fn conditional_row_rule_and_required() {
        let mut e = good_event();
        e.as_object_mut().unwrap().remove("position_seconds");
        e.as_object_mut().unwrap().remove("device");
        let Verdict::Rejected(r) = check(&e) else {
            panic!("accepted")
        };
        let rules: Vec<&str> = r.reasons.iter().map(|r| r.rule.as_str()).collect();
        assert_eq!(rules, vec!["required", "finished_has_position"]);
        assert_eq!(r.reasons[0].column.as_deref(), Some("device"));
    }

    #[test]
    fn events_from_the_future_and_missing_metadata_are_refused() {
        let mut e = good_event();
        e["occurred_at"] = json!("2024-05-01T10:21:00.001Z"); // enqueued 10:16 + 5 min < this
        let Verdict::Rejected(r) = check(&e) else {
            panic!("accepted an event from the future")
        };
        assert_eq!(r.reasons[0].rule, "not_after_enqueue");
        e["occurred_at"] = json!("2024-05-01T10:21:00Z");
        assert!(
            matches!(check(&e), Verdict::Valid(_)),
            "exactly 5 minutes late is allowed"
        );
        let Verdict::Rejected(r) = watch_contract().check_fields(e.as_object().unwrap().clone()) else {
            panic!("accepted")
        };
        let missing: Vec<_> = r
            .reasons
            .iter()
            .map(|r| (r.rule.as_str(), r.column.as_deref()))
            .collect();
        assert_eq!(
            missing,
            vec![("required", Some("enqueued_at")), ("required", Some("sequence_number"))]
        );
    }

    #[test]
    fn metadata_names_in_the_body_are_rescued_not_trusted() {
        let mut e = good_event();
        e["enqueued_at"] = json!("2030-01-01T00:00:00Z");
        let Verdict::Valid(row) = check(&e) else {
            panic!("rejected")
        };
        assert_eq!(
            row.rescued.as_deref(),
            Some(r#"{"enqueued_at":"2030-01-01T00:00:00Z"}"#)
        );
    }

    #[test]
    fn unknown_fields_are_rescued_not_dropped() {
        let mut e = good_event();
        e["app_version"] = json!("7.1.0");
        e["ab"] = json!({"group": "b"});
        let Verdict::Valid(row) = check(&e) else {
            panic!("rejected")
        };
        let rescued: serde_json::Value = serde_json::from_str(row.rescued.as_deref().unwrap()).unwrap();
        assert_eq!(rescued, json!({"app_version": "7.1.0", "ab": {"group": "b"}}));
    }

    #[test]
    fn unknown_fields_can_be_quarantined_instead() {
        let text = WATCH_EVENTS.replace("unknown_fields = \"rescue\"", "unknown_fields = \"quarantine\"");
        let c = Contract::from_toml("contracts/watch_events.toml", &text).unwrap();
        let mut e = good_event();
        e["extra"] = json!(1);
        let Verdict::Rejected(r) = c.check_record(e.as_object().unwrap().clone(), &meta(1)) else {
            panic!("accepted")
        };
        assert_eq!(r.reasons[0].rule, "unknown_field");
        assert_eq!(r.reasons[0].column.as_deref(), Some("extra"));
    }

    #[test]
    fn derived_partition_columns_follow_event_time() {
        let Verdict::Valid(row) = check(&good_event()) else {
            panic!("rejected")
        };
        let c = watch_contract();
        let date = &row.values[c.column_index("event_date").unwrap()];
        let hour = &row.values[c.column_index("hour").unwrap()];
        assert_eq!(date.render(), "2024-05-01");
        assert_eq!(hour.render(), "10");
    }

    fn refused(text: &str) -> String {
        Contract::from_toml("contracts/bad.toml", text)
            .expect_err("malformed contract accepted")
            .to_string()
    }

    const HEAD: &str = "name = \"bad\"\nversion = 1\nsource = \"s\"\ntable = \"t\"\n";

    #[test]
    fn malformed_contracts_are_refused_with_file_and_line() {
        let unknown_type = format!("{HEAD}\n[[columns]]\nname = \"a\"\ntype = \"integer\"\n");
        assert_eq!(
            refused(&unknown_type),
            "contracts/bad.toml:8:8: column 'a': unknown type 'integer' (one of: string, int32, int64, float64, bool, date, timestamp, list<string>, list<int64>)"
        );
        let bad_rule = format!(
            "{HEAD}\n[[columns]]\nname = \"a\"\ntype = \"int64\"\n\n[[rules]]\nname = \"r\"\ncheck = \"a <= b\"\n"
        );
        assert_eq!(
            refused(&bad_rule),
            "contracts/bad.toml:12:9: rule 'r': unknown column 'b'"
        );
        let bad_regex = format!("{HEAD}\n[[columns]]\nname = \"a\"\ntype = \"string\"\nregex = \"([a-z\"\n");
        assert!(
            refused(&bad_regex).starts_with("contracts/bad.toml:9:9: column 'a': invalid regex"),
            "{}",
            refused(&bad_regex)
        );
        let typo = format!("{HEAD}\n[[columns]]\nname = \"a\"\ntype = \"string\"\nrequird = true\n");
        let msg = refused(&typo);
        assert!(
            msg.starts_with("contracts/bad.toml:9:1: unknown field `requird`"),
            "{msg}"
        );
        let syntax = format!("{HEAD}\n[[columns]\n");
        assert!(
            refused(&syntax).starts_with("contracts/bad.toml:6:"),
            "{}",
            refused(&syntax)
        );
        let bad_key = format!("{HEAD}key = [\"nope\"]\n[[columns]]\nname = \"a\"\ntype = \"string\"\n");
        assert_eq!(
            refused(&bad_key),
            "contracts/bad.toml:5:7: key names unknown column 'nope'"
        );
        let enrich_types =
            format!("{HEAD}enrich_as_of = [\"a\", \"a\"]\n[[columns]]\nname = \"a\"\ntype = \"string\"\n");
        assert_eq!(
            refused(&enrich_types),
            "contracts/bad.toml:5:16: enrich_as_of names two columns: the user (string) and the event time (timestamp)"
        );
        let wrong_name = HEAD.replace("\"bad\"", "\"other\"");
        assert_eq!(
            refused(&wrong_name),
            "contracts/bad.toml:1:8: name 'other' must match the file name 'bad.toml'"
        );
        let bad_min = format!("{HEAD}\n[[columns]]\nname = \"a\"\ntype = \"string\"\nmin = 3\n");
        assert_eq!(
            refused(&bad_min),
            "contracts/bad.toml:9:7: column 'a': min does not apply to type string"
        );
    }
}

mod id_patterns {
    use super::*;

    proptest! {
        /// The byte-loop check of `^<literal>[0-9]+$` patterns says exactly what the regex says.
        #[test]
        fn prefix_digit_patterns_agree_with_the_regex(s in "(tt|nm|t|)[0-9٣]{0,4}[a-z\n]{0,1}[0-9]{0,2}") {
            let contract = Contract::from_toml(
                "contracts/ids.toml",
                "name = \"ids\"\nversion = 1\nsource = \"s\"\ntable = \"t\"\n\n[[columns]]\nname = \"id\"\ntype = \"string\"\nregex = '^tt[0-9]+$'\n",
            )
            .expect("contract");
            let regex = regex::Regex::new("^tt[0-9]+$").expect("regex");
            let valid = matches!(contract.check_fields(serde_json::Map::from_iter([("id".to_string(), json!(s))])), Verdict::Valid(_));
            prop_assert_eq!(valid, regex.is_match(&s), "{:?}", s);
        }
    }
}

mod routing {
    use super::*;

    fn records(bodies: &[String]) -> Vec<SourceRecord> {
        bodies
            .iter()
            .enumerate()
            .map(|(i, b)| SourceRecord {
                metadata: meta(i as i64),
                ..SourceRecord::json(b.clone(), SourcePointer::event("bronze/x", "0", i as i64))
            })
            .collect()
    }

    #[test]
    fn duplicates_are_dropped_or_quarantined() {
        let a = good_event().to_string();
        let reformatted = serde_json::to_string_pretty(&good_event()).unwrap(); // same values, other bytes
        let mut changed = good_event();
        changed["device"] = json!("web");
        let routed = route(
            &watch_contract(),
            records(&[a.clone(), a, changed.to_string(), reformatted]),
            &ctx(),
        );
        assert_eq!(routed.silver.len(), 1);
        assert_eq!(
            routed.duplicates_dropped, 1,
            "a byte-identical repeat is an exact duplicate"
        );
        assert_eq!(routed.quarantine.len(), 2, "a changed or re-encoded body is not");
        assert_eq!(routed.quarantine[0].stage, Stage::Dedupe);
        assert_eq!(
            routed.quarantine[0].reasons[0].detail,
            "same key as bronze/x partition 0 sequence 0 but a different body"
        );
    }

    #[test]
    fn quarantine_record_format() {
        let mut bad = good_event();
        bad["position_seconds"] = json!(-5);
        let routed = route(
            &watch_contract(),
            records(&[bad.to_string(), "not json".into()]),
            &ctx(),
        );
        let text = String::from_utf8(encode_jsonl(&routed.quarantine)).unwrap();
        insta::assert_snapshot!(text);
    }

    fn arbitrary_body() -> impl Strategy<Value = String> {
        let ids = prop::sample::select(vec![
            "0b7e5c4e-1f1a-4c55-9d7e-5a8f0e2c9b11",
            "1b7e5c4e-1f1a-4c55-9d7e-5a8f0e2c9b11",
            "2b7e5c4e-1f1a-4c55-9d7e-5a8f0e2c9b11",
            "not-a-uuid",
        ]);
        let field = prop_oneof![
            Just(json!(null)),
            any::<i64>().prop_map(|n| json!(n)),
            (0i64..10_000).prop_map(|n| json!(n)),
            "[a-z_]{0,12}".prop_map(|s| json!(s)),
            Just(json!("watch_started")),
            Just(json!("FR")),
            Just(json!("2024-05-01T10:00:00Z")),
        ];
        let names = prop::sample::select(vec![
            "event_type",
            "user_id",
            "session_id",
            "movie_id",
            "occurred_at",
            "device",
            "country",
            "position_seconds",
            "duration_seconds",
            "extra",
        ]);
        prop_oneof![
            1 => ".{0,20}".prop_map(|s| s),
            8 => (ids, prop::collection::vec((names, field), 0..12)).prop_map(|(id, fields)| {
                let mut e = good_event();
                e["event_id"] = json!(id);
                for (name, value) in fields {
                    if value.is_null() { e.as_object_mut().map(|o| o.remove(name)); } else { e[name] = value; }
                }
                e.to_string()
            }),
        ]
    }

    proptest! {
        #[test]
        fn nothing_is_lost(bodies in prop::collection::vec(arbitrary_body(), 0..40)) {
            let routed = route(&watch_contract(), records(&bodies), &ctx());
            prop_assert_eq!(routed.records_in(), bodies.len() as u64);
            let counts = movielake_core::output::manifest::Counts::of(&routed);
            prop_assert!(counts.balanced());
            // Every record is accounted for exactly once, by its pointer.
            let mut seen: Vec<i64> = routed.silver.iter().map(|a| a.pointer.sequence_number.unwrap())
                .chain(routed.quarantine.iter().map(|q| q.source.sequence_number.unwrap()))
                .collect();
            seen.sort_unstable();
            seen.dedup();
            prop_assert_eq!(seen.len() as u64 + routed.duplicates_dropped, bodies.len() as u64);
            // Quarantined records keep the raw text byte for byte.
            for q in &routed.quarantine {
                let i = q.source.sequence_number.unwrap() as usize;
                prop_assert_eq!(&q.raw, &bodies[i]);
            }
        }
    }
}
