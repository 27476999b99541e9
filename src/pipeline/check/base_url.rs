//! The base URL policy (SPEC §1): takes a URL as written (in the file, a flag or the
//! environment) and says whether avala-pipe may send the key there: absolute https, or
//! plain http to a loopback host only, and never a template.
//!
//! Must not: resolve names or open connections; the answer depends on the text alone.

use crate::template;

/// Why a base URL is refused. The messages say what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BaseUrlError {
    #[error("the base URL `{url}` contains template syntax, but base URLs are used as written, never rendered: write it out as an https:// URL (plain http:// only to loopback), or pass it with --base-url or AVALA_BASE_URL")]
    Template { url: String },
    #[error("invalid base URL `{url}`: {reason}")]
    Invalid {
        url: String,
        reason: url::ParseError,
    },
    #[error("refusing plain http:// base URL `{url}`: the API key would travel unencrypted; use https:// (plain http is allowed only to loopback hosts)")]
    PlainHttp { url: String },
    #[error("unsupported scheme `{scheme}` in base URL `{url}`: use https://")]
    Scheme { scheme: String, url: String },
}

/// A base URL must be absolute http(s); plain http only to loopback (SPEC §1).
pub fn check_base_url(url: &str) -> Result<(), BaseUrlError> {
    let owned = || url.to_string();
    if template::has_syntax(url) {
        return Err(BaseUrlError::Template { url: owned() });
    }
    let parsed = reqwest::Url::parse(url).map_err(|reason| BaseUrlError::Invalid {
        url: owned(),
        reason,
    })?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&parsed) => Ok(()),
        "http" => Err(BaseUrlError::PlainHttp { url: owned() }),
        other => Err(BaseUrlError::Scheme {
            scheme: other.to_string(),
            url: owned(),
        }),
    }
}

/// Is the URL's host loopback (127.0.0.0/8, ::1, localhost)?
pub fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}
