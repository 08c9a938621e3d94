//! The enrichment columns of an enriched event table (issue 17): what [`crate::enrich`] found
//! for each row, written after the lineage columns of the same file, so one commit carries an
//! event and the dimension it was watched under.
//!
//! Every column is nullable: rows written before the table was enriched read as nulls, and a
//! table gains the columns with the first commit that writes them (a schema evolution that
//! adds optional columns).

use std::sync::Arc;

use arrow_array::ArrayRef;
use arrow_array::builder::{StringBuilder, TimestampMicrosecondBuilder};
use arrow_schema::{DataType, Field, TimeUnit};

use crate::enrich::{Dimension, Enrichment};

pub const SUBSCRIPTION_ID: &str = "subscription_id";
pub const PLAN: &str = "plan";
pub const SUBSCRIPTION_STATUS: &str = "subscription_status";
pub const USER_COUNTRY: &str = "user_country";
pub const DIMENSION_VALID_FROM: &str = "dimension_valid_from";
pub const DIMENSION_STATUS: &str = "dimension_status";

/// The enrichment columns, in the order a file holds them.
pub fn fields() -> Vec<Field> {
    let text = |name: &str| Field::new(name, DataType::Utf8, true);
    vec![
        text(SUBSCRIPTION_ID),
        text(PLAN),
        text(SUBSCRIPTION_STATUS),
        text(USER_COUNTRY),
        Field::new(
            DIMENSION_VALID_FROM,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        text(DIMENSION_STATUS),
    ]
}

/// The enrichment of each `(user, time in µs)`: the dimension's lookup, or `user_unknown`
/// when there is no dimension (the SQL source has not landed yet) or the row lacks either.
/// Such rows are enriched again later (the maintenance run).
pub fn arrays<'u>(
    dimension: Option<&Dimension>,
    rows: impl ExactSizeIterator<Item = (Option<&'u str>, Option<i64>)>,
) -> Vec<ArrayRef> {
    let n = rows.len();
    let mut id = StringBuilder::with_capacity(n, n * 12);
    let mut plan = StringBuilder::with_capacity(n, n * 8);
    let mut status = StringBuilder::with_capacity(n, n * 8);
    let mut country = StringBuilder::with_capacity(n, n * 2);
    let mut from = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut found = StringBuilder::with_capacity(n, n * 8);
    for (user, at) in rows {
        let e = match (dimension, user, at) {
            (Some(d), Some(user), Some(at)) => d.lookup(user, at),
            _ => Enrichment::UNKNOWN,
        };
        id.append_option(e.subscription_id);
        plan.append_option(e.plan);
        status.append_option(e.subscription_status);
        country.append_option(e.country);
        from.append_option(e.valid_from);
        found.append_value(e.status.as_str());
    }
    vec![
        Arc::new(id.finish()),
        Arc::new(plan.finish()),
        Arc::new(status.finish()),
        Arc::new(country.finish()),
        Arc::new(from.finish()),
        Arc::new(found.finish()),
    ]
}
