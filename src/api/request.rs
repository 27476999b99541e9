//! A request as data: method, URL, extra headers and body. Actions build these from
//! rendered inputs; the client sends them; dry-run prints them. Building a request once
//! for both is what keeps the preview from drifting from what a run sends.
//!
//! Takes: what an action decided to send. Gives: data the client sends and the plan shows.
//! Must not: touch the network or the API key (the client adds it at send time).

use std::path::PathBuf;

use serde::Serialize;

use super::endpoint::Target;
use crate::template::Text;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
    Head,
}

impl Method {
    pub fn parse(text: &str) -> Option<Method> {
        Some(match text.to_ascii_uppercase().as_str() {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            "HEAD" => Method::Head,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Head => "HEAD",
        }
    }

    /// GET and HEAD may be retried on any transient failure (SPEC §4).
    pub fn is_safe(self) -> bool {
        matches!(self, Method::Get | Method::Head)
    }

    pub fn to_reqwest(self) -> reqwest::Method {
        match self {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Patch => reqwest::Method::PATCH,
            Method::Delete => reqwest::Method::DELETE,
            Method::Head => reqwest::Method::HEAD,
        }
    }
}

/// One multipart part.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Part {
    Text {
        field: String,
        value: String,
    },
    File {
        field: String,
        #[serde(rename = "file")]
        path: PathBuf,
        file_name: String,
        /// Bytes; `None` when the file is known only after the run (never sent then).
        size: Option<u64>,
        content_type: String,
    },
}

/// Sees each chunk of a file body as it is read, with its offset in the file, on the
/// reading thread and before the chunk is sent (an upload hashes the very bytes it sends).
pub type ChunkSink = std::sync::Arc<dyn Fn(u64, &bytes::Bytes) + Send + Sync>;

/// An optional [`ChunkSink`]: not part of what a request is (two requests differing only
/// in it are equal, and it is not shown).
#[derive(Clone, Default)]
pub struct Seen(pub Option<ChunkSink>);

impl std::fmt::Debug for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Seen(..)"
        } else {
            "Seen(None)"
        })
    }
}

impl PartialEq for Seen {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    None,
    Json(serde_json::Value),
    Multipart(Vec<Part>),
    /// Bytes `offset..offset+len` of a file, streamed raw (a PUT to storage).
    File {
        path: PathBuf,
        offset: u64,
        /// Bytes; `None` when the file is known only after the run (never sent then).
        len: Option<u64>,
        /// Sees each chunk as it is read.
        seen: Seen,
    },
}

/// A concrete request.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpRequest {
    pub method: Method,
    /// The full URL, query included.
    pub url: String,
    /// Parts of the URL are known only after the run (dry-run): `url` shows them, and
    /// the request is never sent.
    pub url_later: bool,
    /// Object storage (a presigned URL): never carries the API key, whatever its origin.
    pub storage: bool,
    /// Headers besides those every request carries (a presigned PUT's own).
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl HttpRequest {
    pub fn get(url: String) -> Self {
        HttpRequest::new(Method::Get, url)
    }

    pub fn new(method: Method, url: String) -> Self {
        HttpRequest {
            method,
            url,
            url_later: false,
            storage: false,
            headers: Vec::new(),
            body: Body::None,
        }
    }

    /// A request to a target that may be known only after the run.
    pub fn to(method: Method, target: Target) -> Self {
        match target {
            Target::Url(url) => HttpRequest::new(method, url),
            Target::Later(url) => HttpRequest {
                url_later: true,
                ..HttpRequest::new(method, url)
            },
        }
    }

    pub fn with_body(self, body: Body) -> Self {
        HttpRequest { body, ..self }
    }

    /// The same request to object storage: no API key, these extra headers.
    pub fn to_storage(self, headers: Vec<(String, String)>) -> Self {
        HttpRequest {
            storage: true,
            headers,
            ..self
        }
    }

    /// The same request with query parameters appended (values may be known later).
    pub fn with_query(self, params: &[(String, Text)]) -> Self {
        let later = params.iter().any(|(_, v)| v.known().is_none());
        let mut url = self.url;
        let mut sep = if url.contains('?') { '&' } else { '?' };
        for (k, v) in params {
            url.push(sep);
            sep = '&';
            url.push_str(&encode_query(k));
            url.push('=');
            url.push_str(&v.encoded(encode_query));
        }
        HttpRequest {
            url,
            url_later: self.url_later || later,
            ..self
        }
    }
}

/// Percent-encodes one path segment (ids from templates may hold anything); parts known
/// only after the run stay readable.
pub fn segment_text(value: &Text) -> String {
    value.encoded(segment)
}

/// Percent-encodes one path segment.
pub fn segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A file name as a multipart part may carry it (the HTML standard's form encoding):
/// control characters (CR and LF would end the part's header line), `"` and bytes that
/// are not UTF-8 (file names are bytes on Unix) are percent-encoded; the rest is kept.
pub fn part_file_name(name: &[u8]) -> String {
    let mut out = String::with_capacity(name.len());
    for chunk in name.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() || c == '"' {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("%{b:02X}"));
                }
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Appends query parameters to a URL, in order, form-urlencoded.
pub fn with_query(url: &str, params: &[(String, String)]) -> String {
    if params.is_empty() {
        return url.to_string();
    }
    let mut out = url.to_string();
    let mut sep = if url.contains('?') { '&' } else { '?' };
    for (k, v) in params {
        out.push(sep);
        sep = '&';
        out.push_str(&encode_query(k));
        out.push('=');
        out.push_str(&encode_query(v));
    }
    out
}

pub fn encode_query(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// A query value as text: strings as they are, other JSON as JSON.
pub fn query_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The URL with its query string, fragment and userinfo removed: what errors and logs may
/// show (a presigned URL's signature lives in the query; a redirect may carry
/// `user:password@` before the host).
pub fn display_url(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or(url);
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find('/').unwrap_or(rest.len());
            let host = match rest[..end].rfind('@') {
                Some(at) => &rest[at + 1..end],
                None => &rest[..end],
            };
            format!("{scheme}://{host}{}", &rest[end..])
        }
        None => url.to_string(),
    }
}

/// The path of a URL without its query, for messages.
pub fn display_path(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => u.path().to_string(),
        Err(_) => display_url(url),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding() {
        assert_eq!(segment("ds 1/x"), "ds%201%2Fx");
        assert_eq!(
            with_query(
                "http://h/a",
                &[("limit".into(), "10".into()), ("q".into(), "a b&c".into())]
            ),
            "http://h/a?limit=10&q=a+b%26c"
        );
        assert_eq!(display_url("http://h/a?sig=secret"), "http://h/a");
        assert_eq!(
            display_url("http://user:pa%40ss@h:8/a?sig=secret#f"),
            "http://h:8/a"
        );
        assert_eq!(display_url("https://tok@h"), "https://h");
        assert_eq!(display_path("http://u:p@h/a/b?x"), "/a/b");
        assert_eq!(
            part_file_name(b"crlf\r\nX-Injected: 1\"\xc2\x85.txt\xff\x85"),
            "crlf%0D%0AX-Injected: 1%22%C2%85.txt%FF%85"
        );
    }
}
