//! `POST /v1/accounts:import`: NDJSON registration bodies in, one result
//! per line out, streamed as each batch commits. A line is judged exactly
//! as `POST /v1/accounts` judges a body and may be as large as one; the
//! body as a whole is unbounded and read in constant memory.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufRead, AsyncReadExt, BufReader};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::io::StreamReader;

use super::extract::{Params, payload_too_large};
use super::{ApiError, ApiState};
use crate::bulk::{Import, ImportContext, ImportOptions, LineResult, Summary};
use crate::registration::{self, SpecError};
use chrono::Utc;

/// Imports one process runs at once; more are answered 429.
pub(super) const CONCURRENT_IMPORTS: usize = 2;
/// Accounts per transaction.
const BATCH_SIZE: usize = 1000;

/// What the import endpoint shares across requests.
pub(super) struct ImportLimits {
    pub permits: Arc<Semaphore>,
    /// The longest line: `api.max_body_bytes`, the limit of one body.
    pub max_line_bytes: usize,
    /// A body that sends nothing for this long is given up on
    /// (`api.idle_timeout`).
    pub stall_timeout: Duration,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// Judge every line and look its account up; write nothing.
    #[serde(default)]
    dry_run: bool,
}

/// One line of the answer: a line's result, then, last, the summary (and,
/// before it, `error` if the body could not be read to its end).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImportResultLine {
    /// The input line (from 1).
    pub line: Option<u64>,
    /// `created`, `reconnected`, `unchanged` (the account already holds
    /// exactly this line), `invalid` (refused; `field` names the field) or
    /// `failed` (its batch failed in the database; nothing of it was
    /// written).
    #[schema(value_type = Option<String>)]
    pub result: Option<String>,
    pub id: Option<String>,
    pub field: Option<String>,
    pub message: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub summary: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    pub error: Option<serde_json::Value>,
}

/// Register or reconnect many accounts: an NDJSON body, one registration
/// body (as `POST /v1/accounts` takes it) per line. The first line is
/// judged before the answer starts (refused: 400 or 422, nothing written);
/// every later line is judged alone and refused alone; valid lines are written in batches, one
/// transaction each, with the reconnect semantics of `POST /v1/accounts`.
/// Idempotent: a line the account already holds is `unchanged`.
#[utoipa::path(post, path = "/v1/accounts:import", tag = "accounts",
    params(ImportQuery),
    request_body(content = crate::registration::AccountSpec, content_type = "application/x-ndjson",
        description = "NDJSON: one registration body (the AccountSpec this schema describes) per line, each line at most api.max_body_bytes"),
    responses(
        (status = 200, description = "One result per line, in line order, as batches commit; then `{\"summary\": {...}}`",
            content_type = "application/x-ndjson", body = ImportResultLine),
        (status = 400, description = "The body is empty, or its first line is not a JSON object (`invalid_ndjson`)", body = super::error::ErrorBody),
        (status = 422, description = "The first line is not a valid registration body: `error.field` names the field, as for POST /v1/accounts; a later invalid line is answered in the stream instead", body = super::error::ErrorBody),
        (status = 401, body = super::error::ErrorBody),
        (status = 413, description = "The first line is longer than api.max_body_bytes (`payload_too_large`); later long lines are refused one by one", body = super::error::ErrorBody),
        (status = 415, description = "The body is not sent as application/x-ndjson, or is compressed (`unsupported_media_type`)", body = super::error::ErrorBody),
        (status = 429, description = "Imports are already running in this process; see Retry-After", body = super::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn import(
    State(state): State<ApiState>,
    Params(query): Params<ImportQuery>,
    request: Request,
) -> Result<Response, ApiError> {
    if !is_ndjson(request.headers().get(header::CONTENT_TYPE)) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as Content-Type: application/x-ndjson (one JSON object per line)",
        ));
    }
    // A compressed body would otherwise be read as text and refused as
    // "line 1 is not a JSON object", which hides the reason.
    if request
        .headers()
        .get(header::CONTENT_ENCODING)
        .is_some_and(|encoding| !encoding.as_bytes().eq_ignore_ascii_case(b"identity"))
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Content-Encoding is not supported: send the NDJSON body uncompressed",
        ));
    }
    let limits = &state.inner.import;
    let permit = limits.permits.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            "imports are already running on this server; try again shortly",
        )
        .with_retry_after(5)
    })?;
    let body = stalling_after(request.into_body().into_data_stream(), limits.stall_timeout);
    let mut reader = BufReader::new(StreamReader::new(body));
    // The first line decides whether this is NDJSON at all: if not, the
    // answer is an error status, not a stream.
    let replay = first_lines(&mut reader, limits.max_line_bytes).await?;
    let input = BufReader::new(std::io::Cursor::new(replay).chain(reader));
    let options = ImportOptions {
        batch_size: BATCH_SIZE,
        max_line_bytes: limits.max_line_bytes,
        dry_run: query.dry_run,
        exports: None,
    };
    let (sender, receiver) = mpsc::channel::<Bytes>(4);
    let task_state = state.clone();
    tokio::spawn(async move {
        let _permit = permit;
        run(task_state, options, input, sender).await;
    });
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver
            .recv()
            .await
            .map(|chunk| (Ok::<_, Infallible>(chunk), receiver))
    });
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Runs the import, sending each batch's results as they come. Stops when
/// the client goes away (what was committed stays).
async fn run<R: AsyncBufRead + Unpin + Send>(
    state: ApiState,
    options: ImportOptions,
    input: R,
    sender: mpsc::Sender<Bytes>,
) {
    let engine = &state.inner.engine;
    let context = ImportContext {
        pool: &state.inner.pool,
        keyring: engine.keyring(),
        policies: &engine.config().policies,
    };
    let mut import = Import::new(context, options, input);
    let mut failure = None;
    loop {
        match import.next_batch().await {
            Ok(Some(results)) => {
                if sender.send(lines_of(&results)).await.is_err() {
                    tracing::info!(summary = ?import.summary(), "import stopped: the client went away");
                    return;
                }
            }
            Ok(None) => break,
            Err(e) => {
                failure = Some(serde_json::json!({
                    "code": "body_read_failed",
                    "message": format!("the request body could not be read after line {}; the lines before were imported", e.after_line),
                    "after_line": e.after_line,
                }));
                break;
            }
        }
    }
    let elapsed = import.elapsed();
    let summary: Summary = match import.finish().await {
        Ok(summary) => summary,
        Err(e) => {
            tracing::warn!(error = %e, "refreshing statistics after an import failed");
            return;
        }
    };
    tracing::info!(?summary, seconds = elapsed.as_secs_f64(), "import finished");
    let mut tail = Vec::new();
    if let Some(error) = failure {
        tail.extend(serde_json::to_vec(&serde_json::json!({ "error": error })).unwrap_or_default());
        tail.push(b'\n');
    }
    tail.extend(serde_json::to_vec(&serde_json::json!({ "summary": summary })).unwrap_or_default());
    tail.push(b'\n');
    let _ = sender.send(Bytes::from(tail)).await;
}

fn lines_of(results: &[LineResult]) -> Bytes {
    let mut out = Vec::with_capacity(results.len() * 80);
    for result in results {
        serde_json::to_writer(&mut out, result).expect("results serialize");
        out.push(b'\n');
    }
    Bytes::from(out)
}

/// Reads up to and including the first non-blank line, which must be a
/// valid registration body, and returns the bytes read, to be read again by the import
/// (so line numbers stay the body's).
async fn first_lines<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max_line_bytes: usize,
) -> Result<Vec<u8>, ApiError> {
    let mut lines = crate::bulk::Lines::new(reader, max_line_bytes);
    let mut replay = Vec::new();
    loop {
        let line = lines.next_line().await.map_err(|_| {
            ApiError::bad_request("invalid_body", "the request body could not be read")
        })?;
        let Some(line) = line else {
            return Err(ApiError::bad_request(
                "invalid_ndjson",
                "the body holds no line: send one registration body (a JSON object) per line",
            ));
        };
        let Some(bytes) = line.bytes else {
            return Err(payload_too_large());
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            replay.push(b'\n');
            continue;
        }
        let is_object = bytes
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|&b| b == b'{')
            && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok();
        if !is_object {
            return Err(ApiError::bad_request(
                "invalid_ndjson",
                format!(
                    "line {} is not a JSON object: send one registration body per line",
                    line.number
                ),
            ));
        }
        // Judged as POST /v1/accounts judges a body: a body whose first
        // line is refused is refused whole, with the same answer.
        let judged = registration::parse_spec(bytes)
            .map_err(|e| match e {
                SpecError::Syntax(message) => (None, format!("is {message}")),
                SpecError::Field(e) => (Some(e.field), e.problem),
            })
            .and_then(|spec| {
                spec.into_new_account(Utc::now())
                    .map_err(|e| (Some(e.field), e.problem))
            });
        match judged {
            Ok(_) => {}
            Err((Some(field), problem)) => {
                return Err(ApiError::invalid_field(
                    &field,
                    format!("line {}: {field}: {problem}", line.number),
                ));
            }
            Err((None, problem)) => {
                return Err(ApiError::bad_request(
                    "invalid_ndjson",
                    format!("line {} {problem}", line.number),
                ));
            }
        }
        replay.extend_from_slice(bytes);
        replay.push(b'\n');
        return Ok(replay);
    }
}

/// The request body as a byte stream that fails when the client sends
/// nothing for `timeout` (a slow client does not hold an import open).
fn stalling_after(
    body: impl Stream<Item = Result<Bytes, axum::Error>> + Send + Unpin + 'static,
    timeout: Duration,
) -> impl Stream<Item = io::Result<Bytes>> + Send + Unpin + 'static {
    Box::pin(futures::stream::unfold(
        Some(body),
        move |body| async move {
            let mut body = body?;
            match tokio::time::timeout(timeout, body.next()).await {
                Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(body))),
                Ok(Some(Err(e))) => Some((Err(io::Error::other(e)), None)),
                Ok(None) => None,
                Err(_) => Some((
                    Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client sent nothing for too long",
                    )),
                    None,
                )),
            }
        },
    ))
}

fn is_ndjson(content_type: Option<&header::HeaderValue>) -> bool {
    let Some(value) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    [
        "application/x-ndjson",
        "application/ndjson",
        "application/jsonl",
        "application/x-jsonlines",
    ]
    .iter()
    .any(|accepted| essence.eq_ignore_ascii_case(accepted))
}
