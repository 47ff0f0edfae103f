//! Delivery of status-change events to the configured webhook, signed per
//! the Standard Webhooks specification: `webhook-id` (the event's stable id,
//! the receiver's idempotency key), `webhook-timestamp` (unix seconds) and
//! `webhook-signature` (`v1,` + base64 HMAC-SHA256 of `id.timestamp.body`).
//! At least once: an event is retried with backoff until a 2xx answer.

use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use secrecy::ExposeSecret;
use serde::Serialize;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::config::WebhookSettings;
use crate::crypto::SigningKey;
use crate::policy::retry_delay;
use crate::store::events::{self, EventRow};

/// The body of every delivery, and of each item of `GET /v1/events`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventPayload {
    /// `account.status_changed`; or `account.inactive` / `account.active`
    /// when the platform reports the account itself (in)active while its
    /// status stays the same (`from_status` = `to_status`); or
    /// `account.operator_action` for what an operator did in the console
    /// (`reason` says what, `operator_key_id` who).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// When the change happened (RFC 3339).
    pub timestamp: chrono::DateTime<Utc>,
    pub data: EventData,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventData {
    /// Stable per event: the idempotency key (also sent as `webhook-id`).
    pub event_id: uuid::Uuid,
    /// Position in the event stream; `GET /v1/events?after=` takes it.
    pub sequence: i64,
    pub account_id: String,
    pub workspace_id: String,
    pub provider: String,
    /// None when the account was just connected.
    pub from_status: Option<String>,
    pub to_status: String,
    pub reason: String,
    /// `account.operator_action` only: the id of the operator key (never
    /// the key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator_key_id: Option<String>,
}

impl EventPayload {
    pub fn of(event: &EventRow) -> Self {
        let kind = match event.kind.as_str() {
            "account_inactive" => "account.inactive",
            "account_active" => "account.active",
            "operator_action" => "account.operator_action",
            _ => "account.status_changed",
        };
        Self {
            kind,
            timestamp: event.occurred_at,
            data: EventData {
                event_id: event.event_id,
                sequence: event.seq.unwrap_or_default(),
                account_id: event.account_id.clone(),
                workspace_id: event.workspace_id.clone(),
                provider: event.provider.clone(),
                from_status: event.from_status.clone(),
                to_status: event.to_status.clone(),
                reason: event.reason.clone(),
                operator_key_id: event.operator_key_id.clone(),
            },
        }
    }
}

pub struct Dispatcher {
    pool: PgPool,
    url: url::Url,
    key: SigningKey,
    client: reqwest::Client,
    settings: WebhookSettings,
}

impl Dispatcher {
    /// None when no webhook is configured.
    pub fn from_settings(settings: &WebhookSettings, pool: PgPool) -> anyhow::Result<Option<Self>> {
        let Some(url) = settings.url.clone() else {
            return Ok(None);
        };
        let secret = settings
            .secret
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("webhooks.secret is required with webhooks.url"))?;
        let key = SigningKey::parse(secret.expose_secret())
            .map_err(|problem| anyhow::anyhow!("webhooks.secret: {problem}"))?;
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tokenwarden/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Some(Self {
            pool,
            url,
            key,
            client,
            settings: settings.clone(),
        }))
    }

    /// Delivers until `stop`; deliveries in flight finish first.
    pub async fn run(self, stop: CancellationToken) {
        let mut failures = 0u32;
        while !stop.is_cancelled() {
            match self.deliver_due().await {
                Ok(0) => {
                    failures = 0;
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = tokio::time::sleep(self.settings.poll_interval) => {}
                    }
                }
                Ok(_) => failures = 0,
                Err(e) => {
                    failures += 1;
                    let pause = retry_delay(
                        failures,
                        Duration::from_secs(1),
                        Duration::from_secs(30),
                        rand::random(),
                    );
                    tracing::warn!(error = %e, "webhook delivery: outbox not readable");
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }

    /// One round: sequence new events, take the due ones, send them.
    /// Returns how many were attempted.
    pub async fn deliver_due(&self) -> Result<usize, sqlx::Error> {
        events::assign_sequence(&self.pool).await?;
        let lease = self.settings.timeout + Duration::from_secs(10);
        let batch = (self.settings.concurrency * 4) as i64;
        let due = events::claim_for_delivery(&self.pool, batch, lease).await?;
        let attempted = due.len();
        let results: Vec<Result<(), sqlx::Error>> = futures::stream::iter(due)
            .map(|event| self.deliver(event))
            .buffer_unordered(self.settings.concurrency)
            .collect()
            .await;
        results.into_iter().collect::<Result<Vec<()>, _>>()?;
        Ok(attempted)
    }

    async fn deliver(&self, event: EventRow) -> Result<(), sqlx::Error> {
        let body = serde_json::to_vec(&EventPayload::of(&event)).expect("payload serializes");
        let id = event.event_id.to_string();
        let timestamp = Utc::now().timestamp();
        let answer = self
            .client
            .post(self.url.clone())
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", self.key.sign(&id, timestamp, &body))
            .body(body)
            .send()
            .await;
        let failure = match answer {
            Ok(reply) if reply.status().is_success() => None,
            Ok(reply) => Some(format!("webhook answered {}", reply.status().as_u16())),
            // reqwest's message carries the URL, which is configuration,
            // not a secret; the body is never echoed.
            Err(e) if e.is_timeout() => Some("webhook timed out".to_owned()),
            Err(_) => Some("webhook unreachable".to_owned()),
        };
        crate::metrics::record_webhook_delivery(failure.is_none());
        match failure {
            None => events::mark_delivered(&self.pool, event.id).await,
            Some(error) => {
                let wait = retry_delay(
                    event.delivery_attempts.max(1) as u32,
                    self.settings.retry_base,
                    self.settings.retry_cap,
                    rand::random(),
                );
                tracing::warn!(event_id = %id, attempts = event.delivery_attempts, %error, "webhook delivery failed; will retry");
                let retry_at = Utc::now() + crate::policy::delta(wait);
                events::mark_failed(&self.pool, event.id, retry_at, &error).await
            }
        }
    }
}
