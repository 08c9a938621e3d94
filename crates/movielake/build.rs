//! Embeds `contracts/*.toml` and the gold models `gold/*.sql`, so an installed binary works
//! without the repository beside it.
use std::{env, fs, path::PathBuf};

fn embed(folder: &str, extension: &str, constant: &str, out: &mut String) {
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap_or_default())
        .join("../..")
        .join(folder);
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut entries: Vec<PathBuf> = fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == extension))
                .collect()
        })
        .unwrap_or_default();
    entries.sort();
    out.push_str(&format!("pub const {constant}: &[(&str, &str)] = &[\n"));
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let abs = fs::canonicalize(&path).unwrap_or(path.clone());
        println!("cargo:rerun-if-changed={}", abs.display());
        out.push_str(&format!(
            "    (\"{folder}/{name}\", include_str!({:?})),\n",
            abs.display().to_string()
        ));
    }
    out.push_str("];\n");
}

fn main() {
    let mut contracts = String::new();
    embed("contracts", "toml", "EMBEDDED_CONTRACTS", &mut contracts);
    let mut gold = String::new();
    embed("gold", "sql", "EMBEDDED_GOLD_MODELS", &mut gold);
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap_or_default());
    for (file, text) in [("embedded_contracts.rs", contracts), ("embedded_gold.rs", gold)] {
        let target = out_dir.join(file);
        if let Err(e) = fs::write(&target, text) {
            panic!("cannot write {}: {e}", target.display());
        }
    }
}
