//! The API calls that name a connected member or page, with a bearer token
//! the same fake issued:
//!
//! - `GET /v2/userinfo` (OpenID Connect): `{sub, name, given_name,
//!   family_name, picture, locale}`, plus `email` and `email_verified` with
//!   the `email` scope; needs `openid`.
//! - `GET /rest/organizationAcls?q=roleAssignee[&role][&state][&start]
//!   [&count]`: the member's roles on pages, `{elements:[{organization,
//!   role, state, roleAssignee}], paging:{start, count, links, total}}`.
//! - `GET /rest/organizations/{id}`: `{id, localizedName, vanityName,
//!   name}`.
//!
//! Versioned (`/rest/`) calls are refused without a `LinkedIn-Version:
//! YYYYMM[.RR]` header, as LinkedIn refuses them. Both need
//! `r_organization_admin` or `rw_organization_admin`. Errors come in
//! LinkedIn's shape `{status, serviceErrorCode?, code?, message}`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{LinkedinTokenState, Member, Shared};
use crate::server::bearer;

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v2/userinfo", axum::routing::get(userinfo))
        .route(
            "/rest/organizationAcls",
            axum::routing::get(organization_acls),
        )
        .route("/rest/organizations/{id}", axum::routing::get(organization))
}

/// A refusal in LinkedIn's shape.
struct ApiError(StatusCode, Value);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(self.1)).into_response()
    }
}

fn api_error(status: StatusCode, body: Value) -> ApiError {
    ApiError(status, body)
}

/// The member behind the request's bearer token, or LinkedIn's 401.
fn member(shared: &Shared, headers: &HeaderMap) -> Result<Member, ApiError> {
    let presented = bearer(headers).unwrap_or("");
    let access = shared.access.lock().unwrap();
    let now = chrono::Utc::now().timestamp();
    let Some(info) = access.get(presented) else {
        return Err(api_error(
            StatusCode::UNAUTHORIZED,
            json!({"status": 401, "serviceErrorCode": 65600, "code": "INVALID_ACCESS_TOKEN", "message": "Invalid access token"}),
        ));
    };
    if info.state == LinkedinTokenState::Revoked {
        return Err(api_error(
            StatusCode::UNAUTHORIZED,
            json!({"status": 401, "serviceErrorCode": 65601, "code": "REVOKED_ACCESS_TOKEN", "message": "The token used in the request has been revoked by the user"}),
        ));
    }
    if info.state == LinkedinTokenState::Expired || info.expires_at <= now {
        return Err(api_error(
            StatusCode::UNAUTHORIZED,
            json!({"status": 401, "serviceErrorCode": 65602, "code": "EXPIRED_ACCESS_TOKEN", "message": "The token used in the request has expired"}),
        ));
    }
    // A token issued without a consent screen names nobody the API knows.
    info.member.clone().ok_or_else(|| {
        api_error(
            StatusCode::UNAUTHORIZED,
            json!({"status": 401, "serviceErrorCode": 65600, "code": "INVALID_ACCESS_TOKEN", "message": "Invalid access token"}),
        )
    })
}

fn not_enough_permissions(resource: &str) -> ApiError {
    api_error(
        StatusCode::FORBIDDEN,
        json!({"status": 403, "serviceErrorCode": 100, "code": "ACCESS_DENIED", "message": format!("Not enough permissions to access: {resource}")}),
    )
}

/// LinkedIn refuses a versioned call without a version, or with one that
/// is not `YYYYMM` or `YYYYMM.RR`.
fn versioned(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(version) = headers.get("LinkedIn-Version") else {
        return Err(api_error(
            StatusCode::BAD_REQUEST,
            json!({"status": 400, "code": "VERSION_MISSING", "message": "A version must be present. Please specify a version by adding the LinkedIn-Version header."}),
        ));
    };
    let version = version.to_str().unwrap_or("");
    let (month, revision) = version.split_once('.').unwrap_or((version, "00"));
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(month, 6) || !digits(revision, 2) {
        return Err(api_error(
            StatusCode::from_u16(426).expect("426 is a status"),
            json!({"status": 426, "code": "NONEXISTENT_VERSION", "message": format!("Requested version {version} is not active")}),
        ));
    }
    Ok(())
}

fn page_admin(member: &Member) -> bool {
    member.has_scope("r_organization_admin") || member.has_scope("rw_organization_admin")
}

async fn userinfo(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let member = member(&shared, &headers)?;
    if !member.has_scope("openid") {
        return Err(not_enough_permissions("userinfo.GET.NO_VERSION"));
    }
    let user = &member.user;
    let (given, family) = user.name.split_once(' ').unwrap_or((&user.name, ""));
    let mut answer = json!({"sub": user.id});
    if member.has_scope("profile") {
        answer["name"] = json!(user.name);
        answer["given_name"] = json!(given);
        answer["family_name"] = json!(family);
        answer["picture"] = json!(format!(
            "https://media.licdn.com/dms/image/{}/profile-displayphoto-shrink_100_100/0/",
            user.id
        ));
        answer["locale"] = json!({"country": "US", "language": "en"});
    }
    if member.has_scope("email") {
        answer["email"] = json!(format!("{}@example.com", user.handle));
        answer["email_verified"] = json!(true);
    }
    Ok(axum::Json(answer).into_response())
}

async fn organization_acls(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    versioned(&headers)?;
    let member = member(&shared, &headers)?;
    if query.get("q").map(String::as_str) != Some("roleAssignee") {
        return Err(api_error(
            StatusCode::BAD_REQUEST,
            json!({"status": 400, "code": "ILLEGAL_ARGUMENT", "message": "Invalid query parameters passed to request"}),
        ));
    }
    if !page_admin(&member) {
        return Err(not_enough_permissions(
            "organizationAcls.FINDER-roleAssignee",
        ));
    }
    let number = |key: &str, default: usize| {
        query
            .get(key)
            .map_or(Some(default), |v| v.parse::<usize>().ok())
    };
    let (Some(start), Some(count)) = (number("start", 0), number("count", 10)) else {
        return Err(api_error(
            StatusCode::BAD_REQUEST,
            json!({"status": 400, "code": "ILLEGAL_ARGUMENT", "message": "Invalid paging parameters"}),
        ));
    };
    // Every role held is approved here; `state=REQUESTED` finds none.
    let wanted_state = query.get("state").map(String::as_str);
    let roles: Vec<Value> = shared
        .roles
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.member_id == member.user.id)
        .filter(|r| query.get("role").is_none_or(|want| *want == r.role))
        .filter(|_| wanted_state.is_none_or(|s| s == "APPROVED"))
        .map(|r| {
            json!({
                "organization": format!("urn:li:organization:{}", r.organization.id),
                "role": r.role,
                "state": "APPROVED",
                "roleAssignee": format!("urn:li:person:{}", r.member_id),
            })
        })
        .collect();
    let total = roles.len();
    let elements: Vec<Value> = roles.into_iter().skip(start).take(count).collect();
    Ok(axum::Json(json!({
        "elements": elements,
        "paging": {"start": start, "count": count, "links": [], "total": total},
    }))
    .into_response())
}

async fn organization(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    versioned(&headers)?;
    let member = member(&shared, &headers)?;
    if !page_admin(&member) {
        return Err(not_enough_permissions("organizations.GET"));
    }
    let found = id.parse::<u64>().ok().and_then(|id| {
        shared
            .roles
            .lock()
            .unwrap()
            .iter()
            .find(|r| r.organization.id == id)
            .map(|r| r.organization.clone())
    });
    let Some(organization) = found else {
        return Err(api_error(
            StatusCode::NOT_FOUND,
            json!({"status": 404, "code": "NOT_FOUND", "message": format!("Organization {id} not found")}),
        ));
    };
    Ok(axum::Json(json!({
        "id": organization.id,
        "localizedName": organization.localized_name,
        "vanityName": organization.vanity_name,
        "name": {
            "localized": {"en_US": organization.localized_name},
            "preferredLocale": {"country": "US", "language": "en"},
        },
    }))
    .into_response())
}
