//! `movielake send-events`: realistic watch events for development and demos, sent to a
//! running handler (standing in for the Functions host), to an Event Hub, or to JSON lines.

use std::io::Write;
use std::path::PathBuf;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use movielake_core::host::{InvocationResponse, event_hub_request};
use movielake_core::sources::events::sample::{SampleOptions, partition_for, watch_events};

#[derive(Debug, clap::Args)]
pub struct SendEventsArgs {
    /// Where to: `-` (JSON lines on stdout), a file path (JSON lines), a running handler
    /// `http://127.0.0.1:PORT` (host-shaped Event Hub batches), or an Event Hub
    /// `eventhubs://<namespace>.servicebus.windows.net/<hub>` (needs `--features eventhubs`).
    #[arg(long, default_value = "-")]
    to: Target,
    #[arg(long, default_value_t = 1000)]
    events: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Event time of the first event (RFC 3339); default: now.
    #[arg(long)]
    start: Option<DateTime<Utc>>,
    /// Share of events broken on purpose (0 to 1).
    #[arg(long, default_value_t = 0.04)]
    bad_share: f64,
    /// Share of events that repeat an earlier one, as a retrying producer would (0 to 1).
    #[arg(long, default_value_t = 0.02)]
    duplicate_share: f64,
    /// Viewing sessions starting per second of event time (two events each).
    #[arg(long, default_value_t = 0.5)]
    sessions_per_second: f64,
    /// Partitions to spread events over (handler target), by user.
    #[arg(long, default_value_t = 4)]
    partitions: usize,
    /// Events per invocation (handler target).
    #[arg(long, default_value_t = 250)]
    batch_size: usize,
    /// First sequence number of each partition (handler target). Default: the current time
    /// in microseconds, so separate sends never reuse a sequence range.
    #[arg(long)]
    first_sequence_number: Option<i64>,
    /// Viewers: user-000000 up to this many, the ids of the sample SQL database's users (so
    /// events sent after a `pull-sql` of a generated database find their subscriptions).
    #[arg(long, default_value_t = movielake_core::sources::events::sample::DEFAULT_USERS)]
    users: u64,
}

pub(super) async fn command(args: SendEventsArgs) -> anyhow::Result<()> {
    let SendEventsArgs {
        to,
        events,
        seed,
        start,
        bad_share,
        duplicate_share,
        sessions_per_second,
        partitions,
        batch_size,
        first_sequence_number,
        users,
    } = args;
    anyhow::ensure!((0.0..=1.0).contains(&bad_share), "--bad-share must be between 0 and 1");
    anyhow::ensure!(
        (0.0..=1.0).contains(&duplicate_share),
        "--duplicate-share must be between 0 and 1"
    );
    let now = Utc::now();
    let opts = SendOptions {
        events,
        seed,
        start: start.unwrap_or(now),
        bad_share,
        duplicate_share,
        sessions_per_second,
        partitions,
        batch_size,
        first_sequence_number: first_sequence_number.unwrap_or(now.timestamp_micros()),
        users,
    };
    let summary = send_events(&to, &opts, &|line| eprintln!("  {line}")).await?;
    match summary.invocations {
        0 => eprintln!("sent {} events", summary.sent),
        n => eprintln!("sent {} events in {n} invocations", summary.sent),
    }
    Ok(())
}

/// Where events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One raw body per line, to a file or (`-`) standard output.
    JsonLines(Option<PathBuf>),
    /// Host-shaped Event Hub invocations to a running `movielake serve` (`http://127.0.0.1:PORT`).
    Handler(String),
    /// A real Event Hub: `eventhubs://<namespace>.servicebus.windows.net/<hub>`.
    EventHub { namespace: String, hub: String },
}

impl FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "-" {
            return Ok(Target::JsonLines(None));
        }
        if let Some(rest) = s.strip_prefix("eventhubs://") {
            let (namespace, hub) = rest
                .split_once('/')
                .filter(|(n, h)| !n.is_empty() && !h.is_empty() && !h.contains('/'))
                .ok_or("expected eventhubs://<namespace>.servicebus.windows.net/<hub>")?;
            return Ok(Target::EventHub {
                namespace: namespace.into(),
                hub: hub.into(),
            });
        }
        if s.starts_with("http://") || s.starts_with("https://") {
            return Ok(Target::Handler(s.trim_end_matches('/').to_string()));
        }
        if s.contains("://") {
            return Err(format!(
                "unknown target {s:?}: use -, a file path, http://127.0.0.1:PORT or eventhubs://NS/HUB"
            ));
        }
        Ok(Target::JsonLines(Some(PathBuf::from(s))))
    }
}

#[derive(Debug, Clone)]
pub struct SendOptions {
    pub events: usize,
    pub seed: u64,
    pub start: DateTime<Utc>,
    pub bad_share: f64,
    pub duplicate_share: f64,
    /// Sessions starting per second of event time (two events each).
    pub sessions_per_second: f64,
    pub partitions: usize,
    pub batch_size: usize,
    /// First Event Hub sequence number of every partition (handler target). Event Hubs never
    /// reuses one, and batch names derive from them: two different sends must not overlap.
    pub first_sequence_number: i64,
    /// Viewers: `user-000000` up to this many (the sample SQL database's users).
    pub users: u64,
}

#[derive(Debug, Default)]
pub struct SendSummary {
    pub sent: usize,
    pub invocations: usize,
    /// Each invocation's answer (handler target), in order.
    pub responses: Vec<InvocationResponse>,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("cannot reach the handler at {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("the handler answered {status} for batch {batch}: {message}")]
    Refused {
        batch: String,
        status: u16,
        message: String,
    },
    #[error("Event Hubs: {0}")]
    EventHub(String),
}

/// Generates the events and sends them; `progress` hears one line per batch.
pub async fn send_events(
    target: &Target,
    opts: &SendOptions,
    progress: &dyn Fn(&str),
) -> Result<SendSummary, SendError> {
    let events = watch_events(&SampleOptions {
        seed: opts.seed,
        count: opts.events,
        start: opts.start,
        bad_share: opts.bad_share,
        duplicate_share: opts.duplicate_share,
        sessions_per_second: opts.sessions_per_second,
        users: opts.users,
    });
    match target {
        Target::JsonLines(path) => {
            let name = path
                .as_ref()
                .map_or("standard output".to_string(), |p| p.display().to_string());
            let wrap = |source| SendError::Write {
                path: name.clone(),
                source,
            };
            let mut out: Box<dyn Write> = match path {
                Some(p) => Box::new(std::io::BufWriter::new(std::fs::File::create(p).map_err(wrap)?)),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            for e in &events {
                writeln!(out, "{}", e.body).map_err(wrap)?;
            }
            out.flush().map_err(wrap)?;
            Ok(SendSummary {
                sent: events.len(),
                ..Default::default()
            })
        }
        Target::Handler(base) => {
            let partitions = opts.partitions.max(1);
            let mut per_partition: Vec<Vec<(String, DateTime<Utc>)>> = vec![Vec::new(); partitions];
            for e in events {
                // Enqueued a moment after it happened, as a device upload would be.
                let enqueued = e.occurred_at + chrono::Duration::milliseconds(350);
                per_partition[partition_for(&e.partition_key, partitions)].push((e.body, enqueued));
            }
            post_batches(base, &per_partition, opts, progress).await
        }
        Target::EventHub { namespace, hub } => send_to_event_hub(namespace, hub, &events, progress).await,
    }
}

async fn post_batches(
    base: &str,
    per_partition: &[Vec<(String, DateTime<Utc>)>],
    opts: &SendOptions,
    progress: &dyn Fn(&str),
) -> Result<SendSummary, SendError> {
    let client = reqwest::Client::new();
    let url = format!("{base}/ingest_watch_events");
    let size = opts.batch_size.max(1);
    let total: usize = per_partition.iter().map(|p| p.len().div_ceil(size)).sum();
    let mut summary = SendSummary::default();
    for (partition, events) in per_partition.iter().enumerate() {
        for (n, chunk) in events.chunks(size).enumerate() {
            let first = opts.first_sequence_number + (n * size) as i64;
            let batch = format!("partition {partition} seq {first}-{}", first + chunk.len() as i64 - 1);
            let request = event_hub_request("events", "ingest_watch_events", &partition.to_string(), first, chunk);
            let response = client
                .post(&url)
                .header("content-type", "application/json")
                .body(request.to_string())
                .send()
                .await
                .map_err(|e| SendError::Unreachable {
                    url: url.clone(),
                    message: e.to_string(),
                })?;
            let status = response.status().as_u16();
            let body = response.text().await.map_err(|e| SendError::Unreachable {
                url: url.clone(),
                message: e.to_string(),
            })?;
            if status != 200 {
                return Err(SendError::Refused {
                    batch,
                    status,
                    message: error_message(&body),
                });
            }
            let answer = parse_response(&body).ok_or_else(|| SendError::Refused {
                batch,
                status,
                message: format!("unreadable answer: {body}"),
            })?;
            summary.sent += chunk.len();
            summary.invocations += 1;
            progress(&format!(
                "[{}/{total}] {}",
                summary.invocations,
                answer.logs.first().map_or("", String::as_str)
            ));
            summary.responses.push(answer);
        }
    }
    Ok(summary)
}

/// The `Error.Message` of a handler's failure answer, or the body as it is.
fn error_message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.pointer("/Error/Message").and_then(|m| m.as_str()).map(String::from))
        .unwrap_or_else(|| body.to_string())
}

fn parse_response(body: &str) -> Option<InvocationResponse> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let logs = v
        .get("Logs")?
        .as_array()?
        .iter()
        .filter_map(|l| l.as_str().map(String::from))
        .collect();
    Some(InvocationResponse {
        logs,
        ..Default::default()
    })
}

#[cfg(feature = "eventhubs")]
async fn send_to_event_hub(
    namespace: &str,
    hub: &str,
    events: &[movielake_core::sources::events::sample::GeneratedEvent],
    progress: &dyn Fn(&str),
) -> Result<SendSummary, SendError> {
    let pairs: Vec<(String, String)> = events
        .iter()
        .map(|e| (e.body.clone(), e.partition_key.clone()))
        .collect();
    let total = pairs.len();
    let sent = crate::clients::eventhubs::send(namespace, hub, &pairs, &|n| progress(&format!("sent {n}/{total}")))
        .await
        .map_err(|e| SendError::EventHub(e.to_string()))?;
    Ok(SendSummary {
        sent,
        ..Default::default()
    })
}

#[cfg(not(feature = "eventhubs"))]
async fn send_to_event_hub(
    _namespace: &str,
    _hub: &str,
    _events: &[movielake_core::sources::events::sample::GeneratedEvent],
    _progress: &dyn Fn(&str),
) -> Result<SendSummary, SendError> {
    Err(SendError::EventHub(
        "this binary was built without Event Hubs support; rebuild with `cargo build --release --features eventhubs`"
            .into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!("-".parse(), Ok(Target::JsonLines(None)));
        assert_eq!(
            "events.jsonl".parse(),
            Ok(Target::JsonLines(Some("events.jsonl".into())))
        );
        assert_eq!(
            "http://127.0.0.1:7071/".parse(),
            Ok(Target::Handler("http://127.0.0.1:7071".into()))
        );
        assert_eq!(
            "eventhubs://ns.servicebus.windows.net/watch-events".parse(),
            Ok(Target::EventHub {
                namespace: "ns.servicebus.windows.net".into(),
                hub: "watch-events".into()
            })
        );
        assert!("eventhubs://ns".parse::<Target>().is_err());
        assert!("ftp://x".parse::<Target>().is_err());
    }
}
