//! Threads: `th_refresh_token` on graph.threads.net, with the same 24-hour
//! minimum age and 60-day final expiry as Instagram Login (see `long_lived`).
//! Needs the `threads_basic` permission.

use crate::config::ProviderSettings;
use crate::providers::{HttpClient, LongLivedRefresh};

pub fn from_settings(settings: &ProviderSettings, http: HttpClient) -> Option<LongLivedRefresh> {
    LongLivedRefresh::new("Threads", "th_refresh_token", settings, http)
}
