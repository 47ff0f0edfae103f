//! Facebook Login, for Facebook Pages and Instagram with Facebook Login:
//!
//! 1. the dialog at `authorize_url`, scopes comma-separated;
//! 2. `GET token_url?client_id&redirect_uri&client_secret&code`: a user
//!    token (a code is single-use: "This authorization code has been used");
//! 3. `GET token_url?grant_type=fb_exchange_token&client_id&client_secret
//!    &fb_exchange_token=..`: the long-lived user token. Page tokens derived
//!    from it never expire; from a short-lived one they last an hour;
//! 4. `GET {api_url}me/permissions`: the permissions granted (the user may
//!    decline some in the dialog);
//! 5. `GET {api_url}me/accounts?fields=..&limit=100`, following the cursor a
//!    bounded number of times: the Pages, each with its Page token.
//!
//! `extras.page_ids` names the Pages to register (for Instagram, a Page or
//! the Instagram account linked to it). Without it the user chooses: the
//! long-lived user token stays encrypted with the session, and `choose`
//! lists the Pages again with it.
//!
//! A Facebook Page is registered with external_id the Page id, `meta.page_id`
//! and its Page token without expiry (health-checked with `debug_token`).
//! An Instagram account linked to a Page is registered with external_id its
//! own id, `meta.ig_user_id` and `meta.page_id`, and the Page's token (the
//! Instagram Graph API with Facebook Login takes Page tokens).

use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use url::Url;

use super::answers::{IssuedToken, Step, issued_token, usable_id};
use super::pages::{self, Page};
use super::{App, get, hide, required};
use crate::config::ProviderSettings;
use crate::connect::{
    Authorization, Begin, Choice, ChoiceOption, Chosen, Complete, ConnectError, Connected,
    ConnectedAccount, Connector, SessionSecrets,
};
use crate::domain::Provider;
use crate::providers::HttpClient;
use crate::registration::{AccountSpec, CredentialsSpec};

/// Pages asked for per listing call (Graph's maximum page size).
const PAGE_LIMIT: &str = "100";
/// Listing calls per connect: 1,000 Pages at most.
const MAX_LISTINGS: usize = 10;
/// Pages one connect may name.
const MAX_PAGE_IDS: usize = 100;

pub struct FacebookLogin {
    provider: Provider,
    app: App,
    dialog: Url,
    token_url: Url,
    api_url: Url,
    http: HttpClient,
}

/// A Page (or its Instagram account) the user may connect.
struct Candidate {
    option: ChoiceOption,
    page: Page,
}

impl FacebookLogin {
    pub fn from_settings(
        provider: Provider,
        section: &ProviderSettings,
        http: HttpClient,
    ) -> Result<Self, String> {
        Ok(Self {
            provider,
            app: App::from_settings(provider, section)?,
            dialog: required(&section.authorize_url, provider, "authorize_url")?,
            token_url: required(&section.token_url, provider, "token_url")?,
            api_url: required(&section.api_url, provider, "api_url")?,
            http,
        })
    }

    fn instagram(&self) -> bool {
        self.provider == Provider::InstagramFacebookLogin
    }

    async fn user_token(
        &self,
        code: &SecretString,
        redirect_uri: &Url,
    ) -> Result<IssuedToken, ConnectError> {
        let mut url = self.token_url.clone();
        url.query_pairs_mut()
            .append_pair("client_id", &self.app.client_id)
            .append_pair("redirect_uri", redirect_uri.as_str())
            .append_pair("client_secret", self.app.client_secret.expose_secret())
            .append_pair("code", code.expose_secret());
        let body = get(&self.http, url, Step::CodeExchange).await?;
        issued_token(&body, Step::CodeExchange)
    }

    async fn long_lived(&self, user_token: &SecretString) -> Result<IssuedToken, ConnectError> {
        let mut url = self.token_url.clone();
        url.query_pairs_mut()
            .append_pair("grant_type", "fb_exchange_token")
            .append_pair("client_id", &self.app.client_id)
            .append_pair("client_secret", self.app.client_secret.expose_secret())
            .append_pair("fb_exchange_token", user_token.expose_secret());
        let body = get(&self.http, url, Step::LongLivedExchange).await?;
        issued_token(&body, Step::LongLivedExchange)
    }

    /// A Graph URL under `api_url`, called with the user token.
    fn graph_url(&self, path: &str, user_token: &SecretString) -> Result<Url, ConnectError> {
        let mut url = self.api_url.join(path).map_err(|_| {
            ConnectError::not_configured(format!(
                "providers.{}.api_url cannot hold {path}",
                self.provider.config_key()
            ))
        })?;
        url.query_pairs_mut()
            .append_pair("access_token", user_token.expose_secret())
            .append_pair("appsecret_proof", &self.app.appsecret_proof(user_token));
        Ok(url)
    }

    /// `{"data":[{"permission","status"}]}`: the granted ones.
    async fn granted_scopes(&self, user_token: &SecretString) -> Result<Vec<String>, ConnectError> {
        let url = self.graph_url("me/permissions", user_token)?;
        let body = get(&self.http, url, Step::Permissions).await?;
        let Some(Value::Array(items)) = body.get("data") else {
            return Err(Step::Permissions.refused("data is missing"));
        };
        let mut granted: Vec<String> = Vec::new();
        for item in items {
            let permission = item.get("permission").and_then(Value::as_str);
            let status = item.get("status").and_then(Value::as_str);
            if let (Some(permission), Some("granted")) = (permission, status)
                && usable_id(permission)
                && !granted.iter().any(|g| g == permission)
            {
                granted.push(permission.to_owned());
            }
        }
        Ok(granted)
    }

    async fn pages(&self, user_token: &SecretString) -> Result<Vec<Page>, ConnectError> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_LISTINGS {
            let mut url = self.graph_url("me/accounts", user_token)?;
            url.query_pairs_mut()
                .append_pair("fields", pages::FIELDS)
                .append_pair("limit", PAGE_LIMIT);
            if let Some(cursor) = &after {
                url.query_pairs_mut().append_pair("after", cursor);
            }
            let listed = pages::parse(&get(&self.http, url, Step::Pages).await?)?;
            all.extend(listed.pages);
            match listed.after {
                Some(cursor) => after = Some(cursor),
                None => return Ok(all),
            }
        }
        tracing::warn!(
            provider = %self.provider,
            listed = all.len(),
            "the user manages more Pages than one connection lists; the rest are left out"
        );
        Ok(all)
    }

    /// What the user may connect: Pages with a Page token, or (Instagram)
    /// the Instagram accounts linked to them.
    fn candidates(&self, pages: Vec<Page>) -> Result<Vec<Candidate>, ConnectError> {
        if pages.is_empty() {
            return Err(ConnectError::identity_failed(
                "the Facebook user manages no Page, or granted this app access to none",
            ));
        }
        let with_token: Vec<Page> = pages
            .into_iter()
            .filter(|p| p.access_token.is_some())
            .collect();
        if with_token.is_empty() {
            return Err(ConnectError::identity_failed(
                "none of the user's Pages came with a Page token: the user needs a role on the Page that can create content",
            ));
        }
        let mut candidates: Vec<Candidate> = Vec::new();
        for page in with_token {
            let option = if self.instagram() {
                let Some(ig) = &page.instagram else { continue };
                let handle = ig.username.as_deref().map(|u| format!("@{u}"));
                let name = match (handle, &page.name) {
                    (Some(handle), Some(page_name)) => format!("{handle} ({page_name})"),
                    (Some(handle), None) => handle,
                    (None, _) => ig.name.clone().unwrap_or_else(|| ig.id.clone()),
                };
                ChoiceOption {
                    id: ig.id.clone(),
                    name,
                }
            } else {
                ChoiceOption {
                    id: page.id.clone(),
                    name: page.name.clone().unwrap_or_else(|| page.id.clone()),
                }
            };
            if !candidates.iter().any(|c| c.option.id == option.id) {
                candidates.push(Candidate { option, page });
            }
        }
        if candidates.is_empty() {
            return Err(ConnectError::identity_failed(
                "none of the user's Pages has a linked Instagram professional account (or instagram_basic was not granted)",
            ));
        }
        Ok(candidates)
    }

    /// The candidates `wanted` names, each once.
    fn select(
        &self,
        candidates: Vec<Candidate>,
        wanted: &[String],
    ) -> Result<Vec<Candidate>, ConnectError> {
        if let Some(missing) = wanted.iter().find(|id| {
            !candidates
                .iter()
                .any(|c| c.option.id == **id || c.page.id == **id)
        }) {
            return Err(ConnectError::account_mismatch(format!(
                "page {:?} is not among the Pages the user granted this app",
                missing.chars().take(64).collect::<String>()
            )));
        }
        Ok(candidates
            .into_iter()
            .filter(|c| {
                wanted
                    .iter()
                    .any(|id| c.option.id == *id || c.page.id == *id)
            })
            .collect())
    }

    fn account(
        &self,
        candidate: Candidate,
        workspace_id: &str,
        scopes: &[String],
    ) -> ConnectedAccount {
        let Candidate { option, page } = candidate;
        let token = page
            .access_token
            .as_ref()
            .map(|t| t.expose_secret().to_owned())
            .unwrap_or_default();
        let (handle, display_name, avatar_url, meta) = match (&page.instagram, self.instagram()) {
            (Some(ig), true) => (
                ig.username.clone(),
                ig.name.clone().or_else(|| ig.username.clone()),
                ig.picture_url.clone(),
                json!({"page_id": page.id, "ig_user_id": ig.id}),
            ),
            _ => (
                None,
                page.name.clone(),
                page.picture_url.clone(),
                json!({"page_id": page.id}),
            ),
        };
        ConnectedAccount {
            spec: AccountSpec {
                workspace_id: workspace_id.to_owned(),
                provider: self.provider,
                external_id: option.id,
                handle,
                display_name,
                avatar_url,
                connection_type: None,
                scopes: scopes.to_vec(),
                meta: Some(meta),
                default_board_id: None,
                // A Page token from a long-lived user token has no expiry:
                // it is checked, never refreshed.
                credentials: CredentialsSpec {
                    access_token: token,
                    refresh_token: None,
                    expires_in: None,
                    token_expires_at: None,
                    refresh_token_expires_at: None,
                    dpop_private_jwk: None,
                },
            },
            warnings: Vec::new(),
        }
    }

    async fn complete_in(&self, complete: Complete<'_>) -> Result<Connected, ConnectError> {
        let wanted = page_ids(complete.extras)?;
        let short = self
            .user_token(complete.code, complete.redirect_uri)
            .await?;
        let long = self
            .long_lived(&short.access_token)
            .await
            .map_err(|e| hide(e, &[&short.access_token]))?;
        let user_token = &long.access_token;
        let found = async {
            let scopes = self.granted_scopes(user_token).await?;
            let candidates = self.candidates(self.pages(user_token).await?)?;
            Ok::<_, ConnectError>((scopes, candidates))
        }
        .await
        .map_err(|e| hide(e, &[&short.access_token, user_token]))?;
        let (scopes, candidates) = found;
        match wanted {
            Some(ids) => Ok(Connected::Accounts(
                self.select(candidates, &ids)?
                    .into_iter()
                    .map(|c| self.account(c, complete.workspace_id, &scopes))
                    .collect(),
            )),
            None => Ok(Connected::Choose(Choice {
                options: candidates.into_iter().map(|c| c.option).collect(),
                secrets: SessionSecrets {
                    user_access_token: Some(long.access_token),
                    ..SessionSecrets::default()
                },
                context: json!({ "scopes": scopes }),
            })),
        }
    }

    async fn choose_in(&self, chosen: Chosen<'_>) -> Result<Vec<ConnectedAccount>, ConnectError> {
        let user_token = chosen.secrets.user_access_token.as_ref().ok_or_else(|| {
            ConnectError::invalid_request("the session holds no Facebook user token to choose with")
        })?;
        let scopes: Vec<String> = chosen
            .context
            .get("scopes")
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let candidates = async { self.candidates(self.pages(user_token).await?) }
            .await
            .map_err(|e| hide(e, &[user_token]))?;
        Ok(self
            .select(candidates, chosen.selected)?
            .into_iter()
            .map(|c| self.account(c, chosen.workspace_id, &scopes))
            .collect())
    }
}

/// `extras.page_ids`: None when absent, else 1 to 100 Page ids.
fn page_ids(extras: &Value) -> Result<Option<Vec<String>>, ConnectError> {
    let refused = || {
        ConnectError::invalid_request(format!(
            "extras.page_ids: an array of 1 to {MAX_PAGE_IDS} Page ids (strings without spaces)"
        ))
    };
    match extras.get("page_ids") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) if (1..=MAX_PAGE_IDS).contains(&items.len()) => {
            let mut ids: Vec<String> = Vec::new();
            for item in items {
                let id = item.as_str().map(str::trim).filter(|id| usable_id(id));
                let id = id.ok_or_else(refused)?;
                if !ids.iter().any(|known| known == id) {
                    ids.push(id.to_owned());
                }
            }
            Ok(Some(ids))
        }
        Some(_) => Err(refused()),
    }
}

impl Connector for FacebookLogin {
    fn begin<'a>(&'a self, begin: Begin<'a>) -> BoxFuture<'a, Result<Authorization, ConnectError>> {
        Box::pin(async move {
            page_ids(begin.extras)?;
            Ok(Authorization {
                url: self.app.authorization_url(&self.dialog, &begin),
                secrets: SessionSecrets::default(),
                context: json!({}),
            })
        })
    }

    fn complete<'a>(
        &'a self,
        complete: Complete<'a>,
    ) -> BoxFuture<'a, Result<Connected, ConnectError>> {
        Box::pin(self.complete_in(complete))
    }

    fn choose<'a>(
        &'a self,
        chosen: Chosen<'a>,
    ) -> BoxFuture<'a, Result<Vec<ConnectedAccount>, ConnectError>> {
        Box::pin(self.choose_in(chosen))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_ids_are_checked_before_the_user_is_sent_anywhere() {
        assert_eq!(page_ids(&json!({})).unwrap(), None);
        assert_eq!(
            page_ids(&json!({"page_ids": ["101", " 102 ", "101"]})).unwrap(),
            Some(vec!["101".to_owned(), "102".to_owned()])
        );
        for bad in [
            json!({"page_ids": []}),
            json!({"page_ids": "101"}),
            json!({"page_ids": [101]}),
            json!({"page_ids": ["a b"]}),
            json!({"page_ids": [""]}),
        ] {
            assert_eq!(page_ids(&bad).unwrap_err().code, "invalid_request", "{bad}");
        }
    }
}
