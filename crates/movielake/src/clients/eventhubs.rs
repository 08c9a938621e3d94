//! Event Hubs producer for `movielake send-events --to eventhubs://<namespace>/<hub>` (feature
//! `eventhubs`), through `azure_messaging_eventhubs`.
//!
//! Events are grouped by partition key (first-seen order of keys, input order within a key) and
//! packed into the SDK's `EventDataBatch`es, whose size limit is the hub's maximum message size as
//! negotiated on the AMQP link, so a batch never exceeds it. Authentication is the lake's
//! [`AzureAuth::TokenCredential`]: managed identity in Azure (AZURE_CLIENT_ID for a user-assigned
//! one), `az` / `azd` on a developer machine.

use std::error::Error as StdError;

use azure_messaging_eventhubs::{EventDataBatch, EventDataBatchOptions, ProducerClient};

use crate::lake::AzureAuth;

const NAMESPACE_SUFFIX: &str = ".servicebus.windows.net";

const HINT_CREDENTIAL: &str = "in Azure check the managed identity (and AZURE_CLIENT_ID for a user-assigned one), \
                               locally run `az login` (or `azd auth login`)";
const HINT_UNAUTHORIZED: &str = "the identity needs the 'Azure Event Hubs Data Sender' role on the namespace or the \
                                 hub (role assignments take a few minutes to apply)";
const HINT_NOT_FOUND: &str = "check the hub name, and that the namespace is <name>.servicebus.windows.net";
const HINT_NETWORK: &str = "check the namespace (it must be <name>.servicebus.windows.net) and that outbound AMQP \
                            over TLS (port 5671) is allowed";
const HINT_GENERIC: &str = "check that the namespace is <name>.servicebus.windows.net and the hub exists, that \
                            `az login` (or the managed identity) works, and that the identity has the 'Azure Event \
                            Hubs Data Sender' role";

/// Why [`send`] failed. Every message says what failed and hints at the usual fix.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The namespace or hub name is malformed; nothing was contacted.
    #[error("invalid Event Hubs target: {0}")]
    InvalidTarget(String),
    /// No Entra ID credential source could be set up.
    #[error("cannot set up an Entra ID credential for Event Hubs ({message}); {HINT_CREDENTIAL}")]
    Credential { message: String },
    /// Opening the AMQP connection (DNS, TLS, AMQP open) failed; nothing was sent.
    #[error("cannot connect to Event Hub '{hub}' in namespace {namespace}: {message}; {hint}")]
    Connect {
        namespace: String,
        hub: String,
        message: String,
        hint: &'static str,
    },
    /// One event does not fit in an empty batch. The SDK sizes a batch's envelope as a full copy
    /// of its first event, so in practice one event may use about half the hub's maximum message
    /// size. `sent` events (earlier partition-key groups, earlier batches of this one) were sent.
    #[error(
        "event {index} ({bytes} bytes, partition key {partition_key:?}) does not fit in an empty batch: with the \
         batch envelope it exceeds the hub's maximum message size (azure_messaging_eventhubs 0.15 counts the first \
         event of a batch twice, so one event gets about half of it); {sent} of {total} events were sent before it"
    )]
    EventTooLarge {
        index: usize,
        bytes: usize,
        partition_key: String,
        sent: usize,
        total: usize,
    },
    /// Creating, filling or sending a batch failed after `sent` events had been accepted. The
    /// first batch is where the token is fetched and the sender authorized, so a missing role or
    /// an `az login` problem shows up here with `sent` 0.
    #[error(
        "{stage} failed on Event Hub '{hub}' in namespace {namespace} after {sent} of {total} events were sent: \
         {message}; {hint}"
    )]
    Batch {
        namespace: String,
        hub: String,
        stage: &'static str,
        sent: usize,
        total: usize,
        message: String,
        hint: &'static str,
    },
}

/// Sends event bodies to an Event Hub, grouped by partition key, in batches sized to the hub's limit.
///
/// `namespace` is the fully qualified namespace (`<name>.servicebus.windows.net`); a bare `<name>`
/// gets the suffix appended. `events` are `(body, partition key)`; an empty key sends without one
/// (the hub picks the partition). `progress` is called with the number of events sent so far after
/// every batch. Returns the number of events sent (all of them). Nothing is contacted when
/// `events` is empty.
pub async fn send(
    namespace: &str,
    hub: &str,
    events: &[(String /*body*/, String /*partition key*/)],
    progress: &dyn Fn(usize /*sent so far*/),
) -> Result<usize, SendError> {
    let namespace = fully_qualified_namespace(namespace)?;
    let hub = validate_hub(hub)?;
    if events.is_empty() {
        return Ok(0);
    }
    let credential = AzureAuth::token_credential().map_err(|e| SendError::Credential { message: describe(&e) })?;
    let producer = ProducerClient::builder()
        .with_application_id("movielake".to_string())
        .open(&namespace, hub, credential)
        .await
        .map_err(|e| {
            let message = describe(&e);
            SendError::Connect {
                hint: hint_for(&e, &message),
                namespace: namespace.clone(),
                hub: hub.to_string(),
                message,
            }
        })?;
    tracing::info!(namespace = %namespace, hub, events = events.len(), "connected to Event Hubs");

    let sink = Producer(producer);
    let result = pack(&sink, events, progress).await;
    if let Err(e) = sink.0.close().await {
        // Everything packed was already accepted by the hub; failing to close loses nothing.
        tracing::warn!(namespace = %namespace, hub, error = %describe(&e), "closing the Event Hubs producer failed");
    }
    let total = events.len();
    result.map_err(|e| match e {
        PackError::TooLarge { index, sent } => SendError::EventTooLarge {
            index,
            bytes: events.get(index).map_or(0, |(body, _)| body.len()),
            partition_key: events.get(index).map(|(_, key)| key.clone()).unwrap_or_default(),
            sent,
            total,
        },
        PackError::Sdk { stage, sent, error } => {
            let message = describe(error.as_ref());
            SendError::Batch {
                hint: hint_for(error.as_ref(), &message),
                namespace: namespace.clone(),
                hub: hub.to_string(),
                stage,
                sent,
                total,
                message,
            }
        }
    })
}

/// `<name>` → `<name>.servicebus.windows.net`; a name with a dot is taken as already qualified
/// (other clouds use other suffixes). A scheme (`sb://`, `amqps://`) and trailing `/` are dropped.
fn fully_qualified_namespace(namespace: &str) -> Result<String, SendError> {
    let mut name = namespace.trim();
    for scheme in ["sb://", "amqps://", "https://"] {
        if let Some(rest) = name.strip_prefix(scheme) {
            name = rest;
        }
    }
    let name = name.trim_end_matches('/').to_ascii_lowercase();
    if name.is_empty() {
        return Err(SendError::InvalidTarget(
            "the namespace is empty; it must be <name>.servicebus.windows.net (or just <name>)".into(),
        ));
    }
    let valid = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && !name.starts_with(['.', '-'])
        && !name.ends_with(['.', '-'])
        && !name.contains("..");
    if !valid {
        return Err(SendError::InvalidTarget(format!(
            "namespace {namespace:?} is not a host name; it must be <name>.servicebus.windows.net (or just <name>)"
        )));
    }
    Ok(if name.contains('.') {
        name
    } else {
        format!("{name}{NAMESPACE_SUFFIX}")
    })
}

/// Event Hub names are letters, digits, `.`, `-` and `_`.
fn validate_hub(hub: &str) -> Result<&str, SendError> {
    let hub = hub.trim().trim_matches('/');
    if hub.is_empty()
        || !hub
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        return Err(SendError::InvalidTarget(format!(
            "Event Hub name {hub:?} is empty or has characters other than letters, digits, '.', '-' and '_'"
        )));
    }
    Ok(hub)
}

/// Event indices grouped by partition key: keys in first-seen order, indices in input order. An
/// empty key is `None` (no partition key).
fn group_by_partition_key(events: &[(String, String)]) -> Vec<(Option<&str>, Vec<usize>)> {
    let mut groups: Vec<(Option<&str>, Vec<usize>)> = Vec::new();
    let mut position: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (index, (_, key)) in events.iter().enumerate() {
        let slot = *position.entry(key.as_str()).or_insert_with(|| {
            groups.push(((!key.is_empty()).then_some(key.as_str()), Vec::new()));
            groups.len() - 1
        });
        if let Some((_, indices)) = groups.get_mut(slot) {
            indices.push(index);
        }
    }
    groups
}

// ---------------------------------------------------------------------------------------------
// Packing events into batches, over a small seam so it can be tested without a hub.

type BoxError = Box<dyn StdError + Send + Sync + 'static>;

trait BatchSink {
    type Batch<'a>
    where
        Self: 'a;
    async fn create_batch(&self, partition_key: Option<&str>) -> Result<Self::Batch<'_>, BoxError>;
    /// `Ok(false)`: the batch is full (or the event alone exceeds the limit, if it is empty).
    fn try_add<'a>(&'a self, batch: &Self::Batch<'a>, body: &str) -> Result<bool, BoxError>;
    async fn send_batch<'a>(&'a self, batch: Self::Batch<'a>) -> Result<(), BoxError>;
}

struct Producer(ProducerClient);

impl BatchSink for Producer {
    type Batch<'a> = EventDataBatch<'a>;

    async fn create_batch(&self, partition_key: Option<&str>) -> Result<EventDataBatch<'_>, BoxError> {
        let options = EventDataBatchOptions {
            partition_key: partition_key.map(str::to_string),
            ..Default::default()
        };
        Ok(self.0.create_batch(Some(options)).await?)
    }

    fn try_add<'a>(&'a self, batch: &EventDataBatch<'a>, body: &str) -> Result<bool, BoxError> {
        Ok(batch.try_add_event_data(body, None)?)
    }

    async fn send_batch<'a>(&'a self, batch: EventDataBatch<'a>) -> Result<(), BoxError> {
        Ok(self.0.send_batch(batch, None).await?)
    }
}

#[derive(Debug)]
enum PackError {
    TooLarge {
        index: usize,
        sent: usize,
    },
    Sdk {
        stage: &'static str,
        sent: usize,
        error: BoxError,
    },
}

/// Sends every event, one partition key at a time, flushing a batch when the next event does
/// not fit. Never sends an empty batch (the SDK panics on one).
async fn pack<S: BatchSink>(
    sink: &S,
    events: &[(String, String)],
    progress: &dyn Fn(usize),
) -> Result<usize, PackError> {
    let sdk = |stage: &'static str, sent: usize| move |error: BoxError| PackError::Sdk { stage, sent, error };
    let mut sent = 0;
    for (partition_key, indices) in group_by_partition_key(events) {
        let mut batch = sink
            .create_batch(partition_key)
            .await
            .map_err(sdk("creating a batch", sent))?;
        let mut in_batch = 0;
        for index in indices {
            let Some((body, _)) = events.get(index) else { continue };
            if sink
                .try_add(&batch, body)
                .map_err(sdk("adding an event to a batch", sent))?
            {
                in_batch += 1;
                continue;
            }
            if in_batch == 0 {
                return Err(PackError::TooLarge { index, sent });
            }
            sink.send_batch(batch).await.map_err(sdk("sending a batch", sent))?;
            sent += in_batch;
            progress(sent);
            batch = sink
                .create_batch(partition_key)
                .await
                .map_err(sdk("creating a batch", sent))?;
            if !sink
                .try_add(&batch, body)
                .map_err(sdk("adding an event to a batch", sent))?
            {
                return Err(PackError::TooLarge { index, sent });
            }
            in_batch = 1;
        }
        if in_batch > 0 {
            sink.send_batch(batch).await.map_err(sdk("sending a batch", sent))?;
            sent += in_batch;
            progress(sent);
        }
    }
    Ok(sent)
}

// ---------------------------------------------------------------------------------------------
// Error text

/// The error and its sources, each source only when the text so far does not already say it.
fn describe(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let part = e.to_string();
        if !part.is_empty() && !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = e.source();
    }
    text
}

fn hint_for(error: &(dyn StdError + 'static), message: &str) -> &'static str {
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(core) = e.downcast_ref::<azure_core::Error>()
            && matches!(core.kind(), azure_core::error::ErrorKind::Credential)
        {
            return HINT_CREDENTIAL;
        }
        source = e.source();
    }
    hint_for_message(message)
}

fn hint_for_message(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| m.contains(n));
    if has(&[
        "developertoolscredential",
        "managedidentitycredential",
        "az login",
        "azure cli",
    ]) {
        HINT_CREDENTIAL
    } else if has(&["unauthorized", "status code: 401", "status code: 403", "forbidden"]) {
        HINT_UNAUTHORIZED
    } else if has(&[
        "notfound",
        "not-found",
        "not found",
        "status code: 404",
        "could not be found",
    ]) {
        HINT_NOT_FOUND
    } else if has(&[
        "lookup",
        "resolve",
        "dns",
        "name or service",
        "connection refused",
        "timed out",
        "unreachable",
    ]) {
        HINT_NETWORK
    } else {
        HINT_GENERIC
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    fn events(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(b, k)| (b.to_string(), k.to_string())).collect()
    }

    #[test]
    fn bare_names_get_the_service_bus_suffix() {
        let fq = |n: &str| fully_qualified_namespace(n).ok();
        assert_eq!(
            fq("movielake-dev").as_deref(),
            Some("movielake-dev.servicebus.windows.net")
        );
        assert_eq!(fq(" MovieLake ").as_deref(), Some("movielake.servicebus.windows.net"));
        assert_eq!(
            fq("ns.servicebus.windows.net").as_deref(),
            Some("ns.servicebus.windows.net")
        );
        assert_eq!(
            fq("sb://ns.servicebus.windows.net/").as_deref(),
            Some("ns.servicebus.windows.net")
        );
        assert_eq!(fq("amqps://ns").as_deref(), Some("ns.servicebus.windows.net"));
        assert_eq!(
            fq("ns.servicebus.chinacloudapi.cn").as_deref(),
            Some("ns.servicebus.chinacloudapi.cn")
        );
    }

    #[test]
    fn malformed_namespaces_and_hubs_are_refused_with_the_expected_form() {
        for bad in ["", "  ", "ns/hub", "ns:5671", "-ns", "ns.", "a..b", "n s"] {
            let err = fully_qualified_namespace(bad).expect_err(bad).to_string();
            assert!(err.contains("<name>.servicebus.windows.net"), "{bad:?}: {err}");
        }
        assert_eq!(validate_hub("watch-events").ok(), Some("watch-events"));
        assert_eq!(validate_hub("/hub_1.a/").ok(), Some("hub_1.a"));
        for bad in ["", "a/b", "a b", "a?b"] {
            assert!(matches!(validate_hub(bad), Err(SendError::InvalidTarget(_))), "{bad:?}");
        }
    }

    #[test]
    fn grouping_keeps_first_seen_key_order_and_input_order_within_a_key() {
        let evs = events(&[("a", "k1"), ("b", "k2"), ("c", "k1"), ("d", ""), ("e", "k2"), ("f", "")]);
        let groups = group_by_partition_key(&evs);
        assert_eq!(
            groups,
            vec![(Some("k1"), vec![0, 2]), (Some("k2"), vec![1, 4]), (None, vec![3, 5])]
        );
        assert!(group_by_partition_key(&[]).is_empty());
    }

    /// A hub whose batches hold at most `max` body bytes; records what was sent.
    struct FakeHub {
        max: usize,
        sent: RefCell<Vec<(Option<String>, Vec<String>)>>,
        fail_send_number: Option<usize>,
    }

    struct FakeBatch {
        key: Option<String>,
        bodies: RefCell<Vec<String>>,
    }

    impl FakeHub {
        fn new(max: usize) -> Self {
            Self {
                max,
                sent: RefCell::new(Vec::new()),
                fail_send_number: None,
            }
        }
    }

    impl BatchSink for FakeHub {
        type Batch<'a> = FakeBatch;

        async fn create_batch(&self, partition_key: Option<&str>) -> Result<FakeBatch, BoxError> {
            Ok(FakeBatch {
                key: partition_key.map(String::from),
                bodies: RefCell::new(Vec::new()),
            })
        }

        fn try_add(&self, batch: &FakeBatch, body: &str) -> Result<bool, BoxError> {
            let mut bodies = batch.bodies.borrow_mut();
            let size: usize = bodies.iter().map(String::len).sum();
            if size + body.len() > self.max {
                return Ok(false);
            }
            bodies.push(body.to_string());
            Ok(true)
        }

        async fn send_batch(&self, batch: FakeBatch) -> Result<(), BoxError> {
            assert!(!batch.bodies.borrow().is_empty(), "an empty batch was sent");
            if self.fail_send_number == Some(self.sent.borrow().len()) {
                return Err("amqp:unauthorized-access".into());
            }
            self.sent.borrow_mut().push((batch.key, batch.bodies.into_inner()));
            Ok(())
        }
    }

    #[tokio::test]
    async fn batches_are_filled_per_key_and_flushed_when_full() {
        let hub = FakeHub::new(6);
        let evs = events(&[
            ("aaa", "k1"),
            ("bb", "k2"),
            ("ccc", "k1"),
            ("d", "k1"),
            ("eeee", "k2"),
            ("ff", ""),
        ]);
        let seen = RefCell::new(Vec::new());
        let sent = pack(&hub, &evs, &|n| seen.borrow_mut().push(n)).await.expect("pack");
        assert_eq!(sent, 6);
        let s = |v: &[&str]| v.iter().map(|b| b.to_string()).collect::<Vec<_>>();
        assert_eq!(
            hub.sent.into_inner(),
            vec![
                (Some("k1".into()), s(&["aaa", "ccc"])),
                (Some("k1".into()), s(&["d"])),
                (Some("k2".into()), s(&["bb", "eeee"])),
                (None, s(&["ff"])),
            ]
        );
        assert_eq!(seen.into_inner(), vec![2, 3, 5, 6]);
    }

    #[tokio::test]
    async fn an_event_too_large_for_an_empty_batch_is_named_by_index() {
        // First in a fresh batch.
        let hub = FakeHub::new(4);
        let evs = events(&[("ok", "k"), ("toolarge", "j")]);
        let err = pack(&hub, &evs, &|_| {}).await.expect_err("too large");
        assert!(matches!(err, PackError::TooLarge { index: 1, sent: 1 }), "{err:?}");
        // After a flush, mid-group.
        let hub = FakeHub::new(4);
        let evs = events(&[("abc", "k"), ("toolarge", "k")]);
        let err = pack(&hub, &evs, &|_| {}).await.expect_err("too large");
        assert!(matches!(err, PackError::TooLarge { index: 1, sent: 1 }), "{err:?}");
        assert_eq!(hub.sent.into_inner().len(), 1);
    }

    #[tokio::test]
    async fn a_failed_send_reports_how_many_were_sent_before_it() {
        let mut hub = FakeHub::new(3);
        hub.fail_send_number = Some(1);
        let evs = events(&[("abc", "k"), ("def", "k"), ("ghi", "k")]);
        let err = pack(&hub, &evs, &|_| {}).await.expect_err("send fails");
        match err {
            PackError::Sdk { stage, sent, error } => {
                assert_eq!((stage, sent), ("sending a batch", 1));
                assert_eq!(hint_for(error.as_ref(), &describe(error.as_ref())), HINT_UNAUTHORIZED);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn hints_follow_the_failure() {
        assert_eq!(
            hint_for_message("Management API returned status code: 401 (Unauthorized)"),
            HINT_UNAUTHORIZED
        );
        assert_eq!(
            hint_for_message("DeveloperToolsCredential: az not found"),
            HINT_CREDENTIAL
        );
        assert_eq!(
            hint_for_message("condition: NotFound, description: hub x"),
            HINT_NOT_FOUND
        );
        assert_eq!(hint_for_message("failed to lookup address information"), HINT_NETWORK);
        assert_eq!(hint_for_message("something else"), HINT_GENERIC);
        let credential = azure_core::Error::with_message(azure_core::error::ErrorKind::Credential, "no token");
        assert_eq!(hint_for(&credential, "no token"), HINT_CREDENTIAL);
    }

    #[test]
    fn messages_name_the_role_and_the_namespace_form() {
        let e = SendError::Connect {
            namespace: "ns.servicebus.windows.net".into(),
            hub: "h".into(),
            message: "AMQP Error: unauthorized".into(),
            hint: hint_for_message("unauthorized"),
        };
        assert!(e.to_string().contains("Azure Event Hubs Data Sender"), "{e}");
        let e = SendError::Credential {
            message: "no source".into(),
        };
        assert!(e.to_string().contains("az login"), "{e}");
        assert!(HINT_GENERIC.contains(".servicebus.windows.net") && HINT_GENERIC.contains("Data Sender"));
    }
}
