//! `[providers.<name>]`: how each platform is called, and its built-in
//! defaults.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use url::Url;

use super::ConfigError;
use super::checks::{POSITIVE, duration_at_least, fraction, rate, whole_number};
use crate::domain::Provider;

/// How the daemon talks to a platform's token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Flow {
    /// RFC 6749 section 6: POST `grant_type=refresh_token`.
    Oauth2Refresh,
    /// X: the RFC 6749 refresh with X's own error table.
    X,
    /// LinkedIn: the RFC 6749 refresh with LinkedIn's error table.
    Linkedin,
    /// TikTok: `client_key` instead of `client_id`; errors may come in a 200.
    Tiktok,
    /// Instagram Login: `ig_refresh_token` GET, refreshes the access token.
    InstagramLogin,
    /// Threads: `th_refresh_token` GET, refreshes the access token.
    Threads,
    /// Mastodon: tokens do not expire; `verify_credentials` health checks on
    /// the account's own instance.
    Mastodon,
    /// Google (YouTube): the RFC 6749 refresh with Google's error table.
    Google,
    /// Pinterest: the RFC 6749 refresh with Basic auth, optionally
    /// `continuous_refresh`; rotating refresh tokens.
    Pinterest,
    /// Facebook Login (Pages, Instagram with Facebook Login): `debug_token`
    /// health checks of page tokens; `fb_exchange_token` for long-lived user
    /// tokens.
    Facebook,
    /// Bluesky: app-password sessions refreshed on the account's PDS, and
    /// atproto OAuth sessions (DPoP) at the account's authorization server.
    Bluesky,
    /// No refresh flow is wired for this platform yet.
    None,
}

/// When the daemon refreshes a platform's tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefreshMode {
    /// Ahead of expiry, inside the refresh window.
    Proactive,
    /// When a valid token is asked for, plus a keep-alive refresh every
    /// `keep_alive_interval` so an idle refresh token does not die.
    OnDemand,
}

/// Where the OAuth client credentials travel (RFC 6749 section 2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    Basic,
    Body,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    pub flow: Flow,
    pub token_url: Option<Url>,
    /// RFC 7009 revocation endpoint, called when an account is disconnected.
    #[serde(default)]
    pub revoke_url: Option<Url>,
    pub client_id: Option<String>,
    #[serde(default, skip_serializing)]
    pub client_secret: Option<SecretString>,
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    pub client_auth: ClientAuth,
    pub rotates_refresh_token: bool,
    /// Refresh once this fraction of the issued lifetime has passed...
    pub refresh_fraction: f64,
    /// ...and never later than this before expiry.
    #[serde(with = "humantime_serde")]
    pub refresh_margin: Duration,
    /// Assumed lifetime when a token response carries no `expires_in`.
    #[serde(with = "humantime_serde")]
    pub default_access_token_lifetime: Duration,
    pub mode: RefreshMode,
    /// The platform refuses to refresh younger tokens.
    #[serde(with = "humantime_serde")]
    pub min_token_age: Duration,
    /// Refreshes are spread up to this much earlier, seeded per account.
    #[serde(with = "humantime_serde")]
    pub jitter: Duration,
    /// on_demand mode: refresh at least this often.
    #[serde(with = "humantime_serde")]
    pub keep_alive_interval: Duration,
    /// For tokens that never expire: how often to check they still work.
    #[serde(with = "humantime_serde")]
    pub health_check_interval: Duration,
    /// The refresh token's own lifetime when the platform does not say.
    #[serde(default, with = "humantime_serde")]
    pub refresh_token_lifetime: Option<Duration>,
    /// False where an expired access token can never be refreshed
    /// (Instagram Login, Threads): expiry is then final.
    pub refreshable_after_expiry: bool,
    /// Origins (`https://host[:port]`, or `http://...` to allow plain HTTP)
    /// trusted as given for hosts that users control (Mastodon instances,
    /// Bluesky PDSes and authorization servers):
    /// exempt from the public-address check. For tests and private deployments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<Url>,
    /// Scopes an account needs to publish; an entry `a|b` is met by either.
    /// Accounts lacking one are listed with it in `missing_scopes`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish_scopes: Vec<String>,
    /// The platform's health-check endpoint where it has one apart from the
    /// token endpoint (Graph `debug_token`, LinkedIn `introspectToken`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_url: Option<Url>,
    /// Pinterest: send `continuous_refresh=true` (apps created before
    /// 2025-09-25 must, to get 60-day refresh tokens refreshable indefinitely).
    #[serde(default, skip_serializing_if = "is_false")]
    pub continuous_refresh: bool,
    /// Google: the OAuth app is an external app in "Testing" status, whose
    /// refresh tokens die after 7 days; the refresh-token lifetime is capped
    /// at that and a warning is printed at start.
    #[serde(default, skip_serializing_if = "is_false")]
    pub app_in_testing: bool,
    /// Connect flow: the platform's authorization endpoint (where the
    /// browser is sent). None where it is per user (Mastodon, Bluesky).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorize_url: Option<Url>,
    /// Connect flow: where a code is exchanged, when not at `token_url`
    /// (Instagram Login, Threads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange_url: Option<Url>,
    /// Connect flow: the base URL of the platform's API, for the profile
    /// call that names the connected account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<Url>,
    /// Connect flow: the scopes asked for when a connect request names none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connect_scopes: Vec<String>,
    /// Connect flow: send a PKCE challenge (S256) with the authorization
    /// and its verifier with the code (RFC 7636).
    #[serde(default, skip_serializing_if = "is_false")]
    pub connect_pkce: bool,
    /// Bluesky connect flow: the PLC directory serving `did:plc`
    /// documents (unset: `https://plc.directory`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plc_directory: Option<Url>,
    /// Refreshes in flight to this platform per process.
    pub max_concurrency: usize,
    /// Calls per second to this platform per process (token bucket).
    pub rate_per_second: f64,
}

impl ProviderSettings {
    fn defaults_for(provider: Provider) -> Self {
        use Provider::*;
        const HOUR: u64 = 3_600;
        const DAY: u64 = 86_400;
        let base = Self {
            flow: Flow::None,
            token_url: None,
            revoke_url: None,
            client_id: None,
            client_secret: None,
            client_secret_file: None,
            client_auth: ClientAuth::Body,
            rotates_refresh_token: false,
            refresh_fraction: 2.0 / 3.0,
            refresh_margin: Duration::from_secs(300),
            default_access_token_lifetime: Duration::from_secs(60 * DAY),
            mode: RefreshMode::Proactive,
            min_token_age: Duration::ZERO,
            jitter: Duration::from_secs(300),
            keep_alive_interval: Duration::from_secs(7 * DAY),
            health_check_interval: Duration::from_secs(DAY),
            refresh_token_lifetime: None,
            refreshable_after_expiry: true,
            allowed_origins: Vec::new(),
            publish_scopes: Vec::new(),
            health_url: None,
            continuous_refresh: false,
            app_in_testing: false,
            authorize_url: None,
            exchange_url: None,
            api_url: None,
            connect_scopes: Vec::new(),
            connect_pkce: false,
            plc_directory: None,
            max_concurrency: 64,
            rate_per_second: 50.0,
        };
        let url = |u: &str| Some(Url::parse(u).expect("built-in token URLs parse"));
        let secs = Duration::from_secs;
        // Figures from PROVIDERS.md; where a lifetime is unconfirmed the
        // platform's own expires_in / refresh_token_expires_in wins.
        let scopes = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        // publish_scopes: what posting needs on each platform (the platforms'
        // permission references; PROVIDERS.md names only offline.access,
        // instagram_business_basic and threads_basic).
        match provider {
            X => Self {
                flow: Flow::X,
                token_url: url("https://api.x.com/2/oauth2/token"),
                revoke_url: url("https://api.x.com/2/oauth2/revoke"),
                client_auth: ClientAuth::Basic,
                rotates_refresh_token: true,
                default_access_token_lifetime: secs(2 * HOUR),
                publish_scopes: scopes(&["tweet.write", "offline.access"]),
                authorize_url: url("https://x.com/i/oauth2/authorize"),
                api_url: url("https://api.x.com/2/"),
                connect_scopes: scopes(&[
                    "tweet.read",
                    "tweet.write",
                    "users.read",
                    "offline.access",
                ]),
                connect_pkce: true,
                ..base
            },
            LinkedinPerson | LinkedinCompany => Self {
                flow: Flow::Linkedin,
                token_url: url("https://www.linkedin.com/oauth/v2/accessToken"),
                health_url: url("https://www.linkedin.com/oauth/v2/introspectToken"),
                refresh_token_lifetime: Some(secs(365 * DAY)),
                publish_scopes: scopes(if provider == LinkedinPerson {
                    &["w_member_social"]
                } else {
                    &["w_organization_social"]
                }),
                authorize_url: url("https://www.linkedin.com/oauth/v2/authorization"),
                api_url: url("https://api.linkedin.com/"),
                connect_scopes: scopes(if provider == LinkedinPerson {
                    &["openid", "profile", "w_member_social"]
                } else {
                    &[
                        "openid",
                        "profile",
                        "r_organization_admin",
                        "w_organization_social",
                    ]
                }),
                ..base
            },
            Youtube => Self {
                flow: Flow::Google,
                token_url: url("https://oauth2.googleapis.com/token"),
                revoke_url: url("https://oauth2.googleapis.com/revoke"),
                default_access_token_lifetime: secs(HOUR),
                // Hourly tokens for every account would be wasted work: refresh
                // when a token is needed, and weekly so the grant stays used.
                mode: RefreshMode::OnDemand,
                publish_scopes: scopes(&[
                    "https://www.googleapis.com/auth/youtube.upload|https://www.googleapis.com/auth/youtube|https://www.googleapis.com/auth/youtube.force-ssl",
                ]),
                authorize_url: url("https://accounts.google.com/o/oauth2/v2/auth"),
                api_url: url("https://www.googleapis.com/"),
                connect_scopes: scopes(&[
                    "openid",
                    "https://www.googleapis.com/auth/youtube.upload",
                    "https://www.googleapis.com/auth/youtube.readonly",
                ]),
                connect_pkce: true,
                ..base
            },
            Pinterest => Self {
                flow: Flow::Pinterest,
                token_url: url("https://api.pinterest.com/v5/oauth/token"),
                client_auth: ClientAuth::Basic,
                rotates_refresh_token: true,
                default_access_token_lifetime: secs(30 * DAY),
                refresh_token_lifetime: Some(secs(60 * DAY)),
                publish_scopes: scopes(&["pins:write", "boards:read"]),
                authorize_url: url("https://www.pinterest.com/oauth/"),
                api_url: url("https://api.pinterest.com/v5/"),
                connect_scopes: scopes(&[
                    "user_accounts:read",
                    "boards:read",
                    "pins:read",
                    "pins:write",
                ]),
                ..base
            },
            TiktokBusiness | TiktokPersonal => Self {
                flow: Flow::Tiktok,
                token_url: url("https://open.tiktokapis.com/v2/oauth/token/"),
                rotates_refresh_token: true,
                default_access_token_lifetime: secs(2 * HOUR),
                refresh_token_lifetime: Some(secs(180 * DAY)),
                publish_scopes: scopes(&["video.publish|video.upload"]),
                authorize_url: url("https://www.tiktok.com/v2/auth/authorize/"),
                api_url: url("https://open.tiktokapis.com/v2/"),
                connect_scopes: scopes(&["user.info.basic", "video.publish", "video.upload"]),
                ..base
            },
            InstagramLogin => Self {
                flow: Flow::InstagramLogin,
                token_url: url("https://graph.instagram.com/refresh_access_token"),
                min_token_age: secs(24 * HOUR),
                refreshable_after_expiry: false,
                jitter: secs(6 * HOUR),
                publish_scopes: scopes(&[
                    "instagram_business_basic",
                    "instagram_business_content_publish",
                ]),
                authorize_url: url("https://www.instagram.com/oauth/authorize"),
                exchange_url: url("https://api.instagram.com/oauth/access_token"),
                api_url: url("https://graph.instagram.com/"),
                connect_scopes: scopes(&[
                    "instagram_business_basic",
                    "instagram_business_content_publish",
                ]),
                ..base
            },
            Threads => Self {
                flow: Flow::Threads,
                token_url: url("https://graph.threads.net/refresh_access_token"),
                min_token_age: secs(24 * HOUR),
                refreshable_after_expiry: false,
                jitter: secs(6 * HOUR),
                publish_scopes: scopes(&["threads_basic", "threads_content_publish"]),
                authorize_url: url("https://threads.net/oauth/authorize"),
                exchange_url: url("https://graph.threads.net/oauth/access_token"),
                api_url: url("https://graph.threads.net/v1.0/"),
                connect_scopes: scopes(&["threads_basic", "threads_content_publish"]),
                ..base
            },
            // Hosts are per account, so there is no token_url. Lifetimes are
            // read from each answer (JWT exp claims, expires_in); the refresh
            // token's own lifetime is left unknown because it differs between
            // app passwords (90 days, read from the JWT) and OAuth sessions
            // (server-defined, not returned).
            Bluesky => Self {
                flow: Flow::Bluesky,
                rotates_refresh_token: true,
                default_access_token_lifetime: secs(HOUR),
                connect_scopes: scopes(&["atproto", "transition:generic"]),
                ..base
            },
            Mastodon => Self {
                flow: Flow::Mastodon,
                publish_scopes: scopes(&["write:statuses|write"]),
                connect_scopes: scopes(&["read:accounts", "write:statuses", "write:media"]),
                connect_pkce: true,
                ..base
            },
            // Page tokens never expire (health checks); a stored long-lived
            // user token is re-exchanged, which Meta refuses once it expired.
            FacebookPage | InstagramFacebookLogin => Self {
                flow: Flow::Facebook,
                token_url: url("https://graph.facebook.com/v23.0/oauth/access_token"),
                health_url: url("https://graph.facebook.com/v23.0/debug_token"),
                refreshable_after_expiry: false,
                jitter: secs(6 * HOUR),
                publish_scopes: scopes(if provider == FacebookPage {
                    &["pages_manage_posts"]
                } else {
                    &["instagram_content_publish"]
                }),
                authorize_url: url("https://www.facebook.com/v23.0/dialog/oauth"),
                api_url: url("https://graph.facebook.com/v23.0/"),
                connect_scopes: scopes(if provider == FacebookPage {
                    &[
                        "pages_show_list",
                        "pages_read_engagement",
                        "pages_manage_posts",
                    ]
                } else {
                    &[
                        "pages_show_list",
                        "pages_read_engagement",
                        "instagram_basic",
                        "instagram_content_publish",
                        "business_management",
                    ]
                }),
                ..base
            },
        }
    }
}

macro_rules! providers_settings {
    ($($field:ident => $provider:ident),+ $(,)?) => {
        /// One section per platform, `[providers.<name>]`.
        #[derive(Debug, Clone, Deserialize, Serialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct ProvidersSettings {
            $(pub $field: ProviderSettings,)+
        }

        impl Default for ProvidersSettings {
            fn default() -> Self {
                Self { $($field: ProviderSettings::defaults_for(Provider::$provider),)+ }
            }
        }

        impl ProvidersSettings {
            pub fn get(&self, provider: Provider) -> &ProviderSettings {
                match provider { $(Provider::$provider => &self.$field,)+ }
            }

            pub fn get_mut(&mut self, provider: Provider) -> &mut ProviderSettings {
                match provider { $(Provider::$provider => &mut self.$field,)+ }
            }
        }
    };
}

providers_settings! {
    x => X,
    linkedin_person => LinkedinPerson,
    linkedin_company => LinkedinCompany,
    facebook_page => FacebookPage,
    instagram_facebook_login => InstagramFacebookLogin,
    instagram_login => InstagramLogin,
    threads => Threads,
    tiktok_business => TiktokBusiness,
    tiktok_personal => TiktokPersonal,
    youtube => Youtube,
    pinterest => Pinterest,
    bluesky => Bluesky,
    mastodon => Mastodon,
}

impl ProvidersSettings {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for provider in Provider::ALL {
            self.get(*provider).validate(*provider)?;
        }
        Ok(())
    }
}

impl ProviderSettings {
    /// Numbers first, then the rules between fields.
    fn validate(&self, provider: Provider) -> Result<(), ConfigError> {
        let key = |field: &str| format!("providers.{}.{field}", provider.config_key());
        fraction(&key("refresh_fraction"), self.refresh_fraction)?;
        duration_at_least(&key("refresh_margin"), self.refresh_margin, Duration::ZERO)?;
        duration_at_least(
            &key("default_access_token_lifetime"),
            self.default_access_token_lifetime,
            POSITIVE,
        )?;
        duration_at_least(&key("min_token_age"), self.min_token_age, Duration::ZERO)?;
        duration_at_least(&key("jitter"), self.jitter, Duration::ZERO)?;
        duration_at_least(
            &key("keep_alive_interval"),
            self.keep_alive_interval,
            POSITIVE,
        )?;
        duration_at_least(
            &key("health_check_interval"),
            self.health_check_interval,
            POSITIVE,
        )?;
        if let Some(lifetime) = self.refresh_token_lifetime {
            duration_at_least(&key("refresh_token_lifetime"), lifetime, POSITIVE)?;
        }
        whole_number(&key("max_concurrency"), self.max_concurrency, 1, 100_000)?;
        rate(&key("rate_per_second"), self.rate_per_second)?;

        if let Some(url) = &self.token_url
            && !matches!(url.scheme(), "https" | "http")
        {
            return Err(ConfigError::invalid(
                key("token_url"),
                "must be an http(s) URL",
            ));
        }
        if let Some(url) = &self.plc_directory
            && (!matches!(url.scheme(), "https" | "http")
                || url.host().is_none()
                || url.query().is_some())
        {
            return Err(ConfigError::invalid(
                key("plc_directory"),
                "must be an http(s) URL without a query",
            ));
        }
        if let Some(url) = &self.health_url
            && !matches!(url.scheme(), "https" | "http")
        {
            return Err(ConfigError::invalid(
                key("health_url"),
                "must be an http(s) URL",
            ));
        }
        if self.flow == Flow::Facebook && self.health_url.is_none() {
            return Err(ConfigError::invalid(
                key("health_url"),
                "is required by this flow (the debug_token endpoint)",
            ));
        }
        if !matches!(self.flow, Flow::None | Flow::Mastodon | Flow::Bluesky)
            && self.token_url.is_none()
        {
            return Err(ConfigError::invalid(
                key("token_url"),
                "is required by this flow",
            ));
        }
        for origin in &self.allowed_origins {
            if !matches!(origin.scheme(), "https" | "http")
                || origin.host().is_none()
                || origin.path() != "/"
                || origin.query().is_some()
                || !origin.username().is_empty()
            {
                return Err(ConfigError::invalid(
                    key("allowed_origins"),
                    format!("{origin} is not a bare http(s) origin"),
                ));
            }
        }
        if self.client_id.as_deref() == Some("") {
            return Err(ConfigError::invalid(
                key("client_id"),
                "must not be empty when set",
            ));
        }
        Ok(())
    }
}

fn is_false(value: &bool) -> bool {
    !*value
}
