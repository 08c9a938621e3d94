//! Shared access signatures: a fixed SAS from the operator, or an account SAS signed locally
//! with Azurite's published development key.

use super::*;

/// Appends a SAS to the URL of every request (a per-call policy: it runs once per operation,
/// before the retry policy, so retries reuse the signed URL).
pub(super) struct SasPolicy {
    source: SasSource,
}

enum SasSource {
    Fixed(String),
    /// Signed locally with Azurite's development key; re-signed when close to expiry.
    Azurite(Mutex<Option<(String, DateTime<Utc>)>>),
}

impl fmt::Debug for SasPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SasPolicy(<redacted>)")
    }
}

impl SasPolicy {
    pub(super) fn fixed(token: String) -> Self {
        Self {
            source: SasSource::Fixed(token),
        }
    }

    pub(super) fn azurite() -> Self {
        Self {
            source: SasSource::Azurite(Mutex::new(None)),
        }
    }

    fn token(&self) -> String {
        match &self.source {
            SasSource::Fixed(token) => token.clone(),
            SasSource::Azurite(cache) => {
                let now = Utc::now();
                let mut cache = cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                match cache.as_ref() {
                    Some((token, expiry)) if *expiry - now > chrono::Duration::hours(1) => token.clone(),
                    _ => {
                        let expiry = now + chrono::Duration::days(1);
                        let token = azurite_account_sas(expiry);
                        *cache = Some((token.clone(), expiry));
                        token
                    }
                }
            }
        }
    }
}

#[async_trait]
impl Policy for SasPolicy {
    async fn send(&self, ctx: &Context, request: &mut Request, next: &[Arc<dyn Policy>]) -> PolicyResult {
        let token = self.token();
        let url = request.url_mut();
        let query = match url.query() {
            Some(q) if q.contains(&token) => None,
            Some(q) if !q.is_empty() => Some(format!("{q}&{token}")),
            _ => Some(token),
        };
        if let Some(query) = query {
            // Set as a raw string: re-encoding through a query builder would corrupt `sig`.
            url.set_query(Some(&query));
        }
        match next.split_first() {
            Some((first, rest)) => first.send(ctx, request, rest).await,
            None => Err(azure_core::Error::with_message(
                ErrorKind::Other,
                "SAS policy must not be the last policy in the pipeline",
            )),
        }
    }
}

const AZURITE_ACCOUNT: &str = "devstoreaccount1";
/// Azurite's published development key (documented, not a secret).
pub(crate) const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const AZURITE_SAS_VERSION: &str = "2021-08-06";

/// An account SAS for Azurite's development account: blob service, all resource types,
/// read/add/create/write/delete/list, http or https, expiring at `expiry`.
pub(super) fn azurite_account_sas(expiry: DateTime<Utc>) -> String {
    let (services, resource_types, permissions, protocol) = ("b", "sco", "racwdl", "https,http");
    let expiry = expiry.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    // Version 2020-12-06 and later: account, permissions, services, resource types, start,
    // expiry, IP, protocol, version, encryption scope, and a final newline.
    let string_to_sign = format!(
        "{AZURITE_ACCOUNT}\n{permissions}\n{services}\n{resource_types}\n\n{expiry}\n\n{protocol}\n{AZURITE_SAS_VERSION}\n\n"
    );
    let signature = sign(AZURITE_KEY, &string_to_sign);
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "sv={AZURITE_SAS_VERSION}&ss={services}&srt={resource_types}&sp={permissions}&se={}&spr={}&sig={}",
        enc(&expiry),
        enc(protocol),
        enc(&signature)
    )
}

/// Base64 HMAC-SHA256 of `message` under the base64 account key.
fn sign(base64_key: &str, message: &str) -> String {
    let engine = base64::engine::general_purpose::STANDARD;
    // The key is a compile-time constant; if it ever failed to decode, the service would reject
    // the signature, which surfaces as an authorization error rather than a panic.
    let key = engine.decode(base64_key).unwrap_or_default();
    let mut mac = match <Hmac<Sha256> as hmac::Mac>::new_from_slice(&key) {
        Ok(mac) => mac,
        Err(_) => return String::new(), // unreachable: HMAC takes keys of any length
    };
    mac.update(message.as_bytes());
    engine.encode(mac.finalize().into_bytes())
}
