//! LinkedIn, YouTube, Pinterest and TikTok: each platform's consent screen,
//! code exchange and profile call, then a refresh of the connected account.
