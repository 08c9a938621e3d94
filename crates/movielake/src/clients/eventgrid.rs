//! Publishing `movielake.bronze.landed` (CloudEvents 1.0) to the Event Grid custom topic, with an
//! Entra token (azure_identity) and retries. Only called once the objects announced are durable.

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use chrono::{DateTime, SecondsFormat, Utc};
use movielake_core::host::eventgrid::BRONZE_LANDED;
use movielake_core::output::naming::stable_id;
use serde_json::{Value as Json, json};

/// Entra scope of Event Grid data-plane publishing.
const SCOPE: &str = "https://eventgrid.azure.net/.default";
/// Events per request: far under Event Grid's 1 MB/request limit for our small events.
const BATCH: usize = 100;

/// How requests to the topic are authenticated.
#[derive(Clone)]
pub enum PublisherAuth {
    /// Managed identity in Azure (role "EventGrid Data Sender" on the topic).
    Entra(Arc<dyn TokenCredential>),
    /// A fixed bearer token (stand-ins in tests).
    Bearer(String),
}

impl std::fmt::Debug for PublisherAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PublisherAuth::Entra(_) => "Entra",
            PublisherAuth::Bearer(_) => "Bearer(redacted)",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot get an Entra token for Event Grid: {0}")]
    Token(String),
    #[error("Event Grid topic {endpoint} refused the events (HTTP {status}): {detail}")]
    Refused {
        endpoint: String,
        status: u16,
        detail: String,
    },
    #[error("Event Grid topic {endpoint}: gave up after {attempts} attempts; last: {last}")]
    GaveUp {
        endpoint: String,
        attempts: u32,
        last: String,
    },
}

#[derive(Debug, Clone)]
pub struct EventGridPublisher {
    http: reqwest::Client,
    endpoint: String,
    auth: PublisherAuth,
    pub max_attempts: u32,
    pub backoff_base: Duration,
}

/// One `movielake.bronze.landed` event. The id derives from the path, so a re-announcement is
/// recognisably the same event.
pub fn landed_event(path: &str, source: &str, landed_at: DateTime<Utc>) -> Json {
    json!({
        "specversion": "1.0",
        "type": BRONZE_LANDED,
        "source": source,
        "id": stable_id(path),
        "time": landed_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "subject": path,
        "datacontenttype": "application/json",
        "data": {"path": path},
    })
}

impl EventGridPublisher {
    pub fn new(endpoint: &str, auth: PublisherAuth) -> Result<Self, PublishError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| PublishError::Token(e.without_url().to_string()))?;
        Ok(EventGridPublisher {
            http,
            endpoint: endpoint.trim().to_string(),
            auth,
            max_attempts: 6,
            backoff_base: Duration::from_millis(500),
        })
    }

    /// Publishes in batches; returns once every event is accepted (HTTP 200) or fails.
    pub async fn publish(&self, events: &[Json]) -> Result<(), PublishError> {
        for batch in events.chunks(BATCH) {
            self.publish_batch(batch).await?;
        }
        Ok(())
    }

    async fn publish_batch(&self, batch: &[Json]) -> Result<(), PublishError> {
        let body = Json::Array(batch.to_vec()).to_string();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let token = match &self.auth {
                PublisherAuth::Bearer(t) => t.clone(),
                PublisherAuth::Entra(credential) => credential
                    .get_token(&[SCOPE], None)
                    .await
                    .map_err(|e| PublishError::Token(e.to_string()))?
                    .token
                    .secret()
                    .to_string(),
            };
            let sent = self
                .http
                .post(&self.endpoint)
                .bearer_auth(token)
                .header("content-type", "application/cloudevents-batch+json; charset=utf-8")
                .body(body.clone())
                .send()
                .await;
            let last = match sent {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => {
                    let status = r.status().as_u16();
                    let detail = r.text().await.unwrap_or_default();
                    let detail = movielake_core::contract::value::shorten(&detail, 300);
                    if status != 429 && status != 408 && status < 500 {
                        return Err(PublishError::Refused {
                            endpoint: self.endpoint.clone(),
                            status,
                            detail,
                        });
                    }
                    format!("HTTP {status}: {detail}")
                }
                Err(e) => e.without_url().to_string(),
            };
            if attempt >= self.max_attempts {
                return Err(PublishError::GaveUp {
                    endpoint: self.endpoint.clone(),
                    attempts: attempt,
                    last,
                });
            }
            let delay = self.backoff_base.saturating_mul(1 << (attempt - 1).min(6));
            tracing::warn!(endpoint = %self.endpoint, attempt, %last, "Event Grid publish will be retried");
            tokio::time::sleep(delay).await;
        }
    }
}
