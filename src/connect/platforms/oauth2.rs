//! The platforms whose connect flow is the plain RFC 6749 authorization
//! code grant: X, LinkedIn, YouTube (Google), Pinterest and TikTok. They
//! differ in how the authorization URL is spelled, how the client names
//! itself, and which profile call names the account.

use futures::FutureExt;
use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};
use url::Url;

use crate::config::{ClientAuth, ProviderSettings};
use crate::connect::exchange::{
    CodeExchange, display_text, exchange_code, get_profile, handle_text, required_text, text_at,
    web_url,
};
use crate::connect::pkce::{code_challenge, code_verifier};
use crate::connect::{
    Authorization, Begin, Choice, ChoiceOption, Chosen, Complete, ConnectError, Connected,
    ConnectedAccount, Connector, SessionSecrets,
};
use crate::domain::Provider;
use crate::providers::{HttpClient, TokenGrant};
use crate::registration::{AccountSpec, CredentialsSpec};

/// How one platform spells the common flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dialect {
    X,
    LinkedinPerson,
    LinkedinCompany,
    Google,
    Pinterest,
    Tiktok,
}

impl Dialect {
    fn of(provider: Provider) -> Option<Self> {
        Some(match provider {
            Provider::X => Self::X,
            Provider::LinkedinPerson => Self::LinkedinPerson,
            Provider::LinkedinCompany => Self::LinkedinCompany,
            Provider::Youtube => Self::Google,
            Provider::Pinterest => Self::Pinterest,
            Provider::TiktokBusiness | Provider::TiktokPersonal => Self::Tiktok,
            _ => return None,
        })
    }

    /// Scopes are comma-separated at Pinterest and TikTok, space-separated
    /// elsewhere (RFC 6749 3.3).
    fn scope_separator(self) -> &'static str {
        match self {
            Self::Pinterest | Self::Tiktok => ",",
            _ => " ",
        }
    }
}

pub struct OAuth2Connector {
    dialect: Dialect,
    authorize_url: Url,
    token_url: Url,
    api_url: Url,
    client_id: String,
    client_secret: Option<SecretString>,
    client_auth: ClientAuth,
    pkce: bool,
    continuous_refresh: bool,
    http: HttpClient,
}

impl OAuth2Connector {
    /// The connector, or why the platform cannot be connected.
    pub fn from_settings(
        provider: Provider,
        section: &ProviderSettings,
        http: HttpClient,
    ) -> Result<Self, String> {
        let key = provider.config_key();
        let dialect = Dialect::of(provider)
            .ok_or_else(|| format!("{provider} has no authorization-code connector"))?;
        let missing = |what: &str| {
            format!("{provider} cannot be connected: providers.{key}.{what} is not set")
        };
        Ok(Self {
            dialect,
            authorize_url: section
                .authorize_url
                .clone()
                .ok_or_else(|| missing("authorize_url"))?,
            token_url: section
                .exchange_url
                .clone()
                .or_else(|| section.token_url.clone())
                .ok_or_else(|| missing("token_url"))?,
            api_url: section.api_url.clone().ok_or_else(|| missing("api_url"))?,
            client_id: section
                .client_id
                .clone()
                .ok_or_else(|| missing("client_id"))?,
            client_secret: Some(
                section
                    .client_secret
                    .clone()
                    .ok_or_else(|| missing("client_secret"))?,
            ),
            client_auth: section.client_auth,
            pkce: section.connect_pkce,
            continuous_refresh: section.continuous_refresh,
            http,
        })
    }

    fn api(&self, path: &str) -> Result<Url, ConnectError> {
        self.api_url
            .join(path)
            .map_err(|_| ConnectError::not_configured("api_url cannot be joined"))
    }

    async fn exchange(&self, complete: &Complete<'_>) -> Result<TokenGrant, ConnectError> {
        let secret = self.client_secret.as_ref().map(|s| s.expose_secret());
        let mut extra: Vec<(&str, &str)> = Vec::new();
        if self.dialect == Dialect::Tiktok {
            extra.push(("client_key", &self.client_id));
            if let Some(secret) = secret {
                extra.push(("client_secret", secret));
            }
        }
        if self.dialect == Dialect::Pinterest && self.continuous_refresh {
            extra.push(("continuous_refresh", "true"));
        }
        let verifier = if self.pkce {
            Some(complete.secrets.code_verifier.as_ref().ok_or_else(|| {
                ConnectError::invalid_request("the session lost its PKCE verifier")
            })?)
        } else {
            None
        };
        exchange_code(
            &self.http,
            CodeExchange {
                token_url: &self.token_url,
                client_id: &self.client_id,
                client_secret: self.client_secret.as_ref(),
                client_auth: (self.dialect != Dialect::Tiktok).then_some(self.client_auth),
                code: complete.code,
                redirect_uri: complete.redirect_uri,
                code_verifier: verifier,
                extra_form: &extra,
            },
        )
        .await
    }

    async fn complete_flow(&self, complete: Complete<'_>) -> Result<Connected, ConnectError> {
        let grant = self.exchange(&complete).await?;
        let token = grant.access_token.expose().to_owned();
        let profile = |id: String,
                       handle: Option<String>,
                       name: Option<String>,
                       avatar: Option<String>| Profile {
            external_id: id,
            handle,
            display_name: name,
            avatar_url: avatar,
            meta: json!({}),
        };
        let found = match self.dialect {
            Dialect::X => {
                let me = get_profile(
                    &self.http,
                    self.api("users/me?user.fields=profile_image_url")?,
                    &token,
                    "X users/me",
                )
                .await?;
                profile(
                    required_text(&me, &["data", "id"], "X users/me")?,
                    text_at(&me, &["data", "username"]),
                    text_at(&me, &["data", "name"]),
                    text_at(&me, &["data", "profile_image_url"]),
                )
            }
            Dialect::LinkedinPerson => {
                let me = get_profile(
                    &self.http,
                    self.api("v2/userinfo")?,
                    &token,
                    "LinkedIn userinfo",
                )
                .await?;
                profile(
                    required_text(&me, &["sub"], "LinkedIn userinfo")?,
                    None,
                    text_at(&me, &["name"]),
                    text_at(&me, &["picture"]),
                )
            }
            Dialect::LinkedinCompany => {
                let organizations = self.organizations(&token).await?;
                let chosen = choice_ids(complete.extras, "organization_ids");
                return match chosen {
                    Some(ids) => Ok(Connected::Accounts(self.organization_accounts(
                        complete.workspace_id,
                        &Tokens::from_grant(&grant),
                        &organizations,
                        &ids,
                    )?)),
                    None if organizations.len() == 1 => {
                        let only = vec![organizations[0].id.clone()];
                        Ok(Connected::Accounts(self.organization_accounts(
                            complete.workspace_id,
                            &Tokens::from_grant(&grant),
                            &organizations,
                            &only,
                        )?))
                    }
                    None => Ok(Connected::Choose(Choice {
                        options: organizations
                            .iter()
                            .map(|o| ChoiceOption {
                                id: o.id.clone(),
                                name: o.name.clone().unwrap_or_else(|| o.id.clone()),
                            })
                            .collect(),
                        secrets: SessionSecrets {
                            user_access_token: Some(SecretString::from(token)),
                            refresh_token: grant
                                .refresh_token
                                .as_ref()
                                .map(|t| SecretString::from(t.expose().to_owned())),
                            ..Default::default()
                        },
                        context: json!({
                            "expires_in": grant.expires_in.map(|d| d.as_secs()),
                            "refresh_token_expires_in": grant.refresh_token_expires_in.map(|d| d.as_secs()),
                            "scopes": grant.scopes,
                        }),
                    })),
                };
            }
            Dialect::Google => {
                let channels = get_profile(
                    &self.http,
                    self.api("youtube/v3/channels?part=snippet&mine=true")?,
                    &token,
                    "YouTube channels",
                )
                .await?;
                let Some(channel) = channels
                    .get("items")
                    .and_then(Value::as_array)
                    .and_then(|items| items.first())
                    .and_then(Value::as_object)
                else {
                    return Err(ConnectError::identity_failed(
                        "this Google account has no YouTube channel: create one, then connect again",
                    ));
                };
                profile(
                    required_text(channel, &["id"], "YouTube channels")?,
                    text_at(channel, &["snippet", "customUrl"]),
                    text_at(channel, &["snippet", "title"]),
                    text_at(channel, &["snippet", "thumbnails", "default", "url"]),
                )
            }
            Dialect::Pinterest => {
                let me = get_profile(
                    &self.http,
                    self.api("user_account")?,
                    &token,
                    "Pinterest user_account",
                )
                .await?;
                let username = text_at(&me, &["username"]);
                let id = text_at(&me, &["id"])
                    .or_else(|| username.clone())
                    .ok_or_else(|| {
                        ConnectError::identity_failed(
                            "Pinterest user_account: id and username are missing",
                        )
                    })?;
                profile(
                    id,
                    username,
                    text_at(&me, &["business_name"]),
                    text_at(&me, &["profile_image"]),
                )
            }
            Dialect::Tiktok => {
                let granted = grant.scopes.as_deref().unwrap_or(complete.scopes);
                let me = get_profile(
                    &self.http,
                    self.api(&tiktok_user_info(granted))?,
                    &token,
                    "TikTok user/info",
                )
                .await?;
                tiktok_ok(&me)?;
                profile(
                    required_text(&me, &["data", "user", "open_id"], "TikTok user/info")?,
                    text_at(&me, &["data", "user", "username"]),
                    text_at(&me, &["data", "user", "display_name"]),
                    text_at(&me, &["data", "user", "avatar_url"]),
                )
            }
        };
        Ok(Connected::Accounts(vec![account(
            complete.workspace_id,
            complete.provider,
            found,
            Tokens::from_grant(&grant),
        )]))
    }

    async fn organizations(&self, token: &str) -> Result<Vec<Organization>, ConnectError> {
        let url = self.api(
            "rest/organizationAcls?q=roleAssignee&role=ADMINISTRATOR&state=APPROVED&count=100",
        )?;
        let builder = self
            .http
            .inner()
            .get(url)
            .bearer_auth(token)
            .header("LinkedIn-Version", "202501")
            .header("X-Restli-Protocol-Version", "2.0.0");
        let reply = self
            .http
            .send(builder)
            .await
            .map_err(|e| ConnectError::from_provider("LinkedIn organizationAcls", e))?;
        let acls = crate::connect::exchange::profile_object(&reply, "LinkedIn organizationAcls")?;
        let mut found = Vec::new();
        for element in acls
            .get("elements")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(urn) = element.get("organization").and_then(Value::as_str) else {
                continue;
            };
            let Some(id) = urn.strip_prefix("urn:li:organization:") else {
                continue;
            };
            if id.is_empty() || found.iter().any(|o: &Organization| o.id == id) {
                continue;
            }
            let name = self.organization_name(token, id).await;
            found.push(Organization {
                id: id.to_owned(),
                name,
            });
        }
        if found.is_empty() {
            return Err(ConnectError::identity_failed(
                "this LinkedIn member administers no organization page",
            ));
        }
        Ok(found)
    }

    /// The page's name, for the choice; a failure only leaves it unnamed.
    async fn organization_name(&self, token: &str, id: &str) -> Option<String> {
        if !id.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let url = self.api(&format!("rest/organizations/{id}")).ok()?;
        let builder = self
            .http
            .inner()
            .get(url)
            .bearer_auth(token)
            .header("LinkedIn-Version", "202501");
        let reply = self.http.send(builder).await.ok()?;
        let object =
            crate::connect::exchange::profile_object(&reply, "LinkedIn organization").ok()?;
        text_at(&object, &["localizedName"])
    }

    fn organization_accounts(
        &self,
        workspace_id: &str,
        tokens: &Tokens,
        organizations: &[Organization],
        chosen: &[String],
    ) -> Result<Vec<ConnectedAccount>, ConnectError> {
        chosen
            .iter()
            .map(|id| {
                let organization = organizations.iter().find(|o| &o.id == id).ok_or_else(|| {
                    ConnectError::invalid_request(format!(
                        "organization {:?} is not administered by this member",
                        id.chars().take(64).collect::<String>()
                    ))
                })?;
                Ok(account(
                    workspace_id,
                    Provider::LinkedinCompany,
                    Profile {
                        external_id: organization.id.clone(),
                        handle: None,
                        display_name: organization.name.clone(),
                        avatar_url: None,
                        meta: json!({"organization_urn": format!("urn:li:organization:{}", organization.id)}),
                    },
                    tokens.clone(),
                ))
            })
            .collect()
    }

    async fn choose_organizations(
        &self,
        chosen: Chosen<'_>,
    ) -> Result<Vec<ConnectedAccount>, ConnectError> {
        let token =
            chosen.secrets.user_access_token.as_ref().ok_or_else(|| {
                ConnectError::invalid_request("the pending choice lost its token")
            })?;
        let organizations = self.organizations(token.expose_secret()).await?;
        let seconds = |key: &str| chosen.context.get(key).and_then(Value::as_u64);
        let tokens = Tokens {
            access_token: token.expose_secret().to_owned(),
            refresh_token: chosen
                .secrets
                .refresh_token
                .as_ref()
                .map(|t| t.expose_secret().to_owned()),
            expires_in: seconds("expires_in"),
            refresh_token_expires_in: seconds("refresh_token_expires_in"),
            scopes: chosen
                .context
                .get("scopes")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
        };
        self.organization_accounts(
            chosen.workspace_id,
            &tokens,
            &organizations,
            chosen.selected,
        )
    }
}

impl Connector for OAuth2Connector {
    fn begin<'a>(&'a self, begin: Begin<'a>) -> BoxFuture<'a, Result<Authorization, ConnectError>> {
        let mut url = self.authorize_url.clone();
        let mut secrets = SessionSecrets::default();
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("response_type", "code");
            let client_param = if self.dialect == Dialect::Tiktok {
                "client_key"
            } else {
                "client_id"
            };
            query.append_pair(client_param, &self.client_id);
            query.append_pair("redirect_uri", begin.redirect_uri.as_str());
            query.append_pair("scope", &begin.scopes.join(self.dialect.scope_separator()));
            query.append_pair("state", begin.state);
            if self.pkce {
                let verifier = code_verifier();
                query.append_pair("code_challenge", &code_challenge(&verifier));
                query.append_pair("code_challenge_method", "S256");
                secrets.code_verifier = Some(verifier);
            }
            if self.dialect == Dialect::Google {
                // Without both, Google issues no refresh token to a user
                // who consented before.
                query.append_pair("access_type", "offline");
                query.append_pair("prompt", "consent");
                query.append_pair("include_granted_scopes", "true");
            }
        }
        async move {
            Ok(Authorization {
                url,
                secrets,
                context: json!({}),
            })
        }
        .boxed()
    }

    fn complete<'a>(
        &'a self,
        complete: Complete<'a>,
    ) -> BoxFuture<'a, Result<Connected, ConnectError>> {
        self.complete_flow(complete).boxed()
    }

    fn choose<'a>(
        &'a self,
        chosen: Chosen<'a>,
    ) -> BoxFuture<'a, Result<Vec<ConnectedAccount>, ConnectError>> {
        async move {
            if self.dialect != Dialect::LinkedinCompany {
                return Err(ConnectError::invalid_request(format!(
                    "{} has no choice to make after the authorization",
                    chosen.provider
                )));
            }
            self.choose_organizations(chosen).await
        }
        .boxed()
    }
}

/// The `user/info` call for what the user granted: TikTok refuses the whole
/// call (`scope_not_authorized`) when one field needs a scope the user did
/// not grant, and `username` needs `user.info.profile`, which the default
/// `user.info.basic` does not include.
fn tiktok_user_info(granted: &[String]) -> String {
    let mut fields = "open_id,union_id,avatar_url,display_name".to_owned();
    if granted.iter().any(|s| s == "user.info.profile") {
        fields.push_str(",username");
    }
    format!("user/info/?fields={fields}")
}

/// TikTok answers errors inside a 200 with `error.code` other than `ok`.
fn tiktok_ok(body: &Map<String, Value>) -> Result<(), ConnectError> {
    match text_at(body, &["error", "code"]).as_deref() {
        None | Some("ok") => Ok(()),
        Some(code) => Err(ConnectError::identity_failed(format!(
            "TikTok user/info: {}",
            crate::providers::token_response::short(code)
        ))),
    }
}

struct Organization {
    id: String,
    name: Option<String>,
}

/// Who the platform says the account is.
pub(super) struct Profile {
    pub external_id: String,
    pub handle: Option<String>,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
    pub meta: Value,
}

/// The credentials to register.
#[derive(Clone)]
pub(super) struct Tokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: Option<u64>,
    pub refresh_token_expires_in: Option<u64>,
    pub scopes: Vec<String>,
}

impl Tokens {
    pub fn from_grant(grant: &TokenGrant) -> Self {
        Self {
            access_token: grant.access_token.expose().to_owned(),
            refresh_token: grant.refresh_token.as_ref().map(|t| t.expose().to_owned()),
            expires_in: grant.expires_in.map(|d| d.as_secs()),
            refresh_token_expires_in: grant.refresh_token_expires_in.map(|d| d.as_secs()),
            scopes: grant.scopes.clone().unwrap_or_default(),
        }
    }
}

/// The registration body for one connected account.
pub(super) fn account(
    workspace_id: &str,
    provider: Provider,
    profile: Profile,
    tokens: Tokens,
) -> ConnectedAccount {
    let now = chrono::Utc::now();
    let seconds = |s: u64| i64::try_from(s).unwrap_or(i64::MAX);
    ConnectedAccount {
        spec: AccountSpec {
            workspace_id: workspace_id.to_owned(),
            provider,
            external_id: profile.external_id,
            // Decorations the platform got wrong are left out rather than
            // refusing the account.
            handle: profile.handle.as_deref().and_then(handle_text),
            display_name: profile.display_name.as_deref().and_then(display_text),
            avatar_url: profile.avatar_url.as_deref().and_then(web_url),
            connection_type: None,
            scopes: tokens.scopes,
            meta: Some(profile.meta),
            default_board_id: None,
            credentials: CredentialsSpec {
                access_token: tokens.access_token,
                refresh_token: tokens.refresh_token,
                expires_in: tokens.expires_in.map(seconds),
                token_expires_at: None,
                refresh_token_expires_at: tokens
                    .refresh_token_expires_in
                    .map(|s| now + chrono::Duration::seconds(seconds(s).min(315_576_000))),
                dpop_private_jwk: None,
            },
        },
        warnings: Vec::new(),
    }
}

/// `extras.<key>` as a list of ids, when the request chose ahead.
pub(super) fn choice_ids(extras: &Value, key: &str) -> Option<Vec<String>> {
    let ids: Vec<String> = extras
        .get(key)?
        .as_array()?
        .iter()
        .filter_map(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .collect();
    (!ids.is_empty()).then_some(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiktok_asks_for_the_username_only_with_the_profile_scope() {
        let scopes = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            tiktok_user_info(&scopes(&["user.info.basic", "video.publish"])),
            "user/info/?fields=open_id,union_id,avatar_url,display_name"
        );
        assert_eq!(
            tiktok_user_info(&scopes(&["user.info.basic", "user.info.profile"])),
            "user/info/?fields=open_id,union_id,avatar_url,display_name,username"
        );
    }
}
