//! Gold kept current by the `maintain_tables` timer: only the models whose SQL or input tables
//! changed since their last build run again, a model reading another gold table follows it,
//! and an idle lake rebuilds nothing; then the Function over HTTP.

use std::path::Path;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use movielake::lake::{Lake, LocalLake};
use movielake::pipelines::gold::{self, GoldRun, Refresh};
use movielake::tables::{Append, TableLocation, Tables};
use serde_json::{Value, json};

use crate::handler::post_to;
use crate::support::Server;

fn rows(ids: std::ops::Range<i64>) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
    RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from_iter_values(ids))]).unwrap()
}

async fn append(tables: &Tables, table: &str, ids: std::ops::Range<i64>) {
    let plain = Append {
        partition_by: vec![],
        txn: None,
    };
    tables.append(table, vec![rows(ids)], &plain).await.expect("append");
}

fn models(dir: &Path, files: &[(&str, &str)]) -> Vec<gold::Model> {
    std::fs::create_dir_all(dir).unwrap();
    for (name, sql) in files {
        std::fs::write(dir.join(format!("{name}.sql")), sql).unwrap();
    }
    gold::load_models(Some(dir)).expect("models")
}

fn built(run: &GoldRun) -> Vec<&str> {
    run.built.iter().map(|b| b.name.as_str()).collect()
}

async fn single(tables: &Tables, table: &str) -> i64 {
    let out = tables.sql(table, "SELECT * FROM t").await.expect("gold table");
    out[0].column(0).as_primitive::<Int64Type>().value(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_models_with_changed_inputs_are_rebuilt() {
    let contracts =
        movielake::config::load_contracts(Some(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contracts")))
            .expect("contracts");
    let dir = tempfile::tempdir().unwrap();
    // A folder only: the models read the contracts' own table paths, which the shared Azurite
    // lake of the other tests holds with other schemas. What refresh relies on from storage (a
    // table's version, an ops object) has its Azurite conformance tests elsewhere.
    let root = dir.path().join("lake").display().to_string();
    let lake: Arc<dyn Lake> = Arc::new(LocalLake::new(&root));
    let tables = Tables::new(TableLocation::for_lake(&root, None).unwrap());
    {
        let kind = "local";
        let (a, b, c) = ("a_watch".to_string(), "b_titles".to_string(), "c_double".to_string());
        let (watch, titles) = ("silver/events/watch", "silver/imdb/title_basics");
        let folder = dir.path().join(format!("models-{kind}"));
        let mut set = models(
            &folder,
            &[
                (&a, "SELECT count(*) AS n FROM watch_events"),
                (&b, "SELECT count(*) AS n FROM imdb_title_basics"),
                (&c, &format!("SELECT n * 2 AS n FROM {a}")),
            ],
        );
        append(&tables, watch, 0..3).await;
        append(&tables, titles, 0..2).await;

        let first = gold::build(lake.as_ref(), &tables, &contracts, &set, Refresh::Changed)
            .await
            .expect("first");
        assert_eq!(
            built(&first),
            [a.as_str(), b.as_str(), c.as_str()],
            "{kind}: no gold yet"
        );
        assert_eq!(single(&tables, &format!("gold/{c}")).await, 6, "{kind}");

        let idle = gold::build(lake.as_ref(), &tables, &contracts, &set, Refresh::Changed)
            .await
            .expect("idle");
        assert!(idle.built.is_empty(), "{kind}: nothing changed: {:?}", built(&idle));
        assert_eq!(idle.unchanged, [a.clone(), b.clone(), c.clone()], "{kind}");

        // New watch events: the model reading them, and the one reading its result.
        append(&tables, watch, 3..5).await;
        let after = gold::build(lake.as_ref(), &tables, &contracts, &set, Refresh::Changed)
            .await
            .expect("after an append");
        assert_eq!(built(&after), [a.as_str(), c.as_str()], "{kind}");
        assert_eq!(after.unchanged, std::slice::from_ref(&b), "{kind}");
        assert_eq!(single(&tables, &format!("gold/{c}")).await, 10, "{kind}");

        // A model whose SQL changed runs again, its inputs unchanged.
        set = models(&folder, &[(&b, "SELECT count(*) + 100 AS n FROM imdb_title_basics")]);
        let edited = gold::build(lake.as_ref(), &tables, &contracts, &set, Refresh::Changed)
            .await
            .expect("edited");
        assert_eq!(built(&edited), [b.as_str()], "{kind}");
        assert!(single(&tables, &format!("gold/{b}")).await >= 102, "{kind}");

        // `movielake gold` builds every model whatever changed.
        let all = gold::build(lake.as_ref(), &tables, &contracts, &set, Refresh::All)
            .await
            .expect("all");
        assert_eq!(all.built.len(), 3, "{kind}");
    }
}

/// The timer Function over real HTTP: the first run builds gold, the next (nothing new)
/// rebuilds nothing, one after new events rebuilds it.
#[tokio::test]
async fn the_timer_function_keeps_gold_current() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake").display().to_string();
    let tables = Tables::new(TableLocation::for_lake(&root, None).unwrap());
    append(&tables, "silver/events/watch", 0..3).await;
    // The deployment's own models folder, as `./gold` beside the binary's working directory.
    models(
        &dir.path().join("gold"),
        &[("watch_count", "SELECT count(*) AS n FROM watch_events")],
    );
    let server = Server::start(&root, dir.path());
    let invoke = |n: u32| {
        let url = server.url("");
        async move {
            let timer = json!({
                "Data": {"timer": {"Schedule": {"AdjustForDST": true}, "ScheduleStatus": null, "IsPastDue": false}},
                "Metadata": {"sys": {"MethodName": "maintain_tables", "UtcNow": format!("2024-05-01T1{n}:15:00Z"), "RandGuid": "1"}}
            });
            let (status, _, body) = post_to(&url, "maintain_tables", timer.to_string(), false).await;
            assert_eq!(status, 200, "{body}");
            let body: Value = serde_json::from_str(&body).unwrap();
            body["Logs"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|l| l.as_str().map(str::to_string))
                .collect::<Vec<String>>()
        }
    };
    let logs = invoke(0).await;
    assert!(
        logs.iter().any(|l| l.starts_with("gold watch_count: 1 rows")),
        "{logs:?}"
    );
    assert!(
        logs.iter()
            .any(|l| l == "gold: 1 models rebuilt, 0 unchanged, 0 waiting for input"),
        "{logs:?}"
    );
    assert_eq!(single(&tables, "gold/watch_count").await, 3);

    let logs = invoke(1).await;
    assert!(
        logs.iter()
            .any(|l| l == "gold: 0 models rebuilt, 1 unchanged, 0 waiting for input"),
        "{logs:?}"
    );

    append(&tables, "silver/events/watch", 3..7).await;
    let logs = invoke(2).await;
    assert!(
        logs.iter()
            .any(|l| l == "gold: 1 models rebuilt, 0 unchanged, 0 waiting for input"),
        "{logs:?}"
    );
    assert_eq!(single(&tables, "gold/watch_count").await, 7);
}
