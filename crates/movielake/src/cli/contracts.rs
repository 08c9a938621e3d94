//! `movielake contracts`: check every contract (at start-up) and print what each declares.

use crate::handler::AppState;

pub(super) fn command(state: &AppState) -> anyhow::Result<()> {
    for c in state.contracts.iter() {
        let key: Vec<&str> = c.key.iter().map(|&i| c.columns[i].name.as_str()).collect();
        println!(
            "{} v{} ({}): silver/{}/{}  {} columns, {} row rules, key [{}]",
            c.name,
            c.version,
            c.file,
            c.source,
            c.table,
            c.columns.len(),
            c.rules.len(),
            key.join(", ")
        );
    }
    Ok(())
}
