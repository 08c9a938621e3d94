//! `movielake serve`: the Functions custom handler on 127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT.

use anyhow::Context;

use crate::handler::{self, AppState};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[arg(long, env = "FUNCTIONS_CUSTOMHANDLER_PORT", default_value_t = 8080)]
    port: u16,
}

pub(super) async fn command(state: AppState, ServeArgs { port }: ServeArgs) -> anyhow::Result<()> {
    handler::serve(state, port)
        .await
        .with_context(|| format!("cannot serve on 127.0.0.1:{port}"))?;
    Ok(())
}
