//! Pagination mechanics shared by every list route: `limit` and `cursor` parsing, opaque
//! cursors, and the links of the current flavour's `next`/`previous`.
//!
//! It takes a request URI (and Host) and gives an offset window, then turns a window of objects
//! into the flavour's page body. A cursor is `{"o": offset}` in unpadded URL-safe base64, so it
//! needs no escaping in a query string. It must not know what is being listed.

use axum::http::{HeaderMap, Uri};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;

use super::flavor::Problem;
use super::options::Flavor;

pub(crate) const DEFAULT_LIMIT: usize = 100;
pub(crate) const MAX_LIMIT: usize = 1000;

/// The window a list request asks for, and what is needed to link to other windows.
pub(crate) struct ListQuery {
    pub offset: usize,
    pub limit: usize,
    /// Raw `key=value` pieces of the query other than `cursor` (kept as sent, for links).
    rest: Vec<String>,
    /// `http://host/path/`: where links point (the request's own host and path).
    link_base: String,
}

impl ListQuery {
    pub(crate) fn parse(uri: &Uri, headers: &HeaderMap, api_origin: &str) -> Result<Self, Problem> {
        let mut offset = 0;
        let mut limit = DEFAULT_LIMIT;
        let mut rest = Vec::new();
        for piece in uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (key, value) = piece.split_once('=').unwrap_or((piece, ""));
            match key {
                "cursor" if value.is_empty() => {}
                "cursor" => {
                    offset = decode_cursor(&percent_decode(value)).ok_or_else(|| {
                        Problem::BadRequest {
                            message: "Invalid cursor".into(),
                        }
                    })?;
                }
                "limit" => {
                    limit = percent_decode(value)
                        .parse()
                        .ok()
                        .filter(|l| (1..=MAX_LIMIT).contains(l))
                        .ok_or_else(|| Problem::InvalidParam {
                            field: "limit",
                            message: format!(
                                "Ensure limit is an integer between 1 and {MAX_LIMIT}."
                            ),
                        })?;
                    rest.push(piece.to_owned());
                }
                _ => rest.push(piece.to_owned()),
            }
        }
        let origin = headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map_or_else(|| api_origin.to_owned(), |host| format!("http://{host}"));
        let path = uri.path();
        let slash = if path.ends_with('/') { "" } else { "/" };
        Ok(ListQuery {
            offset,
            limit,
            rest,
            link_base: format!("{origin}{path}{slash}"),
        })
    }

    /// The positions this request covers in a list of `total`.
    pub(crate) fn window(&self, total: usize) -> std::ops::Range<usize> {
        let end = total.min(self.offset.saturating_add(self.limit));
        self.offset.min(end)..end
    }

    /// The page body for `objects` (this window of a list of `total`). With `repeat_cursor`
    /// the next cursor is the current one; the returned flag says whether that happened.
    pub(crate) fn page(
        &self,
        flavor: Flavor,
        objects: Vec<Value>,
        total: usize,
        repeat_cursor: bool,
    ) -> (Value, bool) {
        let end = self.offset.saturating_add(objects.len());
        let has_more = end < total;
        let next = has_more.then(|| encode_cursor(if repeat_cursor { self.offset } else { end }));
        let previous = (self.offset > 0).then(|| {
            let offset = self.offset.saturating_sub(self.limit);
            (offset > 0).then(|| encode_cursor(offset))
        });
        let body = flavor.page(objects, total, next, previous, |cursor| self.link(cursor));
        (body, has_more && repeat_cursor)
    }

    fn link(&self, cursor: Option<&str>) -> String {
        let mut pieces = self.rest.clone();
        if let Some(cursor) = cursor {
            pieces.push(format!("cursor={cursor}"));
        }
        if pieces.is_empty() {
            self.link_base.clone()
        } else {
            format!("{}?{}", self.link_base, pieces.join("&"))
        }
    }
}

pub(crate) fn encode_cursor(offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("{{\"o\":{offset}}}"))
}

fn decode_cursor(cursor: &str) -> Option<usize> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Cursor {
        o: usize,
    }
    let bytes = URL_SAFE_NO_PAD.decode(cursor.trim_end_matches('=')).ok()?;
    serde_json::from_slice::<Cursor>(&bytes).ok().map(|c| c.o)
}

/// Decodes `%XX` escapes (and `+` as a space), leaving malformed escapes as they are.
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        assert_eq!(encode_cursor(100), "eyJvIjoxMDB9");
        assert_eq!(decode_cursor(&encode_cursor(12_345)), Some(12_345));
        assert_eq!(decode_cursor("not-a-cursor"), None);
        assert_eq!(decode_cursor("e30"), None); // "{}"
        assert_eq!(percent_decode("eyJvIjoxMDB9%3D"), "eyJvIjoxMDB9=");
        assert_eq!(percent_decode("a%2"), "a%2");
    }
}
