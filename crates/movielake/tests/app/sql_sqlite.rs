//! The SQL source with no server: `movielake run`'s SQLite demo and `pull-sql` on a SQLite file.

use std::sync::Arc;

use movielake::clients::sql::{SqlSource, Sqlite};
use movielake::handler::AppState;
use movielake::lake::{Lake, LocalLake};
use movielake::tables::{TableLocation, Tables};
use movielake_core::sources::sql::{Dialect, sample};

/// The demo `movielake run` prints: after the round of changes, user-000001's subscription
/// has two intervals (standard or basic, then premium), the first closed where the second opens.
#[tokio::test]
async fn the_run_demo_shows_a_users_subscription_history_after_a_round_of_changes() {
    let dir = tempfile::tempdir().unwrap();
    let lake: Arc<dyn Lake> = Arc::new(LocalLake::new(dir.path().join("lake")));
    let contracts = movielake::config::load_contracts(Some(&crate::watch_events::contracts_dir())).expect("contracts");
    let tables = Tables::new(TableLocation::for_lake(&lake.describe(), None).expect("tables"));
    let state = AppState::new(lake, contracts, chrono::Duration::hours(24)).with_tables(tables);
    let demo = movielake::cli::run_sql::run_sql(&state, dir.path(), 50, 42, chrono::Utc::now(), &|_| {})
        .await
        .expect("demo");
    assert!(demo.counts.balanced(), "{:?}", demo.counts);
    assert_eq!(demo.pulls, 4);
    let plans: Vec<(&str, &str)> = demo.history.iter().map(|r| (r[1].as_str(), r[4].as_str())).collect();
    assert_eq!(plans.len(), 2, "{:?}", demo.history);
    assert_ne!(plans[0].0, "premium", "{:?}", demo.history);
    assert_eq!(plans[1], ("premium", "(current)"));
    assert_eq!(
        demo.history[0][4], demo.history[1][3],
        "closed where the next one opens"
    );
    // The deleted user is flagged; the late change landed.
    let users = state
        .tables
        .sql(
            "silver/sql/users",
            "SELECT user_id, CAST(is_deleted AS VARCHAR) AS deleted, display_name FROM t \
             WHERE user_id IN ('user-000003', 'user-000004') ORDER BY user_id",
        )
        .await
        .expect("users");
    let rows = crate::sql_postgres::strings(&users);
    assert_eq!(rows[0][..2], ["user-000003".to_string(), "true".into()]);
    assert_eq!(rows[1][2], "Late Lovelace", "the change committed late is not lost");

    // The enrichment dimension (issue 17) loaded from the same Delta histories.
    let cache = movielake::pipelines::dimension::DimensionCache::new(std::time::Duration::from_secs(60));
    let dimension = cache.get(&state.tables).await.expect("dimension");
    let now = chrono::Utc::now().timestamp_micros();
    let shown = dimension.lookup(movielake::cli::run_sql::SHOWN_USER, now);
    assert_eq!(
        (shown.status, shown.plan),
        (movielake_core::enrich::DimensionStatus::Matched, Some("premium")),
        "{shown:?}"
    );
    let deleted = dimension.lookup("user-000003", now);
    assert_eq!(deleted.status, movielake_core::enrich::DimensionStatus::UserUnknown);
    assert_eq!(
        dimension.lookup(movielake::cli::run_sql::SHOWN_USER, 0).status,
        movielake_core::enrich::DimensionStatus::UserUnknown,
        "before the user existed"
    );
    assert!(
        std::sync::Arc::ptr_eq(&dimension, &cache.get(&state.tables).await.expect("again")),
        "within the refresh interval: the same index, no reload"
    );
}

#[tokio::test]
async fn pull_sql_reads_a_sqlite_file_and_explains_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("platform.db");
    let db = Sqlite::open(&path).await.expect("open");
    db.execute(Dialect::Sqlite.ddl()).await.expect("ddl");
    let now = db.ceiling(chrono::Duration::zero()).await.expect("clock").at;
    db.execute_all(sample::seed_sql(Dialect::Sqlite, 20, 3, now))
        .await
        .expect("seed");
    let run = |database: String| {
        std::process::Command::new(env!("CARGO_BIN_EXE_movielake"))
            .args(["--lake", dir.path().join("lake").to_str().unwrap(), "pull-sql"])
            .args(["--database", &database, "--lag-seconds", "0"])
            .output()
            .expect("run")
    };
    let out = run(format!("sqlite:{}", path.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("users: 20 new row(s)") && stdout.contains("subscriptions: 27 new row(s)"),
        "{stdout}"
    );
    let missing = run(format!("sqlite:{}", dir.path().join("nope.db").display()));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success());
    assert!(
        stderr.contains("no SQLite database at") && stderr.contains("hint"),
        "{stderr}"
    );
    let unknown = run("mysql://x".into());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("postgres://"));
}

fn timer(now: &str) -> String {
    serde_json::json!({
        "Data": {"timer": {"Schedule": {"AdjustForDST": true}, "ScheduleStatus": null, "IsPastDue": false}},
        "Metadata": {"sys": {"MethodName": "pull_subscriptions", "UtcNow": now, "RandGuid": "1"}}
    })
    .to_string()
}

fn logs(body: &str) -> Vec<String> {
    let body: serde_json::Value = serde_json::from_str(body).expect("JSON answer");
    body["Logs"]
        .as_array()
        .map(|a| a.iter().filter_map(|l| l.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// The timer Function over real HTTP, as the host invokes it, against a SQLite file: both
/// tables pulled into silver; a second occurrence lands nothing new.
#[tokio::test]
async fn the_pull_subscriptions_timer_pulls_both_tables_and_a_second_run_lands_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("platform.db");
    let db = Sqlite::open(&path).await.expect("open");
    db.execute(Dialect::Sqlite.ddl()).await.expect("ddl");
    let now = db.ceiling(chrono::Duration::hours(1)).await.expect("clock").at;
    db.execute_all(sample::seed_sql(Dialect::Sqlite, 30, 5, now))
        .await
        .expect("seed");
    let lake = dir.path().join("lake").display().to_string();
    let database = format!("sqlite:{}", path.display());
    let server = crate::support::Server::start_with(
        &lake,
        dir.path(),
        &[
            ("MOVIELAKE_SQL_DATABASE", &database),
            ("MOVIELAKE_SQL_LAG_SECONDS", "0"),
        ],
    );
    let tables = Tables::new(TableLocation::for_lake(&lake, None).expect("tables"));
    let base = server.url("");
    let invoke = |at: &'static str| crate::handler::post_to(&base, "pull_subscriptions", timer(at), false);
    let current_users = || async {
        let batches = tables
            .sql("silver/sql/users", "SELECT CAST(count(*) AS VARCHAR) AS n FROM t")
            .await
            .expect("users");
        crate::sql_postgres::strings(&batches)[0][0].clone()
    };
    let (status, _, body) = invoke("2024-05-01T10:15:00Z").await;
    assert_eq!(status, 200, "{body}");
    let first = logs(&body);
    // 30 clean users (the generator's first dirty one is the 97th): every one current in silver.
    assert!(
        first
            .iter()
            .any(|l| l.starts_with("users: 30 new row(s)") && l.contains("in 30: silver 30, quarantined 0")),
        "{first:?}"
    );
    assert!(first.iter().any(|l| l.starts_with("subscriptions: ")), "{first:?}");
    assert_eq!(current_users().await, "30");

    let (status, _, body) = invoke("2024-05-01T10:30:00Z").await;
    assert_eq!(status, 200, "{body}");
    let second = logs(&body);
    assert!(
        second.iter().any(|l| l.starts_with("users: 0 new row(s)")),
        "{second:?}"
    );
    assert_eq!(current_users().await, "30", "a second occurrence adds nothing");
}

/// Not configured: says so and succeeds (a platform without the SQL source). Unreachable:
/// fails as the source's outage, so the host shows it and the next occurrence retries.
#[tokio::test]
async fn the_timer_says_what_is_missing_and_fails_on_an_unreachable_database() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake").display().to_string();
    let server = crate::support::Server::start(&lake, dir.path());
    let (status, _, body) = crate::handler::post_to(
        &server.url(""),
        "pull_subscriptions",
        timer("2024-05-01T10:15:00Z"),
        false,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        logs(&body)
            .iter()
            .any(|l| l.contains("MOVIELAKE_SQL_DATABASE is not set")),
        "{body}"
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let database = format!("postgres://reader@127.0.0.1:{port}/platform");
    let down = crate::support::Server::start_with(&lake, dir.path(), &[("MOVIELAKE_SQL_DATABASE", &database)]);
    let (status, _, body) = crate::handler::post_to(
        &down.url(""),
        "pull_subscriptions",
        timer("2024-05-01T10:15:00Z"),
        false,
    )
    .await;
    assert_eq!(status, 500, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(body["Error"]["Kind"], "source_unavailable", "{body}");
    assert!(
        body["Error"]["Message"]
            .as_str()
            .is_some_and(|m| m.contains("cannot reach the database")),
        "{body}"
    );
}

/// Issue 17 over the real handler: after the SQL demo has landed its histories, one
/// `ingest_watch_events` invocation lands its events in silver already enriched, as of each
/// event's time (the users were created the week before), in the same commit; a viewer the
/// database does not know is `user_unknown`, kept, not quarantined.
#[tokio::test]
async fn watch_events_land_enriched_as_of_their_time_in_the_same_invocation() {
    let dir = tempfile::tempdir().unwrap();
    let lake: Arc<dyn Lake> = Arc::new(LocalLake::new(dir.path().join("lake")));
    let contracts = movielake::config::load_contracts(Some(&crate::watch_events::contracts_dir())).expect("contracts");
    let tables = Tables::new(TableLocation::for_lake(&lake.describe(), None).expect("tables"));
    let state = AppState::new(lake, contracts, chrono::Duration::hours(24)).with_tables(tables);
    // The events of `host_request` happen at 2024-05-01T10:00:00.1Z.
    let created_before = "2024-05-01T09:00:00Z".parse().expect("time");
    let demo = movielake::cli::run_sql::run_sql(&state, dir.path(), 20, 42, created_before, &|_| {})
        .await
        .expect("demo");
    // The shown user's first interval: the plan before the demo's upgrade (made today).
    let first_plan = demo.history[0][1].clone();
    let server = crate::watch_events::serve_state(state.clone()).await;
    let bodies: Vec<String> = [
        (
            "00000000-0000-4000-8000-000000000001",
            movielake::cli::run_sql::SHOWN_USER,
        ),
        ("00000000-0000-4000-8000-000000000002", "someone-else"),
    ]
    .iter()
    .map(|(id, user)| {
        let mut e = crate::handler::event(id, "watch_started", 0);
        e["user_id"] = (*user).into();
        e.to_string()
    })
    .collect();
    let (status, _, body) = crate::handler::post_to(
        &server.base,
        "ingest_watch_events",
        crate::handler::host_request(&bodies, 1),
        false,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let rows = state
        .tables
        .sql(
            "silver/events/watch",
            "SELECT user_id, plan, subscription_status, subscription_id, dimension_status, \
             CAST(dimension_valid_from <= occurred_at AS VARCHAR) FROM t ORDER BY event_id",
        )
        .await
        .expect("silver");
    let rows = crate::sql_postgres::strings(&rows);
    assert_eq!(rows.len(), 2, "both events in silver: {rows:?}");
    assert_eq!(rows[0][0], movielake::cli::run_sql::SHOWN_USER);
    assert_eq!(
        rows[0][1], first_plan,
        "the plan it was watched under, not today's: {rows:?}"
    );
    assert_eq!(rows[0][3], "sub-000001-1", "{rows:?}");
    assert_eq!((rows[0][4].as_str(), rows[0][5].as_str()), ("matched", "true"));
    assert_eq!(
        rows[1][1..5],
        ["".to_string(), "".into(), "".into(), "user_unknown".into()],
        "{rows:?}"
    );
    // One commit carried the events and their enrichment: the only one adding files (the
    // other created the table).
    let root = dir.path().join("lake");
    let log = crate::handler::raw_files(&root, "silver/events/watch/_delta_log/");
    let adding: Vec<_> = log
        .iter()
        .filter(|p| p.ends_with(".json"))
        .filter(|p| {
            std::fs::read_to_string(root.join(p))
                .expect("commit")
                .contains("{\"add\"")
        })
        .collect();
    assert_eq!(adding.len(), 1, "{log:?}");
}

/// Late dimension, then a late correction (issue 17): events that landed before their user's
/// rows are enriched by the maintenance step once the rows are pulled; a run with nothing new
/// reads nothing; a correction of history made later re-enriches exactly the events it
/// concerns. Counts never change, nothing is duplicated.
#[tokio::test]
async fn the_maintenance_run_enriches_late_events_and_follows_a_late_correction() {
    use movielake::pipelines::reenrich::reenrich_all;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    let lake: Arc<dyn Lake> = Arc::new(LocalLake::new(&root));
    let contracts = movielake::config::load_contracts(Some(&crate::watch_events::contracts_dir())).expect("contracts");
    let tables = Tables::new(TableLocation::for_lake(&lake.describe(), None).expect("tables"));
    let state = AppState::new(lake.clone(), contracts.clone(), chrono::Duration::hours(24)).with_tables(tables);
    // An event written before the table was enriched: its file has no enrichment columns, and
    // shares its partition with the files written after.
    let mut plain_watch = contracts.get("watch_events").expect("watch").clone();
    plain_watch.enrich_as_of = None;
    let before = AppState::new(
        lake.clone(),
        contracts.clone().with(plain_watch),
        chrono::Duration::hours(24),
    )
    .with_tables(Tables::new(
        TableLocation::for_lake(&lake.describe(), None).expect("tables"),
    ));
    let old = crate::watch_events::serve_state(before).await;
    let mut e = crate::handler::event("00000000-0000-4000-8000-000000000000", "watch_started", 0);
    e["user_id"] = "user-000006".into();
    let (status, _, body) = crate::handler::post_to(
        &old.base,
        "ingest_watch_events",
        crate::handler::host_request(&[e.to_string()], 1),
        false,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let server = crate::watch_events::serve_state(state.clone()).await;
    let shown = movielake::cli::run_sql::SHOWN_USER;
    let bodies: Vec<String> = [
        ("00000000-0000-4000-8000-000000000001", shown),
        ("00000000-0000-4000-8000-000000000002", "someone-else"),
        ("00000000-0000-4000-8000-000000000003", "user-000005"),
    ]
    .iter()
    .map(|(id, user)| {
        let mut e = crate::handler::event(id, "watch_started", 0);
        e["user_id"] = (*user).into();
        e.to_string()
    })
    .collect();
    let (status, _, body) = crate::handler::post_to(
        &server.base,
        "ingest_watch_events",
        crate::handler::host_request(&bodies, 10),
        false,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let enriched = || async {
        crate::sql_postgres::strings(
            &state
                .tables
                .sql(
                    "silver/events/watch",
                    "SELECT user_id, dimension_status, plan FROM t ORDER BY event_id",
                )
                .await
                .expect("silver"),
        )
    };
    let statuses = |rows: &[Vec<String>]| rows.iter().map(|r| r[1].clone()).collect::<Vec<_>>();
    assert_eq!(
        statuses(&enriched().await),
        ["", "user_unknown", "user_unknown", "user_unknown"],
        "no dimension yet (and none at all for the event written before enrichment)"
    );

    // The users and subscriptions land after the events (created the week before them).
    let created_before = "2024-05-01T09:00:00Z".parse().expect("time");
    let demo = movielake::cli::run_sql::run_sql(&state, dir.path(), 20, 42, created_before, &|_| {})
        .await
        .expect("sql");
    let today = chrono::NaiveDate::from_ymd_opt(2024, 5, 2).expect("date");
    let outcome = reenrich_all(lake.as_ref(), &state.tables, &contracts, 7, today)
        .await
        .expect("reenrich");
    let done = outcome[0].1.clone().expect("the dimension is new: the window is read");
    assert_eq!((done.rows, done.changed, done.rewritten), (4, 3, 1), "{done:?}");
    let rows = enriched().await;
    assert_eq!(statuses(&rows), ["matched", "matched", "user_unknown", "matched"]);
    assert_eq!(rows[1][2], demo.history[0][1], "the plan before today's upgrade");
    assert_eq!(
        crate::handler::delta_files(&root, "silver/events/watch").len(),
        1,
        "the partition's two files replaced by one, not added beside them"
    );
    // Nothing new in the dimension: only the file added since (the rewrite) is compared, and
    // nothing committed; then, nothing moved at all, nothing is read.
    let version = state.tables.open("silver/events/watch").await.expect("open").version();
    let again = reenrich_all(lake.as_ref(), &state.tables, &contracts, 7, today)
        .await
        .expect("again");
    let again = again[0].1.clone().expect("the rewrite is a file added since");
    assert_eq!((again.rows, again.changed, again.rewritten), (4, 0, 0), "{again:?}");
    assert_eq!(
        state.tables.open("silver/events/watch").await.expect("open").version(),
        version
    );
    let idle = reenrich_all(lake.as_ref(), &state.tables, &contracts, 7, today)
        .await
        .expect("idle");
    assert_eq!(idle[0].1, None);

    // A late correction: user-000001's current subscription row is stamped as if its upgrade
    // had happened on 30 April; a pull that reads far enough back lands it in history.
    let db = Sqlite::open(&dir.path().join("platform.db")).await.expect("db");
    let april = "2024-04-30T12:00:00Z".parse().expect("time");
    db.execute(&format!(
        "UPDATE subscriptions SET updated_at = {} WHERE subscription_id = 'sub-000001-1'",
        sample::literal(Dialect::Sqlite, april)
    ))
    .await
    .expect("correction");
    let sink = movielake::pipelines::sql_pull::Sink {
        lake: lake.as_ref(),
        tables: &state.tables,
        contracts: &contracts,
    };
    let settings = movielake::pipelines::sql_pull::PullSettings {
        lag: chrono::Duration::zero(),
        overlap: chrono::Duration::days(3650),
        key_check: None,
        ..Default::default()
    };
    movielake::pipelines::sql_pull::pull_table(
        &sink,
        &db,
        "platform",
        &movielake_core::sources::sql::SUBSCRIPTIONS,
        settings,
    )
    .await
    .expect("pull the correction");
    let done = reenrich_all(lake.as_ref(), &state.tables, &contracts, 7, today)
        .await
        .expect("after the correction")[0]
        .1
        .clone()
        .expect("the dimension moved");
    assert_eq!(
        (done.rows, done.changed),
        (4, 1),
        "exactly the corrected user's event: {done:?}"
    );
    let rows = enriched().await;
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[1][1..], ["matched".to_string(), "premium".into()]);
    assert_eq!(
        (rows[0][1].as_str(), rows[3][1].as_str()),
        ("matched", "matched"),
        "the others as they were"
    );
}
