//! What a maintenance run is asked to do, and the options it refuses.

use std::num::NonZeroU64;
use std::time::{Duration, Instant};

pub const DEFAULT_TARGET_FILE_MB: u64 = 128;
pub const DEFAULT_RETENTION_HOURS: u32 = 168;
/// Six times host.json's `functionTimeout` (10 min): no ingest invocation is still between
/// writing a file and committing it an hour later.
pub const MIN_RETENTION_HOURS: u32 = 1;
/// How long a table under way when the deadline comes may still run before its step stops.
pub const DEADLINE_GRACE: Duration = Duration::from_secs(2 * 60);

/// Why options were refused; each says what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    #[error(
        "VACUUM retention of {hours} h refused: the minimum is {MIN_RETENTION_HOURS} h, because ingest writes its \
         data files into the table before committing them and VACUUM would delete files of writers still at work"
    )]
    RetentionTooShort { hours: u32 },
    #[error("target file size {mb} MiB refused: use 1 to 1024 MiB")]
    TargetSize { mb: u64 },
    #[error("{setting}={value:?} is not a whole number")]
    NotANumber { setting: &'static str, value: String },
}

impl OptionsError {
    pub fn hint(&self) -> &'static str {
        match self {
            OptionsError::RetentionTooShort { .. } => {
                "use --retention-hours 1 or more (168, a week, keeps a week of time travel); to skip VACUUM altogether, use --no-vacuum"
            }
            OptionsError::TargetSize { .. } => "the default, 128 MiB, suits readers from DuckDB to Spark",
            OptionsError::NotANumber { .. } => "set the app setting to a whole number, or remove it for the default",
        }
    }
}

/// How long VACUUM keeps what it could delete: never under [`MIN_RETENTION_HOURS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    hours: u32,
}

impl Retention {
    pub fn hours(hours: u32) -> Result<Self, OptionsError> {
        if hours < MIN_RETENTION_HOURS {
            return Err(OptionsError::RetentionTooShort { hours });
        }
        Ok(Retention { hours })
    }

    pub fn as_hours(self) -> u32 {
        self.hours
    }
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            hours: DEFAULT_RETENTION_HOURS,
        }
    }
}

/// What a maintenance run does.
#[derive(Debug, Clone)]
pub struct MaintainOptions {
    pub target_file_bytes: NonZeroU64,
    pub retention: Retention,
    pub vacuum: bool,
    /// Plan only: what would be compacted and vacuumed; nothing is written.
    pub dry_run: bool,
    /// Who maintains, written in the lease a second maintainer is shown.
    pub holder: String,
    /// No table is started after this instant (the Function's time budget); one under way
    /// gets [`DEADLINE_GRACE`] more, then stops where it is.
    pub deadline: Option<Instant>,
}

impl MaintainOptions {
    pub fn new(target_file_mb: u64, retention_hours: u32, holder: impl Into<String>) -> Result<Self, OptionsError> {
        if !(1..=1024).contains(&target_file_mb) {
            return Err(OptionsError::TargetSize { mb: target_file_mb });
        }
        Ok(MaintainOptions {
            target_file_bytes: NonZeroU64::new(target_file_mb * 1024 * 1024).unwrap_or(NonZeroU64::MIN),
            retention: Retention::hours(retention_hours)?,
            vacuum: true,
            dry_run: false,
            holder: holder.into(),
            deadline: None,
        })
    }

    /// The Function's options: `MOVIELAKE_MAINTAIN_TARGET_FILE_MB` and
    /// `MOVIELAKE_MAINTAIN_RETENTION_HOURS` (the CLI reads the same two), else the defaults.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>, holder: impl Into<String>) -> Result<Self, OptionsError> {
        let number = |setting: &'static str, default: u64| match var(setting).map(|v| v.trim().to_string()) {
            Some(v) if !v.is_empty() => v
                .parse::<u64>()
                .map_err(|_| OptionsError::NotANumber { setting, value: v }),
            _ => Ok(default),
        };
        let mb = number("MOVIELAKE_MAINTAIN_TARGET_FILE_MB", DEFAULT_TARGET_FILE_MB)?;
        let hours = number("MOVIELAKE_MAINTAIN_RETENTION_HOURS", u64::from(DEFAULT_RETENTION_HOURS))?;
        Self::new(mb, u32::try_from(hours).unwrap_or(u32::MAX), holder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_under_an_hour_is_refused_with_a_hint() {
        let e = Retention::hours(0).expect_err("0 h");
        assert_eq!(e, OptionsError::RetentionTooShort { hours: 0 });
        assert!(e.to_string().contains("minimum is 1 h"), "{e}");
        assert!(e.hint().contains("--no-vacuum"));
        assert_eq!(Retention::hours(1).map(Retention::as_hours), Ok(1));
        assert_eq!(Retention::default().as_hours(), 168);
    }

    #[test]
    fn settings_default_and_refuse_what_they_cannot_read() {
        let none = MaintainOptions::from_lookup(|_| None, "t").expect("defaults");
        assert_eq!(none.target_file_bytes.get(), 128 * 1024 * 1024);
        assert_eq!(none.retention.as_hours(), 168);
        let bad = MaintainOptions::from_lookup(|_| Some("a week".into()), "t").expect_err("not a number");
        assert!(matches!(bad, OptionsError::NotANumber { .. }), "{bad}");
        let short = |name: &str| (name == "MOVIELAKE_MAINTAIN_RETENTION_HOURS").then(|| "0".to_string());
        assert!(matches!(
            MaintainOptions::from_lookup(short, "t"),
            Err(OptionsError::RetentionTooShort { hours: 0 })
        ));
        assert!(matches!(
            MaintainOptions::new(0, 1, "t"),
            Err(OptionsError::TargetSize { mb: 0 })
        ));
    }
}
