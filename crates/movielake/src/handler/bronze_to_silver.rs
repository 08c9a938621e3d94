//! `bronze_to_silver`: Event Grid trigger (BlobCreated or our `movielake.bronze.landed`).
//!
//! A refused or skipped event is answered 200 with the reason in `Logs`: Event Grid redelivers
//! on failure, and a redelivery of an event we will never accept only repeats the refusal. Only
//! an infrastructure failure (storage down) fails the invocation so that it is retried.

use movielake_core::host::eventgrid::{LakeScope, admit, decode_invocation_event};
use movielake_core::host::{Invocation, InvocationResponse};

use super::{AppState, FunctionError};
use crate::pipelines::bronze_to_silver::{BronzeToSilverError, Outcome, process};

pub const NAME: &str = "bronze_to_silver";
/// The trigger's binding name in `function.json`.
const BINDING: &str = "event";

pub async fn run(state: &AppState, invocation: Invocation) -> Result<InvocationResponse, FunctionError> {
    let event = decode_invocation_event(&invocation, BINDING)?;
    // The guard's notion of "our lake" is the lake this process writes to, not a second setting
    // that could disagree with it.
    let scope = LakeScope::from_location(Some(&state.lake.describe()));
    let admitted = match event.and_then(|e| admit(&scope, &e)) {
        Ok(admitted) => admitted,
        Err(refusal) => {
            tracing::warn!(%refusal, "bronze_to_silver refused an event; nothing was read");
            return Ok(InvocationResponse::with_logs(vec![format!("refused: {refusal}")]));
        }
    };
    let outcome = process(&state.lake, &state.tables, &state.contracts, &admitted)
        .await
        .map_err(|e| match e {
            BronzeToSilverError::Lake(e) => FunctionError::Lake(e),
            BronzeToSilverError::Table(e) => FunctionError::Table(e),
            BronzeToSilverError::MissingContract(name) => FunctionError::MissingContract(name.into()),
            other @ (BronzeToSilverError::Encode { .. }
            | BronzeToSilverError::Movies(_)
            | BronzeToSilverError::Task(_)) => FunctionError::Internal(other.to_string()),
        })?;
    let logs = match outcome {
        Outcome::Done {
            manifest_path,
            mut logs,
            ..
        } => {
            logs.push(format!("manifest {manifest_path}"));
            logs
        }
        Outcome::Skipped(why) => {
            tracing::warn!(%why, "bronze_to_silver skipped an object");
            vec![format!("skipped: {why}")]
        }
    };
    Ok(InvocationResponse::with_logs(logs))
}
