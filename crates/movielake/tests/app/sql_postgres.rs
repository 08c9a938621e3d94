//! The SQL source's incremental pulls on a real PostgreSQL (scripts/postgres.sh): the ways
//! users of other tools lose rows, each against the server itself. Every test has a database
//! of its own: the ceiling looks at the open transactions of the whole database, so tests
//! sharing one would hold each other's pulls back.

use chrono::Duration;
use movielake::clients::sql::{PgConnect, Postgres, SqlError, SqlSource, pull};
use movielake_core::sources::sql::USERS;
use movielake_core::sources::sql::watermark::Watermark;

use crate::support::{postgres_url, unique};

/// A fresh database holding the dialect's tables: a connection to it and its URL.
pub(crate) async fn database(name: &str) -> Option<(Postgres, String)> {
    let server = postgres_url()?;
    let db = unique(name).replace('-', "_");
    let admin = Postgres::connect(&server).await.expect("connect");
    admin.execute(&format!("CREATE DATABASE {db}")).await.expect("database");
    let base = server.rsplit_once('/').map_or(server.as_str(), |(base, _)| base);
    let url = format!("{base}/{db}");
    Some((session(&url).await, url))
}

/// A session on the database at `url` (a writer beside the puller), with the tables there.
pub(crate) async fn session(url: &str) -> Postgres {
    let db = Postgres::connect(url).await.expect("connect");
    db.execute(movielake_core::sources::sql::Dialect::Postgres.ddl())
        .await
        .expect("ddl");
    db
}

pub(crate) fn insert_user(id: &str, updated_at: &str) -> String {
    format!("INSERT INTO users (user_id, email, updated_at) VALUES ('{id}', '{id}@example.com', {updated_at})")
}

fn keys(rows: &[movielake::clients::sql::PulledRow]) -> Vec<String> {
    rows.iter().map(|r| r.change.key.clone()).collect()
}

#[tokio::test]
async fn two_rows_with_one_updated_at_on_either_side_of_a_pull_are_both_landed_once() {
    let Some((db, _)) = database("same_time").await else {
        return;
    };
    let at = "now() - interval '10 seconds'";
    db.execute(&insert_user("u1", at)).await.expect("u1");
    let (lag, overlap) = (Duration::seconds(1), Duration::seconds(60));
    let first = pull(&db, &USERS, &Watermark::default(), lag, overlap)
        .await
        .expect("pull");
    assert_eq!(keys(&first.rows), ["u1"]);
    // The second row carries exactly the first one's updated_at, committed after the pull.
    db.execute("INSERT INTO users (user_id, email, updated_at) SELECT 'u2', 'u2@example.com', updated_at FROM users WHERE user_id = 'u1'")
        .await
        .expect("u2");
    let second = pull(&db, &USERS, &first.next, lag, overlap).await.expect("pull");
    assert_eq!(keys(&second.rows), ["u2"], "u2 landed, u1 not again");
    assert_eq!(second.duplicates, 1, "u1 read again in the overlap and recognised");
    let third = pull(&db, &USERS, &second.next, lag, overlap).await.expect("pull");
    assert!(third.rows.is_empty());
}

/// A transaction stamps its row with `now()` (its start) and commits after a pull that read
/// newer rows: with no lag and no overlap at all, the ceiling (the oldest open transaction's
/// start) still keeps the pull from passing it.
#[tokio::test]
async fn a_long_transaction_committing_after_a_pull_with_an_older_updated_at_is_not_lost() {
    let Some((db, url)) = database("long_txn").await else {
        return;
    };
    let long = session(&url).await;
    long.execute("BEGIN").await.expect("begin");
    long.execute(&insert_user("late", "now()")).await.expect("late row");
    // Time passes; another writer commits newer rows.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    db.execute(&insert_user("u1", "now()")).await.expect("u1");
    let (lag, overlap) = (Duration::zero(), Duration::zero());
    let first = pull(&db, &USERS, &Watermark::default(), lag, overlap)
        .await
        .expect("pull");
    assert!(
        first.rows.is_empty(),
        "nothing past the open transaction's start: {:?}",
        keys(&first.rows)
    );
    long.execute("COMMIT").await.expect("commit");
    let second = pull(&db, &USERS, &first.next, lag, overlap).await.expect("pull");
    assert_eq!(keys(&second.rows), ["late", "u1"], "both, in change order");
    let third = pull(&db, &USERS, &second.next, lag, overlap).await.expect("pull");
    assert!(third.rows.is_empty(), "{:?}", keys(&third.rows));
}

/// The same with the ceiling's transaction cap taken away (`lag` only): the late row is lost,
/// which is what the cap is for.
#[tokio::test]
async fn without_the_transaction_cap_the_late_row_would_be_lost() {
    let Some((db, url)) = database("no_cap").await else {
        return;
    };
    let long = session(&url).await;
    long.execute("BEGIN").await.expect("begin");
    long.execute(&insert_user("late", "now()")).await.expect("late row");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    db.execute(&insert_user("u1", "now()")).await.expect("u1");
    // A watermark as a lag-only ceiling would have left it: through the newest row.
    let through = chrono::Utc::now();
    let watermark = Watermark {
        through: Some(through),
        ..Default::default()
    };
    long.execute("COMMIT").await.expect("commit");
    let after = pull(&db, &USERS, &watermark, Duration::zero(), Duration::zero())
        .await
        .expect("pull");
    assert!(
        !keys(&after.rows).contains(&"late".to_string()),
        "{:?}",
        keys(&after.rows)
    );
    assert!(db.ceiling(Duration::zero()).await.expect("ceiling").at >= through);
}

#[tokio::test]
async fn a_missing_table_is_refused_with_a_hint_not_taken_for_an_outage() {
    let Some(url) = postgres_url() else { return };
    let db = Postgres::connect(&url).await.expect("connect");
    db.execute(&format!(
        "CREATE SCHEMA {0}; SET search_path TO {0}",
        unique("empty").replace('-', "_")
    ))
    .await
    .expect("schema");
    let e = pull(&db, &USERS, &Watermark::default(), Duration::zero(), Duration::zero())
        .await
        .err()
        .expect("no table");
    let text = e.to_string();
    assert!(matches!(e, movielake::clients::sql::SqlError::Refused(_)), "{text}");
    assert!(text.contains("users") && text.contains("hint"), "{text}");
    let e = Postgres::connect("postgres://movielake@127.0.0.1:1/postgres")
        .await
        .err()
        .expect("nothing there");
    assert!(matches!(e, movielake::clients::sql::SqlError::Unreachable(_)), "{e}");
}

/// The whole pull on a real server into a folder lake: rows in bronze as PostgreSQL rendered
/// them, the watermark stored, a second pull landing nothing, a change landing only itself.
#[tokio::test]
async fn a_pull_lands_the_changed_rows_in_bronze_and_stores_its_watermark() {
    use movielake::lake::{Lake, LocalLake};
    use movielake::pipelines::sql_pull::{PullSettings, Sink, pull_table, watermark_path};
    use movielake::tables::{TableLocation, Tables};

    let Some((db, _)) = database("to_bronze").await else {
        return;
    };
    db.execute(&insert_user("u1", "now() - interval '1 minute'"))
        .await
        .expect("u1");
    db.execute("UPDATE users SET country = 'FR' WHERE user_id = 'u1'")
        .await
        .expect("no-op for updated_at");
    db.execute(&insert_user("u2", "now() - interval '30 seconds'"))
        .await
        .expect("u2");
    let dir = tempfile::tempdir().unwrap();
    let lake = LocalLake::new(dir.path());
    let tables = Tables::new(TableLocation::for_lake(dir.path().to_str().unwrap(), None).unwrap());
    let contracts = movielake::config::load_contracts(Some(&crate::watch_events::contracts_dir())).expect("contracts");
    let sink = Sink {
        lake: &lake,
        tables: &tables,
        contracts: &contracts,
    };
    let settings = PullSettings {
        lag: Duration::seconds(1),
        overlap: Duration::minutes(5),
        key_check: None,
        page_rows: 1000,
    };
    let first = pull_table(&sink, &db, "platform", &USERS, settings)
        .await
        .expect("pull");
    assert_eq!((first.rows, first.duplicates), (2, 0));
    let bronze = first.bronze.first().cloned().expect("bronze object");
    // Gzipped CSV with the source's column names and text forms; NULL is an empty field.
    let gz = lake.get(&bronze).await.expect("bronze").bytes;
    let mut reader = csv::Reader::from_reader(flate2::read::GzDecoder::new(&gz[..]));
    let header = reader.headers().expect("header").clone();
    assert_eq!(
        header.iter().take(3).collect::<Vec<_>>(),
        ["user_id", "email", "display_name"]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    assert_eq!(rows.len(), 2);
    let field = |row: &csv::StringRecord, name: &str| {
        let i = header.iter().position(|h| h == name).expect("column");
        row[i].to_string()
    };
    assert_eq!(field(&rows[0], "user_id"), "u1");
    assert_eq!(field(&rows[0], "country"), "FR");
    assert_eq!(field(&rows[0], "deleted_at"), "");
    assert!(
        field(&rows[0], "updated_at").starts_with("20"),
        "PostgreSQL's text form of a timestamptz"
    );
    assert!(lake.get(&watermark_path("platform", &USERS)).await.is_ok());

    let again = pull_table(&sink, &db, "platform", &USERS, settings)
        .await
        .expect("pull");
    assert_eq!((again.rows, again.duplicates, again.bronze.len()), (0, 2, 0));
    db.execute(
        "UPDATE users SET display_name = 'Ann', updated_at = now() - interval '10 seconds' WHERE user_id = 'u2'",
    )
    .await
    .expect("update");
    let change = pull_table(&sink, &db, "platform", &USERS, settings)
        .await
        .expect("pull");
    assert_eq!(
        (change.rows, change.duplicates),
        (1, 1),
        "u2's new version only; u1 re-read in the overlap"
    );

    // Silver holds every version once: u1, u2 and u2's new version.
    assert_eq!((first.counts.silver, change.counts.silver), (2, 1));
    let out = tables
        .sql(
            "silver/sql/users_changes",
            "SELECT user_id, count(*) AS versions FROM t GROUP BY user_id ORDER BY user_id",
        )
        .await
        .expect("sql");
    let text = format!("{out:?}");
    let counts: Vec<(String, i64)> = out
        .iter()
        .flat_map(|b| {
            let ids = b
                .column(0)
                .as_any()
                .downcast_ref::<arrow_array::StringArray>()
                .expect("ids")
                .clone();
            let n = b
                .column(1)
                .as_any()
                .downcast_ref::<arrow_array::Int64Array>()
                .expect("n")
                .clone();
            (0..b.num_rows()).map(move |i| (ids.value(i).to_string(), n.value(i)))
        })
        .collect();
    assert_eq!(counts, [("u1".to_string(), 1), ("u2".to_string(), 2)], "{text}");

    // History (SCD2): u2's first version ends where its second begins; current (SCD1): the
    // latest version of each user.
    let out = tables
        .sql(
            "silver/sql/users_history",
            "SELECT user_id, CAST(valid_to = lead(valid_from) OVER (PARTITION BY user_id ORDER BY valid_from) AS VARCHAR) AS chained, \
             CAST(valid_to IS NULL AS VARCHAR) AS open FROM t ORDER BY user_id, valid_from",
        )
        .await
        .expect("history");
    assert_eq!(
        strings(&out),
        [
            vec!["u1".to_string(), String::new(), "true".into()],
            vec!["u2".into(), "true".into(), "false".into()],
            vec!["u2".into(), String::new(), "true".into()],
        ],
        "u2's versions chain; only the last is open"
    );
    let out = tables
        .sql(
            "silver/sql/users",
            "SELECT user_id, display_name FROM t ORDER BY user_id",
        )
        .await
        .expect("current");
    assert_eq!(
        strings(&out),
        [vec!["u1".to_string(), String::new()], vec!["u2".into(), "Ann".into()]]
    );

    // A row the contract refuses goes to quarantine with its reason; the counts add up.
    db.execute(
        "INSERT INTO users (user_id, email, updated_at) VALUES ('u3', 'not-an-email', now() - interval '5 seconds')",
    )
    .await
    .expect("u3");
    let bad = pull_table(&sink, &db, "platform", &USERS, settings)
        .await
        .expect("pull");
    let c = &bad.counts;
    assert_eq!((c.records_in, c.silver, c.quarantined), (1, 0, 1), "{c:?}");
    assert_eq!(c.records_in, c.silver + c.quarantined + c.duplicates_dropped);
    let manifest: serde_json::Value = serde_json::from_slice(
        &lake
            .get(bad.manifests.first().expect("manifest"))
            .await
            .expect("manifest")
            .bytes,
    )
    .unwrap();
    let quarantine = manifest["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .find(|o| o["kind"] == "quarantine")
        .expect("a quarantine output");
    let line = String::from_utf8(
        lake.get(quarantine["path"].as_str().unwrap())
            .await
            .expect("q")
            .bytes
            .to_vec(),
    )
    .unwrap();
    assert!(line.contains("not-an-email") && line.contains("\"regex\""), "{line}");
}

/// `movielake pull-sql` as a user runs it: the binary against the server, twice.
#[tokio::test]
async fn the_pull_sql_command_lands_rows_and_a_second_run_lands_nothing() {
    let Some((db, url)) = database("cli").await else {
        return;
    };
    db.execute(&insert_user("u1", "now() - interval '1 minute'"))
        .await
        .expect("u1");
    let dir = tempfile::tempdir().unwrap();
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_movielake"))
            .args(["--lake", dir.path().to_str().unwrap(), "pull-sql", "--table", "users"])
            .env("MOVIELAKE_SQL_DATABASE", &url)
            .output()
            .expect("run")
    };
    let first = run();
    let out = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        out.contains("users: 1 new row(s) in 1 page(s), 0 already landed")
            && out.contains("bronze bronze/sql/users/extract_date="),
        "{out}"
    );
    let second = run();
    let out = String::from_utf8_lossy(&second.stdout);
    assert!(
        out.contains("users: 0 new row(s) in 1 page(s), 1 already landed") && !out.contains("bronze "),
        "{out}"
    );
}

/// Every row of string columns as strings ("" for null).
pub(crate) fn strings(batches: &[arrow_array::RecordBatch]) -> Vec<Vec<String>> {
    use arrow_array::Array;
    let mut rows = Vec::new();
    for b in batches {
        for i in 0..b.num_rows() {
            rows.push(
                b.columns()
                    .iter()
                    .map(|c| {
                        let c = c
                            .as_any()
                            .downcast_ref::<arrow_array::StringArray>()
                            .expect("a string column");
                        if c.is_null(i) {
                            String::new()
                        } else {
                            c.value(i).to_string()
                        }
                    })
                    .collect(),
            );
        }
    }
    rows
}

/// `sslmode=require` opens TLS to the real server and verifies its certificate: trusted through
/// the CA file, refused without it (the system's roots do not know a test CA), never silently
/// in the clear.
#[tokio::test]
async fn sslmode_require_encrypts_and_verifies_the_servers_certificate() {
    let Some(server) = postgres_url() else {
        return;
    };
    let Some(ca) = std::env::var_os("MOVIELAKE_TEST_POSTGRES_CA") else {
        eprintln!(
            "skipped: MOVIELAKE_TEST_POSTGRES_CA is not set (scripts/test.sh sets it from scripts/postgres.sh ca)"
        );
        return;
    };
    let url = format!("{server}?sslmode=require");
    let trusted = PgConnect {
        ca_file: Some(ca.into()),
        password: None,
    };
    let db = Postgres::connect_with(&url, &trusted)
        .await
        .expect("TLS with the test CA");
    assert!(db.encrypted().await.expect("pg_stat_ssl"), "the session is encrypted");
    let plain = Postgres::connect(&server).await.expect("in the clear");
    assert!(
        !plain.encrypted().await.expect("pg_stat_ssl"),
        "no sslmode: in the clear"
    );

    let e = Postgres::connect_with(&url, &PgConnect::default())
        .await
        .err()
        .expect("an unknown CA is refused");
    assert!(matches!(e, SqlError::Unreachable(_)), "{e}");
    assert!(e.to_string().to_lowercase().contains("certificate"), "says why: {e}");
}

#[test]
fn an_azure_host_without_a_password_signs_in_with_an_entra_token() {
    use movielake::clients::sql::wants_entra_token;
    assert!(wants_entra_token(
        "postgres://id-movielake@myserver.postgres.database.azure.com:5432/platform?sslmode=require"
    ));
    assert!(!wants_entra_token(
        "postgres://admin:secret@myserver.postgres.database.azure.com:5432/platform"
    ));
    assert!(!wants_entra_token("postgres://movielake@127.0.0.1:5432/platform"));
}
