//! A SQL table's life through pulls on a real PostgreSQL (scripts/postgres.sh), as silver keeps
//! it: soft and hard deletes, a key deleted and inserted again, the database going away in the
//! middle of a pull, and the same pull run twice. Each test has a database of its own.

use async_trait::async_trait;
use chrono::Duration;
use movielake::clients::sql::{Postgres, PulledRow, SqlError, SqlSource};
use movielake::lake::{Lake, LakeError, LocalLake};
use movielake::pipelines::sql_pull::{PullError, PullSettings, Sink, pull_table, watermark_path};
use movielake::tables::{TableLocation, Tables};
use movielake_core::ContractSet;
use movielake_core::sources::sql::watermark::{Ceiling, Window};
use movielake_core::sources::sql::{Dialect, SUBSCRIPTIONS, SqlTable, USERS};

use crate::sql_postgres::{database, insert_user, strings as string_rows};

/// A folder lake with its tables and the project's contracts.
pub(crate) struct Lakehouse {
    _dir: tempfile::TempDir,
    pub(crate) lake: LocalLake,
    pub(crate) tables: Tables,
    contracts: ContractSet,
}

impl Lakehouse {
    pub(crate) fn new() -> Lakehouse {
        let dir = tempfile::tempdir().expect("dir");
        let lake = LocalLake::new(dir.path());
        let tables = Tables::new(TableLocation::for_lake(dir.path().to_str().expect("utf-8"), None).expect("tables"));
        let contracts =
            movielake::config::load_contracts(Some(&crate::watch_events::contracts_dir())).expect("contracts");
        Lakehouse {
            _dir: dir,
            lake,
            tables,
            contracts,
        }
    }

    pub(crate) fn sink(&self) -> Sink<'_> {
        Sink {
            lake: &self.lake,
            tables: &self.tables,
            contracts: &self.contracts,
        }
    }

    /// Every row of `sql` over `table`, each column cast to text by the query.
    async fn rows(&self, table: &str, sql: &str) -> Vec<Vec<String>> {
        string_rows(&self.tables.sql(table, sql).await.expect(table))
    }
}

fn every_pull() -> PullSettings {
    PullSettings {
        lag: Duration::zero(),
        overlap: Duration::minutes(5),
        key_check: Some(Duration::zero()),
        // Tiny pages: every scenario also crosses page boundaries, ties included.
        page_rows: 2,
    }
}

fn insert_subscription(id: &str, user: &str, plan: &str, status: &str, ago: &str) -> String {
    format!(
        "INSERT INTO subscriptions (subscription_id, user_id, plan, status, started_at, monthly_price, currency, updated_at) \
         VALUES ('{id}', '{user}', '{plan}', '{status}', now() - interval '30 days', 9.99, 'EUR', now() - interval '{ago}')"
    )
}

const HISTORY: &str = "SELECT subscription_id, plan, status, CAST(valid_to IS NULL AS VARCHAR), CAST(is_current AS VARCHAR) \
                       FROM t ORDER BY subscription_id, valid_from";

#[tokio::test]
async fn a_soft_deleted_user_is_flagged_and_its_history_closed() {
    let Some((db, _)) = database("soft_delete").await else {
        return;
    };
    let lake = Lakehouse::new();
    db.execute(&insert_user("u1", "now() - interval '2 minutes'"))
        .await
        .expect("u1");
    db.execute(&insert_user("u2", "now() - interval '2 minutes'"))
        .await
        .expect("u2");
    pull_table(&lake.sink(), &db, "platform", &USERS, every_pull())
        .await
        .expect("pull");
    db.execute("UPDATE users SET deleted_at = now(), updated_at = now() - interval '1 minute' WHERE user_id = 'u1'")
        .await
        .expect("soft delete");
    let pulled = pull_table(&lake.sink(), &db, "platform", &USERS, every_pull())
        .await
        .expect("pull");
    assert_eq!(
        (pulled.rows, pulled.deleted),
        (1, Some(0)),
        "a soft delete is a change, not a missing key"
    );
    assert_eq!(
        lake.rows(
            "silver/sql/users",
            "SELECT user_id, CAST(is_deleted AS VARCHAR) FROM t ORDER BY user_id"
        )
        .await,
        [["u1", "true"], ["u2", "false"]]
    );
    assert_eq!(
        lake.rows(
            "silver/sql/users_history",
            "SELECT user_id, CAST(valid_to IS NULL AS VARCHAR) FROM t ORDER BY user_id"
        )
        .await,
        [["u1", "false"], ["u2", "true"]],
        "u1's interval closed by the delete; no open one after it"
    );
}

/// A subscription deleted outright leaves no row to read a change from: the key comparison
/// finds it, closes its history and flags it; inserted again later, it opens a new interval.
#[tokio::test]
async fn a_hard_delete_is_found_by_the_key_comparison_and_a_reinserted_key_comes_back() {
    let Some((db, _)) = database("hard_delete").await else {
        return;
    };
    let lake = Lakehouse::new();
    db.execute(&insert_user("u1", "now() - interval '1 hour'"))
        .await
        .expect("user");
    db.execute(&insert_subscription("s1", "u1", "basic", "active", "10 minutes"))
        .await
        .expect("s1");
    db.execute(&insert_subscription("s2", "u1", "premium", "active", "10 minutes"))
        .await
        .expect("s2");
    pull_table(&lake.sink(), &db, "platform", &SUBSCRIPTIONS, every_pull())
        .await
        .expect("pull");
    db.execute("DELETE FROM subscriptions WHERE subscription_id = 's1'")
        .await
        .expect("delete");
    let found = pull_table(&lake.sink(), &db, "platform", &SUBSCRIPTIONS, every_pull())
        .await
        .expect("pull");
    assert_eq!((found.rows, found.deleted), (0, Some(1)));
    assert_eq!(
        lake.rows(
            "silver/sql/subscriptions",
            "SELECT subscription_id, CAST(is_deleted AS VARCHAR) FROM t ORDER BY subscription_id"
        )
        .await,
        [["s1", "true"], ["s2", "false"]]
    );
    assert_eq!(
        lake.rows("silver/sql/subscriptions_history", HISTORY).await,
        [
            ["s1", "basic", "active", "false", "false"],
            ["s2", "premium", "active", "true", "true"]
        ]
    );
    // The comparison's finding is in bronze beside the pulled rows.
    let listed = lake.lake.list("bronze/sql/subscriptions/").await.expect("list");
    assert!(
        listed.iter().any(|o| o.path.ends_with("/deletes-00001.csv.gz")),
        "{listed:?}"
    );
    // Found again by the next comparison: still one delete.
    let again = pull_table(&lake.sink(), &db, "platform", &SUBSCRIPTIONS, every_pull())
        .await
        .expect("pull");
    assert_eq!(again.deleted, Some(0));

    db.execute(&insert_subscription("s1", "u1", "standard", "trial", "0 seconds"))
        .await
        .expect("s1 again");
    let back = pull_table(&lake.sink(), &db, "platform", &SUBSCRIPTIONS, every_pull())
        .await
        .expect("pull");
    assert_eq!((back.rows, back.deleted), (1, Some(0)));
    assert_eq!(
        lake.rows("silver/sql/subscriptions_history", HISTORY).await,
        [
            ["s1", "basic", "active", "false", "false"],
            ["s1", "standard", "trial", "true", "true"],
            ["s2", "premium", "active", "true", "true"]
        ],
        "a gap while s1 was gone, then a new interval"
    );
    let gap = lake
        .rows(
            "silver/sql/subscriptions_history",
            "SELECT CAST(count(*) AS VARCHAR) FROM t a JOIN t b ON a.subscription_id = b.subscription_id \
             AND a.valid_from < b.valid_from WHERE a.valid_to < b.valid_from",
        )
        .await;
    assert_eq!(gap, [["1"]], "the first interval ends before the second begins");
    assert_eq!(
        lake.rows(
            "silver/sql/subscriptions",
            "SELECT subscription_id, plan, CAST(is_deleted AS VARCHAR) FROM t ORDER BY subscription_id"
        )
        .await,
        [["s1", "standard", "false"], ["s2", "premium", "false"]]
    );
}

/// The puller's connection is killed by the server between the ceiling and the read.
struct GoesAway {
    inner: Postgres,
    killer: Postgres,
}

#[async_trait]
impl SqlSource for GoesAway {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }
    async fn ceiling(&self, lag: Duration) -> Result<Ceiling, SqlError> {
        self.inner.ceiling(lag).await
    }
    async fn changes(&self, table: &SqlTable, window: &Window, limit: usize) -> Result<Vec<PulledRow>, SqlError> {
        self.killer
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
            )
            .await
            .expect("terminate");
        self.inner.changes(table, window, limit).await
    }
    async fn keys(&self, table: &SqlTable) -> Result<Vec<String>, SqlError> {
        self.inner.keys(table).await
    }
}

#[tokio::test]
async fn the_database_going_away_mid_pull_advances_nothing_and_the_retry_gets_everything() {
    let Some((db, url)) = database("goes_away").await else {
        return;
    };
    let lake = Lakehouse::new();
    for id in ["u1", "u2", "u3"] {
        db.execute(&insert_user(id, "now() - interval '1 minute'"))
            .await
            .expect("user");
    }
    let dying = GoesAway {
        inner: Postgres::connect(&url).await.expect("connect"),
        killer: Postgres::connect(&url).await.expect("connect"),
    };
    let e = pull_table(&lake.sink(), &dying, "platform", &USERS, every_pull())
        .await
        .expect_err("the connection was killed");
    assert!(
        matches!(e, PullError::Source(SqlError::Unreachable(_))),
        "an outage, to retry: {e}"
    );
    assert!(matches!(
        lake.lake.get(&watermark_path("platform", &USERS)).await,
        Err(LakeError::NotFound { .. })
    ));
    assert!(
        lake.tables
            .open("silver/sql/users_changes")
            .await
            .expect("open")
            .version()
            .is_none()
    );

    let retry = Postgres::connect(&url).await.expect("connect");
    let pulled = pull_table(&lake.sink(), &retry, "platform", &USERS, every_pull())
        .await
        .expect("retry");
    assert_eq!((pulled.rows, pulled.counts.silver), (3, 3));
}

/// A pull that landed its rows but died before moving the watermark is run again from the
/// old watermark: nothing is in silver twice, and the repeats are counted.
#[tokio::test]
async fn the_same_pull_run_twice_leaves_no_duplicate_anywhere_in_silver() {
    let Some((db, _)) = database("twice").await else {
        return;
    };
    let lake = Lakehouse::new();
    db.execute(&insert_user("u1", "now() - interval '1 hour'"))
        .await
        .expect("user");
    db.execute(&insert_subscription("s1", "u1", "basic", "active", "10 minutes"))
        .await
        .expect("s1");
    db.execute("UPDATE subscriptions SET plan = 'premium', updated_at = now() - interval '5 minutes'")
        .await
        .expect("upgrade");
    db.execute(&insert_subscription("s2", "u1", "standard", "trial", "1 minute"))
        .await
        .expect("s2");
    let path = watermark_path("platform", &SUBSCRIPTIONS);
    let first = pull_table(&lake.sink(), &db, "platform", &SUBSCRIPTIONS, every_pull())
        .await
        .expect("pull");
    assert_eq!(first.counts.silver, 2);
    lake.lake.delete(&path).await.expect("forget the watermark");
    let second = pull_table(&lake.sink(), &db, "platform", &SUBSCRIPTIONS, every_pull())
        .await
        .expect("pull");
    assert_eq!(
        (
            second.counts.records_in,
            second.counts.silver,
            second.counts.duplicates_dropped
        ),
        (2, 0, 2)
    );
    for table in ["subscriptions_changes", "subscriptions_history", "subscriptions"] {
        assert_eq!(
            lake.rows(
                &format!("silver/sql/{table}"),
                "SELECT CAST(count(*) AS VARCHAR), CAST(count(DISTINCT subscription_id) AS VARCHAR) FROM t"
            )
            .await,
            [["2", "2"]],
            "{table}"
        );
    }
}

/// A change committed late, older than the version already landed and with the same tracked
/// values, starts that version's interval earlier: the history row the later version opened
/// must go, not stay open beside the new one. (The refresh names such rows to the MERGE.)
#[tokio::test]
async fn a_late_version_equal_to_the_next_one_takes_its_history_row() {
    let Some((db, _)) = database("late_equal").await else {
        return;
    };
    let lake = Lakehouse::new();
    for user in ["u1", "u2", "u3"] {
        db.execute(&insert_user(user, "now() - interval '2 minutes'"))
            .await
            .expect("user");
    }
    // The overlap reaches back far enough to read the late change.
    let settings = PullSettings {
        overlap: Duration::hours(1),
        ..every_pull()
    };
    pull_table(&lake.sink(), &db, "platform", &USERS, settings)
        .await
        .expect("pull");
    db.execute("UPDATE users SET updated_at = now() - interval '20 minutes' WHERE user_id = 'u2'")
        .await
        .expect("late change");
    let pulled = pull_table(&lake.sink(), &db, "platform", &USERS, settings)
        .await
        .expect("pull");
    assert_eq!(pulled.counts.silver, 1, "the late version is new: {:?}", pulled.counts);
    assert_eq!(
        lake.rows(
            "silver/sql/users_history",
            "SELECT user_id, CAST(valid_to IS NULL AS VARCHAR) FROM t ORDER BY user_id"
        )
        .await,
        [["u1", "true"], ["u2", "true"], ["u3", "true"]],
        "one open interval per user"
    );
    let first_change = lake
        .rows(
            "silver/sql/users_changes",
            "SELECT CAST(min(updated_at) AS VARCHAR) FROM t WHERE user_id = 'u2'",
        )
        .await;
    let valid_from = lake
        .rows(
            "silver/sql/users_history",
            "SELECT CAST(valid_from AS VARCHAR) FROM t WHERE user_id = 'u2'",
        )
        .await;
    assert_eq!(valid_from, first_change, "u2's interval starts at the late change");
}

/// Reads `pages` pages, then the database is gone.
struct DiesAfter {
    inner: Postgres,
    pages: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl SqlSource for DiesAfter {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }
    async fn ceiling(&self, lag: Duration) -> Result<Ceiling, SqlError> {
        self.inner.ceiling(lag).await
    }
    async fn changes(&self, table: &SqlTable, window: &Window, limit: usize) -> Result<Vec<PulledRow>, SqlError> {
        let left = self.pages.load(std::sync::atomic::Ordering::SeqCst);
        if left == 0 {
            return Err(SqlError::Unreachable("gone".into()));
        }
        self.pages.store(left - 1, std::sync::atomic::Ordering::SeqCst);
        self.inner.changes(table, window, limit).await
    }
    async fn keys(&self, table: &SqlTable) -> Result<Vec<String>, SqlError> {
        self.inner.keys(table).await
    }
}

/// Pages of two rows, three users sharing one `updated_at` across a page boundary: the pull
/// dies on its third page, the watermark stands after the second, and the retry lands exactly
/// the rest.
#[tokio::test]
async fn a_pull_cut_short_resumes_after_the_last_page_it_landed() {
    let Some((db, url)) = database("resumes").await else {
        return;
    };
    let lake = Lakehouse::new();
    for (id, ago) in [
        ("u1", "9 minutes"),
        ("u2", "8 minutes"),
        ("u3", "7 minutes"),
        ("u4", "7 minutes"),
        ("u5", "7 minutes"),
        ("u6", "3 minutes"),
        ("u7", "2 minutes"),
    ] {
        db.execute(&insert_user(
            id,
            &format!("date_trunc('second', now()) - interval '{ago}'"),
        ))
        .await
        .expect("user");
    }
    let dying = DiesAfter {
        inner: Postgres::connect(&url).await.expect("connect"),
        pages: 2.into(),
    };
    let e = pull_table(&lake.sink(), &dying, "platform", &USERS, every_pull())
        .await
        .expect_err("gone on the third page");
    assert!(matches!(e, PullError::Source(SqlError::Unreachable(_))), "{e}");
    let landed = || lake.rows("silver/sql/users_changes", "SELECT user_id FROM t ORDER BY user_id");
    assert_eq!(landed().await, [["u1"], ["u2"], ["u3"], ["u4"]]);
    let stored: movielake_core::sources::sql::watermark::Watermark = serde_json::from_slice(
        &lake
            .lake
            .get(&watermark_path("platform", &USERS))
            .await
            .expect("the watermark moved past the second page")
            .bytes,
    )
    .expect("json");
    assert_eq!(stored.recent.len(), 4, "{stored:?}");

    let retry = Postgres::connect(&url).await.expect("connect");
    let pulled = pull_table(&lake.sink(), &retry, "platform", &USERS, every_pull())
        .await
        .expect("retry");
    assert_eq!(
        (pulled.rows, pulled.counts.silver, pulled.counts.duplicates_dropped),
        (3, 3, 0),
        "u5 (tied with u3 and u4), u6, u7; the re-read of u3 and u4 dropped by the watermark"
    );
    assert_eq!(pulled.duplicates, 4, "the overlap re-read u1 to u4");
    assert_eq!(landed().await, [["u1"], ["u2"], ["u3"], ["u4"], ["u5"], ["u6"], ["u7"]]);
    assert_eq!(pulled.bronze.len(), 2, "two pages with new rows: u5 u6, u7");
}

/// A row written again without moving `updated_at` (a writer that forgets to) is read again in
/// the overlap with other content: it is not taken for a re-read, and silver quarantines it
/// as a conflicting version instead of it being lost unseen.
#[tokio::test]
async fn a_row_rewritten_without_moving_updated_at_is_quarantined_not_lost() {
    let Some((db, _)) = database("rewritten").await else {
        return;
    };
    let lake = Lakehouse::new();
    db.execute(&insert_user("u1", "now() - interval '1 minute'"))
        .await
        .expect("user");
    let first = pull_table(&lake.sink(), &db, "platform", &USERS, every_pull())
        .await
        .expect("pull");
    assert_eq!(first.counts.silver, 1);
    db.execute("UPDATE users SET display_name = 'Renamed' WHERE user_id = 'u1'")
        .await
        .expect("rewrite");
    let second = pull_table(&lake.sink(), &db, "platform", &USERS, every_pull())
        .await
        .expect("pull");
    assert_eq!((second.rows, second.duplicates), (1, 0), "read as new content");
    assert_eq!(
        (second.counts.silver, second.counts.quarantined),
        (0, 1),
        "{:?}",
        second.counts
    );
    assert_eq!(second.counts.quarantined_by_rule.get("conflicting_version"), Some(&1));
    let third = pull_table(&lake.sink(), &db, "platform", &USERS, every_pull())
        .await
        .expect("pull");
    assert_eq!((third.rows, third.duplicates), (0, 1), "now a re-read");
}
