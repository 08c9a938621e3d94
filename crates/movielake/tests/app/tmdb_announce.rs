//! Announcing landed TMDB pages on the Event Grid topic (a stand-in topic on 127.0.0.1): only
//! once durable, and what a failed run could not announce is announced by the next one.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use movielake::clients::eventgrid::{EventGridPublisher, PublisherAuth};
use serde_json::Value;

use crate::handler::{files, post_to};
use crate::tmdb_client::pull::{handler_with, timer_request, timer_request_at};
use crate::tmdb_client::{TOKEN, fixture, standin};

/// A stand-in Event Grid topic: checks the bearer token, fails while `down`, and records
/// each event with whether its blob was already in the lake when it arrived.
#[derive(Clone)]
pub(crate) struct Topic {
    root: PathBuf,
    pub(crate) down: Arc<std::sync::atomic::AtomicBool>,
    pub(crate) received: Arc<Mutex<Vec<(String, bool)>>>,
}

async fn receive(State(t): State<Topic>, headers: HeaderMap, body: String) -> StatusCode {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer eg-token") {
        return StatusCode::UNAUTHORIZED;
    }
    if t.down.load(std::sync::atomic::Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let Ok(Value::Array(events)) = serde_json::from_str::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    for e in events {
        assert_eq!(e["type"], "movielake.bronze.landed");
        let subject = e["subject"].as_str().unwrap_or("").to_string();
        let durable = t.root.join(&subject).is_file();
        t.received.lock().unwrap().push((subject, durable));
    }
    StatusCode::OK
}

pub(crate) async fn topic(root: &std::path::Path) -> (String, Topic, tokio::sync::oneshot::Sender<()>) {
    let t = Topic {
        root: root.to_path_buf(),
        down: Arc::default(),
        received: Arc::default(),
    };
    let app = Router::new().route("/api/events", post(receive)).with_state(t.clone());
    let (addr, stop) = crate::support::spawn_router(app).await;
    let url = format!("http://{}/api/events", addr);
    (url, t, stop)
}

#[tokio::test]
async fn pages_are_announced_only_once_durable_and_a_failed_announcement_is_made_later() {
    let Some(page) = fixture("lists/popular_p1_2024-02_jdrouet.json") else {
        return;
    };
    let tmdb = standin(page, None, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let (url, t, _stop_topic) = topic(dir.path()).await;
    let mut publisher = EventGridPublisher::new(&url, PublisherAuth::Bearer("eg-token".into())).unwrap();
    publisher.max_attempts = 2;
    publisher.backoff_base = Duration::from_millis(10);

    // The topic is down: the pages land, the run fails and says so, nothing is lost.
    t.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let (base, _stop) = handler_with(dir.path(), &tmdb.base, TOKEN, Some(publisher)).await;
    let (status, _, body) = post_to(&base, "pull_tmdb_lists", timer_request(), false).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("landed but not announced"), "{body}");
    assert_eq!(files(dir.path(), "bronze").len(), 10);
    assert!(t.received.lock().unwrap().is_empty());

    // The next run announces its own pages and the five left over.
    t.down.store(false, std::sync::atomic::Ordering::SeqCst);
    let (status, _, body) = post_to(
        &base,
        "pull_tmdb_lists",
        timer_request_at("2024-02-01T07:00:00Z"),
        false,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("re-announced 5 page(s)"), "{body}");
    let received = t.received.lock().unwrap().clone();
    assert_eq!(received.len(), 10, "{received:?}");
    assert!(
        received.iter().all(|(_, durable)| *durable),
        "announced before durable: {received:?}"
    );
    let mut subjects: Vec<&String> = received.iter().map(|(s, _)| s).collect();
    subjects.sort();
    subjects.dedup();
    assert_eq!(subjects.len(), 10, "each page announced once");

    // A third run has nothing left over.
    let (status, _, body) = post_to(
        &base,
        "pull_tmdb_lists",
        timer_request_at("2024-02-01T08:00:00Z"),
        false,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("re-announced"), "{body}");
    assert_eq!(t.received.lock().unwrap().len(), 15);
}
