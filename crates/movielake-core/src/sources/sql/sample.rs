//! A generator of the platform's users and subscriptions, and of rounds of changes to them, as
//! SQL text for each dialect (sans IO: the caller runs it). Deterministic: the same seed gives
//! the same rows. `movielake run` uses it on SQLite; tests and benchmarks on PostgreSQL.

use chrono::{DateTime, Duration, SecondsFormat, Utc};

use super::Dialect;
use crate::sources::events::sample::Rng;

const COUNTRIES: [&str; 12] = ["US", "GB", "FR", "DE", "ES", "IT", "BR", "CA", "JP", "IN", "NL", "SE"];
const NAMES: [&str; 10] = [
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Margaret", "Dennis", "Frances", "Linus",
];
/// (plan, monthly price) per currency: EUR, USD, GBP.
const PLANS: [(&str, [&str; 3]); 3] = [
    ("basic", ["7.99", "8.99", "6.99"]),
    ("standard", ["11.99", "13.99", "10.99"]),
    ("premium", ["17.99", "19.99", "15.99"]),
];
const CURRENCIES: [&str; 3] = ["EUR", "USD", "GBP"];

/// A timestamp as each dialect's column takes it (SQLite: the DDL's text form, which orders
/// like time).
pub fn literal(dialect: Dialect, t: DateTime<Utc>) -> String {
    match dialect {
        Dialect::Sqlite => format!("'{}'", t.to_rfc3339_opts(SecondsFormat::Millis, true)),
        Dialect::Postgres => format!("'{}'", t.to_rfc3339_opts(SecondsFormat::Micros, true)),
        Dialect::SqlServer => format!("'{}'", t.format("%Y-%m-%dT%H:%M:%S%.6f")),
    }
}

/// `user-000042`, `sub-000042-1`.
pub fn user_id(i: usize) -> String {
    format!("user-{i:06}")
}

pub fn subscription_id(user: usize, n: usize) -> String {
    format!("sub-{user:06}-{n}")
}

/// INSERT statements for `users` users (each with one subscription, a third of them with a
/// second, older, cancelled one), created over the week before `now`, in chunks of 500 rows.
/// One user in 97 has an email without a domain, one subscription in 113 ends before it
/// starts: the contracts quarantine them.
pub fn seed_sql(dialect: Dialect, users: usize, seed: u64, now: DateTime<Utc>) -> Vec<String> {
    let mut rng = Rng::new(seed);
    let ts = |t| literal(dialect, t);
    let mut user_rows = Vec::with_capacity(users);
    let mut sub_rows = Vec::with_capacity(users + users / 3);
    for i in 0..users {
        let created = now - Duration::seconds(3_600 + rng.below(7 * 86_400) as i64);
        let name = rng.pick(&NAMES);
        let country = rng.pick(&COUNTRIES);
        // A few dirty rows, as a real database has: an email without its domain.
        let domain = if i % 97 == 96 { "" } else { "@example.com" };
        user_rows.push(format!(
            "('{id}', '{lower}.{i}{domain}', '{name}', '{country}', {c}, {c})",
            id = user_id(i),
            lower = name.to_lowercase(),
            c = ts(created),
        ));
        let currency = rng.below(3) as usize;
        let mut add = |n: usize, plan: usize, status: &str, started: DateTime<Utc>, ends: Option<DateTime<Utc>>| {
            sub_rows.push(format!(
                "('{id}', '{user}', '{plan}', '{status}', {started}, {ends}, {price}, '{currency}', {updated})",
                id = subscription_id(i, n),
                user = user_id(i),
                plan = PLANS[plan].0,
                price = PLANS[plan].1[currency],
                currency = CURRENCIES[currency],
                started = ts(started),
                ends = ends.map_or("NULL".to_string(), ts),
                updated = ts(ends.unwrap_or(started).max(created)),
            ));
        };
        if i % 3 == 0 {
            let old = created - Duration::days(200);
            let ends = if i % 113 == 111 {
                old - Duration::days(1)
            } else {
                old + Duration::days(90)
            };
            add(0, 0, "cancelled", old, Some(ends));
        }
        let status = if rng.chance(0.2) { "trial" } else { "active" };
        add(1, rng.below(3) as usize, status, created, None);
    }
    let mut out = Vec::new();
    for chunk in user_rows.chunks(500) {
        out.push(format!(
            "INSERT INTO users (user_id, email, display_name, country, created_at, updated_at) VALUES {}",
            chunk.join(", ")
        ));
    }
    for chunk in sub_rows.chunks(500) {
        out.push(format!(
            "INSERT INTO subscriptions (subscription_id, user_id, plan, status, started_at, ends_at, monthly_price, \
             currency, updated_at) VALUES {}",
            chunk.join(", ")
        ));
    }
    out
}

/// One round of changes, as a person would describe them, and the SQL that makes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Round {
    pub changes: Vec<(String, String)>,
}

/// The round `movielake run` shows (needs `users >= 4`): `user-000001` upgrades to premium,
/// `user-000002` cancels, `user-000003` is deleted (a soft delete; their subscription row is
/// deleted outright), and a change to `user-000004` stamped `late_by` before `at` commits late.
/// Every change is stamped `at` or a few milliseconds after, except the late one.
pub fn demo_round(dialect: Dialect, at: DateTime<Utc>, late_by: Duration) -> Round {
    let ts = |ms: i64| literal(dialect, at + Duration::milliseconds(ms));
    let changes = vec![
        (
            format!("{} upgrades to premium", user_id(1)),
            format!(
                "UPDATE subscriptions SET plan = 'premium', monthly_price = 17.99, currency = 'EUR', \
                 status = 'active', updated_at = {} WHERE subscription_id = '{}'",
                ts(1),
                subscription_id(1, 1)
            ),
        ),
        (
            format!("{} cancels", user_id(2)),
            format!(
                "UPDATE subscriptions SET status = 'cancelled', ends_at = {t}, updated_at = {t} \
                 WHERE subscription_id = '{}'",
                subscription_id(2, 1),
                t = ts(2)
            ),
        ),
        (
            format!("{} deletes their account", user_id(3)),
            format!(
                "UPDATE users SET deleted_at = {t}, updated_at = {t} WHERE user_id = '{}'",
                user_id(3),
                t = ts(3)
            ),
        ),
        (
            format!("{}'s subscription row is deleted outright", user_id(3)),
            format!("DELETE FROM subscriptions WHERE user_id = '{}'", user_id(3)),
        ),
        (
            format!(
                "{} renames themselves, stamped {}s before the last pull but committed after it",
                user_id(4),
                late_by.num_seconds()
            ),
            format!(
                "UPDATE users SET display_name = 'Late Lovelace', updated_at = {} WHERE user_id = '{}'",
                literal(dialect, at - late_by),
                user_id(4)
            ),
        ),
    ];
    Round { changes }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_rows_and_every_user_has_a_current_subscription() {
        let now = DateTime::<Utc>::from_timestamp(1_714_557_600, 0).expect("time");
        let a = seed_sql(Dialect::Sqlite, 1_200, 7, now);
        assert_eq!(a, seed_sql(Dialect::Sqlite, 1_200, 7, now));
        assert_eq!(a.len(), 3 + 4, "users in 3 chunks, 1,600 subscriptions in 4");
        let text = a.join("\n");
        assert_eq!(text.matches("'sub-").count(), 1_200 + 400);
        assert!(
            text.contains("'2024-") && text.contains("Z'"),
            "SQLite's text timestamps"
        );
        let pg = seed_sql(Dialect::Postgres, 3, 7, now).join("\n");
        assert!(pg.contains(".000000Z'"), "{pg}");
    }

    #[test]
    fn the_demo_round_stamps_its_late_change_before_the_others() {
        let at = DateTime::<Utc>::from_timestamp(1_714_557_600, 0).expect("time");
        let round = demo_round(Dialect::Sqlite, at, Duration::seconds(120));
        assert_eq!(round.changes.len(), 5);
        assert!(
            round.changes[4].1.contains("'2024-05-01T09:58:00.000Z'"),
            "{:?}",
            round.changes[4]
        );
        assert!(round.changes[0].1.contains("'2024-05-01T10:00:00.001Z'"));
    }
}
