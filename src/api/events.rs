//! `GET /v1/events`: the status-change outbox for pull consumers.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::extract::Params;
use super::params::{decode_events_cursor, limit};
use super::{ApiError, ApiState};
use crate::store::events;
use crate::webhooks::EventPayload;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// `next_cursor` of the previous page (an event's `sequence`); omit to
    /// read from the beginning.
    #[param(pattern = r"^[0-9]{0,18}$")]
    after: Option<String>,
    /// 1 to 500; default 100.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventPage {
    /// In sequence order; the same payloads the webhook receives.
    pub items: Vec<EventPayload>,
    /// Pass as `after` next time; when there was nothing new, the same
    /// position again.
    pub next_cursor: String,
}

/// Status changes after a cursor, oldest first. A consumer that stores
/// `next_cursor` sees every change exactly once, in order.
#[utoipa::path(get, path = "/v1/events", tag = "events",
    params(EventsQuery),
    responses(
        (status = 200, body = EventPage),
        (status = 401, body = super::error::ErrorBody),
        (status = 422, body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<ApiState>,
    Params(q): Params<EventsQuery>,
) -> Result<Json<EventPage>, ApiError> {
    let after = decode_events_cursor(q.after.as_deref())?;
    let limit = limit(q.limit, 100, 500)?;
    let pool = &state.inner.pool;
    events::assign_sequence(pool).await?;
    let rows = events::list_after(pool, after, limit).await?;
    let next = rows.last().and_then(|r| r.seq).unwrap_or(after);
    Ok(Json(EventPage {
        items: rows.iter().map(EventPayload::of).collect(),
        next_cursor: next.to_string(),
    }))
}
