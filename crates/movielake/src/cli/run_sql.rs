//! `movielake run`'s SQL part: the platform's database with no server. A sample SQLite
//! database of users and subscriptions is pulled, a round of changes is applied (a plan
//! upgrade, a cancellation, a deleted user, a change committed late), it is pulled again, and
//! one user's subscription history is printed as silver keeps it.

use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use movielake_core::output::manifest::Counts;
use movielake_core::sources::sql::{Dialect, SUBSCRIPTIONS, TABLES, USERS, sample};

use crate::clients::sql::{SqlSource, Sqlite};
use crate::handler::AppState;
use crate::pipelines::sql_pull::{PullError, PullSettings, Sink, pull_table};

/// The user whose history is printed: the one the demo round upgrades.
pub const SHOWN_USER: &str = "user-000001";
/// How far before the first pull the late change is stamped (inside the 15-min overlap).
const LATE_BY: i64 = 120;

/// What the SQL part did: the counts of every pull, added up.
#[derive(Debug, Default)]
pub struct SqlDemo {
    pub counts: Counts,
    pub pulls: usize,
    /// The shown user's history: (subscription, plan, status, valid_from, valid_to).
    pub history: Vec<Vec<String>>,
}

/// Creates the sample database `platform.db` in `dir` with `users` users, created over the week
/// before `created_before` (or before now, if earlier), and runs the demo.
pub async fn run_sql(
    state: &AppState,
    dir: &Path,
    users: usize,
    seed: u64,
    created_before: DateTime<Utc>,
    progress: &dyn Fn(String),
) -> anyhow::Result<SqlDemo> {
    let path = dir.join("platform.db");
    let _ = std::fs::remove_file(&path);
    let db = Sqlite::open(&path).await?;
    db.execute(Dialect::Sqlite.ddl()).await?;
    let now = db.ceiling(Duration::zero()).await?.at;
    db.execute_all(sample::seed_sql(
        Dialect::Sqlite,
        users.max(5),
        seed,
        created_before.min(now),
    ))
    .await?;
    progress(format!("sample database {} ({} users)", path.display(), users.max(5)));
    let sink = Sink {
        lake: state.lake.as_ref(),
        tables: &state.tables,
        contracts: &state.contracts,
    };
    // SQLite has one writer at a time: what is visible is committed, so no lag is needed.
    let settings = PullSettings {
        lag: Duration::zero(),
        overlap: Duration::minutes(15),
        key_check: Some(Duration::zero()),
        ..PullSettings::default()
    };
    let mut demo = SqlDemo::default();
    let mut through = now;
    for table in TABLES {
        let pulled = pull(&sink, &db, &table, settings, &mut demo).await?;
        through = through.max(pulled.unwrap_or(through));
    }
    progress(format!("first pull: {} rows", demo.counts.records_in));
    let round = sample::demo_round(Dialect::Sqlite, through, Duration::seconds(LATE_BY));
    for (what, _) in &round.changes {
        progress(format!("change: {what}"));
    }
    db.execute_all(round.changes.into_iter().map(|(_, sql)| sql).collect())
        .await?;
    // The round is stamped just after the first pull's ceiling: let the clock pass it.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let before = demo.counts.records_in;
    for table in [USERS, SUBSCRIPTIONS] {
        pull(&sink, &db, &table, settings, &mut demo).await?;
    }
    progress(format!("second pull: {} rows", demo.counts.records_in - before));
    demo.history = text_rows(
        &state
            .tables
            .sql(
                "silver/sql/subscriptions_history",
                &format!(
                    "SELECT subscription_id, plan, status, CAST(valid_from AS VARCHAR) AS since, \
                     COALESCE(CAST(valid_to AS VARCHAR), '(current)') AS until FROM t \
                     WHERE user_id = '{SHOWN_USER}' ORDER BY subscription_id, valid_from"
                ),
            )
            .await?,
    );
    Ok(demo)
}

async fn pull(
    sink: &Sink<'_>,
    db: &Sqlite,
    table: &movielake_core::sources::sql::SqlTable,
    settings: PullSettings,
    demo: &mut SqlDemo,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, PullError> {
    let pulled = pull_table(sink, db, "platform", table, settings).await?;
    let c = &pulled.counts;
    demo.counts.records_in += c.records_in;
    demo.counts.silver += c.silver;
    demo.counts.quarantined += c.quarantined;
    demo.counts.duplicates_dropped += c.duplicates_dropped;
    for (rule, n) in &c.quarantined_by_rule {
        *demo.counts.quarantined_by_rule.entry(rule.clone()).or_default() += n;
    }
    demo.pulls += 1;
    Ok(pulled.through)
}

/// Prints the shown user's history as a table.
pub fn print_history(demo: &SqlDemo) {
    println!("{SHOWN_USER}'s subscriptions, as silver/sql/subscriptions_history keeps them:");
    println!(
        "  {:<14} {:<9} {:<10} {:<28} valid_to",
        "subscription", "plan", "status", "valid_from"
    );
    for row in &demo.history {
        if let [id, plan, status, from, to] = row.as_slice() {
            println!("  {id:<14} {plan:<9} {status:<10} {from:<28} {to}");
        }
    }
}

/// What enrichment gave the watch events in silver: their count by `dimension_status`, and a
/// few of them with the plan they were watched under.
pub async fn print_enriched(state: &AppState) -> anyhow::Result<()> {
    let table = "silver/events/watch";
    let counts = state
        .tables
        .sql(
            table,
            "SELECT dimension_status, CAST(count(*) AS VARCHAR) FROM t GROUP BY dimension_status \
             ORDER BY dimension_status",
        )
        .await?;
    let counts: Vec<String> = text_rows(&counts)
        .into_iter()
        .map(|r| {
            format!(
                "{} {}",
                r.get(1).map_or("", |s| s.as_str()),
                r.first().map_or("", |s| s.as_str())
            )
        })
        .collect();
    println!("watch events enriched as of their time: {}", counts.join(", "));
    let rows = state
        .tables
        .sql(
            table,
            "SELECT user_id, CAST(occurred_at AS VARCHAR) AS at, plan, subscription_status, user_country, \
             dimension_status FROM t ORDER BY occurred_at, event_id LIMIT 5",
        )
        .await?;
    println!(
        "  {:<12} {:<26} {:<9} {:<10} {:<7} dimension_status",
        "user", "occurred_at", "plan", "status", "country"
    );
    for row in text_rows(&rows) {
        if let [user, at, plan, status, country, found] = row.as_slice() {
            println!("  {user:<12} {at:<26} {plan:<9} {status:<10} {country:<7} {found}");
        }
    }
    Ok(())
}

/// Every value of `batches` as text ("" for null).
fn text_rows(batches: &[deltalake::arrow::array::RecordBatch]) -> Vec<Vec<String>> {
    use deltalake::arrow::array::Array;
    use deltalake::arrow::util::display::array_value_to_string;
    let mut rows = Vec::new();
    for b in batches {
        for i in 0..b.num_rows() {
            rows.push(
                b.columns()
                    .iter()
                    .map(|c| {
                        if c.is_null(i) {
                            String::new()
                        } else {
                            array_value_to_string(c, i).unwrap_or_default()
                        }
                    })
                    .collect(),
            );
        }
    }
    rows
}
