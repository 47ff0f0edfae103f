//! Instagram with Instagram Login and Threads: logins of their own that end
//! in one long-lived user token (60 days, refreshed by `ig_refresh_token` /
//! `th_refresh_token` once it is a day old).
//!
//! 1. the authorization window at `authorize_url` (Instagram:
//!    www.instagram.com/oauth/authorize; Threads: threads.net/oauth/
//!    authorize), scopes comma-separated;
//! 2. `POST exchange_url` (form: client_id, client_secret,
//!    grant_type=authorization_code, redirect_uri, code): a short-lived
//!    token (an hour). Instagram answers `{access_token, user_id,
//!    permissions}` or, as Business Login's documentation shows it,
//!    `{"data":[{..}]}`; Threads `{access_token, user_id}`;
//! 3. `GET <access_token>?grant_type=ig_exchange_token|th_exchange_token
//!    &client_secret&access_token`: the long-lived token, `{access_token,
//!    token_type, expires_in}`. Instagram's endpoint sits under `api_url`
//!    (graph.instagram.com/access_token); Threads' at the root of
//!    `api_url`'s host (graph.threads.net/access_token, unversioned);
//! 4. `GET {api_url}me?fields=..`: who the user is. Instagram's `user_id`
//!    is the professional account's id (its `id` is app-scoped); Threads'
//!    `id` is the Threads user's.

use std::time::Duration;

use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};
use url::Url;

use super::answers::{IssuedToken, Step, issued_token};
use super::pages::url_text;
use super::{App, get, hide, required};
use crate::config::ProviderSettings;
use crate::connect::exchange::text_at;
use crate::connect::{
    Authorization, Begin, Complete, ConnectError, Connected, ConnectedAccount, Connector,
    SessionSecrets,
};
use crate::domain::Provider;
use crate::providers::HttpClient;
use crate::registration::{AccountSpec, CredentialsSpec};

/// What differs between Instagram Login and Threads.
struct Product {
    exchange_grant: &'static str,
    profile_fields: &'static str,
    /// Where the account's id is read, in order of preference.
    id_paths: &'static [&'static str],
    picture_field: &'static str,
    /// The `meta` key holding the account's id.
    meta_key: &'static str,
}

const INSTAGRAM: Product = Product {
    exchange_grant: "ig_exchange_token",
    profile_fields: "user_id,username,name,profile_picture_url",
    id_paths: &["user_id"],
    picture_field: "profile_picture_url",
    meta_key: "ig_user_id",
};

const THREADS: Product = Product {
    exchange_grant: "th_exchange_token",
    profile_fields: "id,username,name,threads_profile_picture_url",
    id_paths: &["id"],
    picture_field: "threads_profile_picture_url",
    meta_key: "threads_user_id",
};

pub struct OwnLogin {
    provider: Provider,
    product: &'static Product,
    app: App,
    dialog: Url,
    exchange_url: Url,
    long_lived_url: Url,
    profile_url: Url,
    /// The token's lifetime when the answer does not state one.
    default_lifetime: Duration,
    http: HttpClient,
}

impl OwnLogin {
    pub fn from_settings(
        provider: Provider,
        section: &ProviderSettings,
        http: HttpClient,
    ) -> Result<Self, String> {
        let api_url = required(&section.api_url, provider, "api_url")?;
        let product = if provider == Provider::Threads {
            &THREADS
        } else {
            &INSTAGRAM
        };
        let unusable = |what: &str| {
            format!(
                "{provider} cannot be connected: providers.{}.api_url has no {what}",
                provider.config_key()
            )
        };
        let long_lived_url = if provider == Provider::Threads {
            api_url.join("/access_token")
        } else {
            api_url.join("access_token")
        }
        .map_err(|_| unusable("token exchange endpoint"))?;
        let profile_url = api_url
            .join("me")
            .map_err(|_| unusable("profile endpoint"))?;
        Ok(Self {
            provider,
            product,
            app: App::from_settings(provider, section)?,
            dialog: required(&section.authorize_url, provider, "authorize_url")?,
            exchange_url: required(&section.exchange_url, provider, "exchange_url")?,
            long_lived_url,
            profile_url,
            default_lifetime: section.default_access_token_lifetime,
            http,
        })
    }

    async fn short_lived(
        &self,
        code: &SecretString,
        redirect_uri: &Url,
    ) -> Result<IssuedToken, ConnectError> {
        let step = Step::CodeExchange;
        let form = [
            ("client_id", self.app.client_id.as_str()),
            ("client_secret", self.app.client_secret.expose_secret()),
            ("grant_type", "authorization_code"),
            ("redirect_uri", redirect_uri.as_str()),
            ("code", code.expose_secret()),
        ];
        let builder = self
            .http
            .inner()
            .post(self.exchange_url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form);
        let reply = self.http.send(builder).await.map_err(|e| step.failed(e))?;
        issued_token(&super::answers::read_object(&reply, step)?, step)
    }

    async fn long_lived(&self, short: &SecretString) -> Result<IssuedToken, ConnectError> {
        let mut url = self.long_lived_url.clone();
        url.query_pairs_mut()
            .append_pair("grant_type", self.product.exchange_grant)
            .append_pair("client_secret", self.app.client_secret.expose_secret())
            .append_pair("access_token", short.expose_secret());
        let body = get(&self.http, url, Step::LongLivedExchange).await?;
        issued_token(&body, Step::LongLivedExchange)
    }

    async fn profile(&self, token: &SecretString) -> Result<Map<String, Value>, ConnectError> {
        let mut url = self.profile_url.clone();
        url.query_pairs_mut()
            .append_pair("fields", self.product.profile_fields)
            .append_pair("access_token", token.expose_secret());
        get(&self.http, url, Step::Profile).await
    }

    fn account(
        &self,
        complete: &Complete<'_>,
        short: &IssuedToken,
        long: IssuedToken,
        profile: &Map<String, Value>,
    ) -> Result<ConnectedAccount, ConnectError> {
        let product = self.product;
        let external_id = product
            .id_paths
            .iter()
            .find_map(|key| text_at(profile, &[key]))
            .filter(|id| super::answers::usable_id(id))
            .ok_or_else(|| {
                Step::Profile.refused(format!("{} is missing", product.id_paths.join(" or ")))
            })?;
        let handle = text_at(profile, &["username"]);
        let display_name = text_at(profile, &["name"]).or_else(|| handle.clone());
        let avatar_url = profile
            .get(product.picture_field)
            .and_then(Value::as_str)
            .and_then(url_text);
        // Instagram lists what the user granted; Threads does not say, so
        // what was asked for stands.
        let scopes = short
            .permissions
            .clone()
            .unwrap_or_else(|| complete.scopes.to_vec());
        let lifetime = long.expires_in.unwrap_or(self.default_lifetime);
        let expires_in = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX);
        let mut warnings = Vec::new();
        if long.expires_in.is_none() {
            warnings.push(format!(
                "the platform stated no lifetime for the token; {} assumed",
                humantime::format_duration(lifetime)
            ));
        }
        Ok(ConnectedAccount {
            spec: AccountSpec {
                workspace_id: complete.workspace_id.to_owned(),
                provider: self.provider,
                meta: Some(json!({ product.meta_key: external_id })),
                external_id,
                handle,
                display_name,
                avatar_url,
                connection_type: None,
                scopes,
                default_board_id: None,
                credentials: CredentialsSpec {
                    access_token: long.access_token.expose_secret().to_owned(),
                    refresh_token: None,
                    expires_in: Some(expires_in.clamp(1, crate::registration::MAX_LIFETIME_SECS)),
                    token_expires_at: None,
                    refresh_token_expires_at: None,
                    dpop_private_jwk: None,
                },
            },
            warnings,
        })
    }

    async fn complete_in(&self, complete: Complete<'_>) -> Result<Connected, ConnectError> {
        let short = self
            .short_lived(complete.code, complete.redirect_uri)
            .await?;
        let long = self
            .long_lived(&short.access_token)
            .await
            .map_err(|e| hide(e, &[&short.access_token]))?;
        let profile = self
            .profile(&long.access_token)
            .await
            .map_err(|e| hide(e, &[&short.access_token, &long.access_token]))?;
        let account = self.account(&complete, &short, long, &profile)?;
        Ok(Connected::Accounts(vec![account]))
    }
}

impl Connector for OwnLogin {
    fn begin<'a>(&'a self, begin: Begin<'a>) -> BoxFuture<'a, Result<Authorization, ConnectError>> {
        Box::pin(async move {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(provider: Provider, api: &str) -> ProviderSettings {
        let mut settings = crate::config::Settings::default();
        let section = settings.providers.get_mut(provider);
        section.client_id = Some("app".into());
        section.client_secret = Some(SecretString::from("secret"));
        section.api_url = Some(api.parse().unwrap());
        section.clone()
    }

    fn http() -> HttpClient {
        HttpClient::new(&crate::config::Settings::default().http).unwrap()
    }

    #[test]
    fn threads_exchanges_at_the_hosts_root_and_instagram_under_the_api_url() {
        let threads = OwnLogin::from_settings(
            Provider::Threads,
            &settings(Provider::Threads, "https://graph.threads.net/v1.0/"),
            http(),
        )
        .unwrap();
        assert_eq!(
            threads.long_lived_url.as_str(),
            "https://graph.threads.net/access_token"
        );
        assert_eq!(
            threads.profile_url.as_str(),
            "https://graph.threads.net/v1.0/me"
        );
        let instagram = OwnLogin::from_settings(
            Provider::InstagramLogin,
            &settings(Provider::InstagramLogin, "https://graph.instagram.com/"),
            http(),
        )
        .unwrap();
        assert_eq!(
            instagram.long_lived_url.as_str(),
            "https://graph.instagram.com/access_token"
        );
    }

    #[test]
    fn a_missing_setting_is_named() {
        let mut section = settings(Provider::Threads, "https://graph.threads.net/v1.0/");
        section.client_secret = None;
        let error = OwnLogin::from_settings(Provider::Threads, &section, http())
            .err()
            .unwrap();
        assert!(error.contains("providers.threads.client_secret"), "{error}");
    }
}
