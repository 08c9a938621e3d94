//! `movielake run`: the main job on one lake. The binary stands in for the Functions host: it
//! serves the real handler on an ephemeral 127.0.0.1 port and sends it host-shaped Event Hub
//! invocations over HTTP, so the run exercises exactly the path Azure does.

use chrono::{DateTime, Utc};
use movielake_core::output::manifest::{Counts, RunManifest};

use crate::handler::{AppState, serve_on};
use crate::lake::LakeError;
use crate::send::{SendError, SendOptions, Target, send_events};

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub events: usize,
    pub seed: u64,
    pub start: DateTime<Utc>,
    pub partitions: usize,
    pub batch_size: usize,
}

#[derive(Debug, Default)]
pub struct RunSummary {
    pub invocations: usize,
    pub counts: Counts,
    pub manifests: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot start the local handler: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    Send(#[from] SendError),
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error("{path}: unreadable run manifest: {message}")]
    Manifest { path: String, message: String },
}

pub async fn run_watch_events(
    state: &AppState,
    opts: &RunOptions,
    progress: &dyn Fn(&str),
) -> Result<RunSummary, RunError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(RunError::Serve)?;
    let base = format!("http://{}", listener.local_addr().map_err(RunError::Serve)?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_on(listener, state.clone(), async move {
        let _ = stopped.await;
    }));
    let send = SendOptions {
        events: opts.events,
        seed: opts.seed,
        start: opts.start,
        bad_share: 0.04,
        duplicate_share: 0.02,
        sessions_per_second: 0.5,
        partitions: opts.partitions,
        batch_size: opts.batch_size,
        // The same seed gives the same batches and names: a re-run rewrites the same lake.
        first_sequence_number: 0,
    };
    let sent = send_events(&Target::Handler(base), &send, progress).await;
    let _ = stop.send(());
    let _ = server.await;
    let sent = sent?;

    let mut summary = RunSummary {
        invocations: sent.invocations,
        ..Default::default()
    };
    for response in &sent.responses {
        if let Some(path) = response.logs.iter().find_map(|l| l.strip_prefix("manifest ")) {
            let object = state.lake.get(path).await?;
            let manifest: RunManifest = serde_json::from_slice(&object.bytes).map_err(|e| RunError::Manifest {
                path: path.to_string(),
                message: e.to_string(),
            })?;
            summary.counts.add(&manifest.counts);
            summary.manifests.push(path.to_string());
        }
    }
    Ok(summary)
}
