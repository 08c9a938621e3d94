//! Embeds `contracts/*.toml` so an installed binary works without the repository beside it.
use std::{env, fs, path::PathBuf};

fn main() {
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap_or_default()).join("../../contracts");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut entries: Vec<PathBuf> = fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect()
        })
        .unwrap_or_default();
    entries.sort();
    let mut out = String::from("pub const EMBEDDED_CONTRACTS: &[(&str, &str)] = &[\n");
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let abs = fs::canonicalize(&path).unwrap_or(path.clone());
        println!("cargo:rerun-if-changed={}", abs.display());
        out.push_str(&format!(
            "    (\"contracts/{name}\", include_str!({:?})),\n",
            abs.display().to_string()
        ));
    }
    out.push_str("];\n");
    let target = PathBuf::from(env::var("OUT_DIR").unwrap_or_default()).join("embedded_contracts.rs");
    if let Err(e) = fs::write(&target, out) {
        panic!("cannot write {}: {e}", target.display());
    }
}
