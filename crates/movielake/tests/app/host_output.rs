//! What the Functions host sees of `movielake serve` besides answers: which stream each log
//! level goes to (the host makes every stderr line without "warn" an Error), and a TMDB token
//! that is still an unresolved Key Vault reference, refused before any request is sent.

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::handler::post_to;
use crate::support::spawn_router;

#[tokio::test]
async fn an_unresolved_key_vault_reference_is_refused_before_any_request_and_logs_go_to_the_right_stream() {
    // A TMDB stand-in that counts what reaches it.
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let app = axum::Router::new().fallback(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        async { "{}" }
    });
    let (tmdb, _stop) = spawn_router(app).await;

    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let contracts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contracts");
    let reference = "@Microsoft.KeyVault(SecretUri=https://kv-movielake.vault.azure.net/secrets/tmdb-token/)";
    let mut child = Command::new(env!("CARGO_BIN_EXE_movielake"))
        .arg("serve")
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("MOVIELAKE_LAKE", dir.path().join("lake"))
        .env("MOVIELAKE_CONTRACTS", contracts)
        .env("TMDB_API_TOKEN", reference)
        .env("TMDB_BASE_URL", format!("http://{tmdb}/3"))
        .env_remove("MOVIELAKE_LOG")
        .env_remove("EVENTGRID_TOPIC_ENDPOINT")
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start movielake serve");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "serve did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }

    let timer = json!({
        "Data": {"timer": {"Schedule": {"AdjustForDST": true}, "ScheduleStatus": null, "IsPastDue": false}},
        "Metadata": {"sys": {"MethodName": "pull_tmdb_lists", "UtcNow": "2024-05-01T06:00:00Z", "RandGuid": "1"}}
    });
    let (status, _, body) = post_to(
        &format!("http://127.0.0.1:{port}"),
        "pull_tmdb_lists",
        timer.to_string(),
        false,
    )
    .await;
    let _ = child.kill();
    let mut stdout = String::new();
    let mut stderr = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let _ = child.wait();

    assert_eq!(status, 500, "{body}");
    let answer: Value = serde_json::from_str(&body).expect("json answer");
    assert_eq!(answer["Error"]["Kind"], json!("configuration"), "{body}");
    let message = answer["Error"]["Message"].as_str().unwrap();
    assert!(message.contains("unresolved Key Vault reference"), "{message}");
    assert!(message.contains("az functionapp restart"), "says what to do: {message}");
    assert_eq!(hits.load(Ordering::SeqCst), 0, "no request reached TMDB");

    // Information on stdout (the host logs it as Information), the failure on stderr.
    assert!(
        stdout.contains("listening") && stdout.contains("INFO"),
        "stdout: {stdout:?}"
    );
    assert!(
        !stdout.contains("ERROR") && !stdout.contains("WARN"),
        "stdout: {stdout:?}"
    );
    assert!(
        stderr.contains("invocation failed") && stderr.contains("ERROR"),
        "stderr: {stderr:?}"
    );
    assert!(!stderr.contains("listening"), "stderr: {stderr:?}");
    assert!(
        !stdout.contains('\u{1b}') && !stderr.contains('\u{1b}'),
        "no colour codes in the host's log"
    );
}

#[test]
fn key_vault_references_are_told_from_tokens() {
    use movielake::pipelines::tmdb_lists::{PullSettings, SettingsError, unresolved_key_vault_reference};
    for reference in [
        "@Microsoft.KeyVault(SecretUri=https://v.vault.azure.net/secrets/s/)",
        "  @microsoft.keyvault(VaultName=v;SecretName=s)",
    ] {
        assert!(unresolved_key_vault_reference(reference).is_some(), "{reference}");
        let settings = PullSettings::from_lookup(|name| (name == "TMDB_API_TOKEN").then(|| reference.to_string()));
        assert!(
            matches!(settings, Err(SettingsError::UnresolvedKeyVaultReference(_))),
            "{reference}: {settings:?}"
        );
    }
    for token in ["eyJhbGciOiJIUzI1NiJ9.e30.x", "@Microsoft", "é@Microsoft.KeyVault(", ""] {
        assert!(unresolved_key_vault_reference(token).is_none(), "{token}");
    }
    let settings =
        PullSettings::from_lookup(|name| (name == "TMDB_API_TOKEN").then(|| "eyJhbGciOiJIUzI1NiJ9.e30.x".into()));
    assert!(settings.is_ok(), "{settings:?}");
}
