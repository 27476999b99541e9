//! Where the API is, as data: the base URL, its origin, the trailing-slash convention and
//! the headers a request carries. The plan needs only this (URLs, the origin, the headers
//! as shown); the [`Client`](super::Client) that sends holds one too.
//!
//! Takes: a base URL and settings. Gives: URLs and displayable headers.
//! Must not: open a connection or hold the API key.

use std::time::Duration;

use reqwest::Url;

use super::request::{segment_text, Body, HttpRequest};
use crate::pipeline::model::ApiFlavor;
use crate::template::Text;

pub const KEY_HEADER: &str = "X-Avala-Api-Key";
pub const DEFAULT_BASE_URL: &str = "https://server.avala.ai/api/v1";

/// The API's address and conventions.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub base_url: Url,
    origin: url::Origin,
    /// Which shape of the API the routes follow.
    pub flavor: ApiFlavor,
    pub trailing_slash: bool,
    /// A `Retry-After` longer than this fails at once.
    pub retry_after_cap: Duration,
}

/// Where a request goes: a URL known now, or one known only after the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Url(String),
    /// Shown with its unknown parts; never sent.
    Later(String),
}

impl Endpoint {
    /// An endpoint of the given flavour, with the trailing-slash convention it wants.
    pub fn new(base_url: Url, flavor: ApiFlavor) -> Self {
        Endpoint {
            origin: base_url.origin(),
            base_url,
            flavor,
            trailing_slash: flavor == ApiFlavor::Current,
            retry_after_cap: Duration::from_secs(120),
        }
    }

    /// The URL of an API path (`/datasets`), with the trailing-slash convention applied.
    pub fn api_url(&self, path: &str) -> String {
        let base = self.base_url.as_str().trim_end_matches('/');
        let path = path.trim_start_matches('/');
        let mut url = format!("{base}/{path}");
        if self.trailing_slash && !url.ends_with('/') {
            url.push('/');
        }
        url
    }

    /// The URL of an API path whose `{}` holes are filled, in order, with path segments
    /// (percent-encoded; parts known only after the run stay readable).
    pub fn at(&self, path: &str, segments: &[&Text]) -> Target {
        let mut out = String::with_capacity(path.len() + 16);
        let mut later = false;
        let mut rest = path;
        let mut args = segments.iter();
        while let (Some(i), Some(arg)) = (rest.find("{}"), args.next()) {
            out.push_str(&rest[..i]);
            later |= arg.known().is_none();
            out.push_str(&segment_text(arg));
            rest = &rest[i + 2..];
        }
        out.push_str(rest);
        let url = self.api_url(&out);
        if later {
            Target::Later(url)
        } else {
            Target::Url(url)
        }
    }

    /// [`Endpoint::at`] with the route of the flavour in force.
    pub fn route(&self, documented: &str, current: &str, segments: &[&Text]) -> Target {
        match self.flavor {
            ApiFlavor::Documented => self.at(documented, segments),
            ApiFlavor::Current => self.at(current, segments),
        }
    }

    /// What to tell a user whose request was refused as if the route did not exist: the
    /// server may speak the other shape of the API.
    pub fn flavor_hint(&self) -> String {
        let other = match self.flavor {
            ApiFlavor::Documented => ApiFlavor::Current,
            ApiFlavor::Current => ApiFlavor::Documented,
        };
        format!(
            "this pipeline speaks the {} API (api.flavor: {}); if the server speaks the {} one, set api.flavor: {} (or --api-flavor {})",
            self.flavor.name(),
            self.flavor.name(),
            other.name(),
            other.name(),
            other.name()
        )
    }

    /// An absolute URL as is; a scheme-relative one (`//host/x`) with the base URL's
    /// scheme; anything else is a path under the base URL.
    pub fn resolve(&self, url_or_path: &Text) -> Target {
        match url_or_path {
            Text::Known(s) if is_absolute(s) => Target::Url(s.clone()),
            Text::Known(s) if s.starts_with("//") => {
                Target::Url(format!("{}:{s}", self.base_url.scheme()))
            }
            Text::Known(s) => Target::Url(self.api_url(s)),
            Text::Later(l) => {
                let shown = l.shown();
                if is_absolute(&shown) || shown.starts_with('<') {
                    Target::Later(shown)
                } else {
                    Target::Later(self.api_url(&shown))
                }
            }
        }
    }

    /// Is this URL on the API's own origin (scheme, host, port)?
    pub fn is_api_origin(&self, url: &str) -> bool {
        Url::parse(url).is_ok_and(|u| u.origin() == self.origin)
    }

    /// The headers a request carries, the key shown as `<redacted>` (for the plan).
    /// `Accept-Encoding` is the one reqwest adds (the `gzip` feature); `Host` and
    /// `Content-Length` follow from the URL and the body and are not shown.
    pub fn display_headers(&self, req: &HttpRequest) -> Vec<(String, String)> {
        let mut h = vec![
            ("Accept".to_string(), "application/json".to_string()),
            ("Accept-Encoding".to_string(), "gzip".to_string()),
            ("User-Agent".to_string(), user_agent()),
        ];
        if req.storage {
            // Object storage: never the key.
        } else if req.url_later {
            if !self.is_api_origin(&req.url) {
                h.push((
                    KEY_HEADER.to_string(),
                    "<redacted> (only if the URL is on the API's origin)".to_string(),
                ));
            } else {
                h.push((KEY_HEADER.to_string(), "<redacted>".to_string()));
            }
        } else if self.is_api_origin(&req.url) {
            h.push((KEY_HEADER.to_string(), "<redacted>".to_string()));
        }
        match req.body {
            Body::Json(_) => h.push(("Content-Type".into(), "application/json".into())),
            Body::Multipart(_) => h.push((
                "Content-Type".into(),
                "multipart/form-data; boundary=<generated>".into(),
            )),
            Body::File { .. } | Body::None => {}
        }
        h.extend(req.headers.iter().cloned());
        h
    }
}

/// `http://` or `https://`, in any letter case (schemes are case-insensitive).
pub fn is_absolute(text: &str) -> bool {
    let lower = text.get(..8).unwrap_or(text).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

pub fn user_agent() -> String {
    format!("avala-pipe/{}", env!("CARGO_PKG_VERSION"))
}
