//! The two response shapes of the Avala API (API.md), understood without configuration:
//! list pages (`items/has_more/cursor` or `results/next`), ids (`id` or `uid`), export
//! states, and error bodies (`{"error": {...}}`, `{"detail": ...}`, field maps, text).
//!
//! Must not: send requests.

use serde_json::value::RawValue;
use serde_json::Value;

/// One page of a list.
#[derive(Debug)]
pub struct Page {
    pub items: Vec<Value>,
    /// The cursor of the next page, when there is one.
    pub next_cursor: Option<String>,
    /// The name of the query parameter that carries it (`cursor` or `page`).
    pub cursor_param: &'static str,
    pub total: Option<u64>,
}

/// Reads a list page in either shape. Takes the body so the items move out of it: a
/// page of a big list is not copied item by item.
/// A response body that is not what the action reads, in words.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadBody(pub String);

impl From<&str> for BadBody {
    fn from(text: &str) -> Self {
        BadBody(text.to_string())
    }
}

impl From<String> for BadBody {
    fn from(text: String) -> Self {
        BadBody(text)
    }
}

pub fn parse_page(body: Value) -> Result<Page, BadBody> {
    let mut obj = match body {
        Value::Object(obj) => obj,
        other => {
            return Err(BadBody(format!(
                "expected a JSON object with a list, got {}",
                kind(&other)
            )))
        }
    };
    let list_key = if obj.contains_key("items") {
        "items"
    } else {
        "results"
    };
    let items = match obj.get_mut(list_key) {
        Some(Value::Array(items)) => std::mem::take(items),
        Some(other) => return Err(BadBody(format!("`items` is {}, not a list", kind(other)))),
        None => {
            return Err(BadBody(
                "the response has neither `items` nor `results`: not a list page".to_string(),
            ))
        }
    };
    let total = obj
        .get("total")
        .or_else(|| obj.get("count"))
        .and_then(Value::as_u64);
    let mut cursor_param = "cursor";
    let next_cursor = match obj.get("has_more") {
        Some(Value::Bool(false)) => None,
        Some(Value::Bool(true)) => {
            let c = obj
                .get("cursor")
                .or_else(|| obj.get("next_cursor"))
                .and_then(Value::as_str);
            let from_next = || {
                obj.get("next")
                    .and_then(Value::as_str)
                    .and_then(cursor_from_next)
            };
            match c {
                Some(c) if !c.is_empty() => Some(c.to_string()),
                _ => match from_next() {
                    Some((param, value)) => {
                        cursor_param = param;
                        Some(value)
                    }
                    None => return Err("`has_more` is true but the page carries no cursor".into()),
                },
            }
        }
        _ => match obj.get("next") {
            Some(Value::String(next)) if !next.is_empty() => {
                let (param, value) = cursor_from_next(next).ok_or_else(|| {
                    format!(
                        "cannot find a cursor in the `next` link {}",
                        super::request::display_url(next)
                    )
                })?;
                cursor_param = param;
                Some(value)
            }
            _ => None,
        },
    };
    Ok(Page {
        items,
        next_cursor,
        cursor_param,
        total,
    })
}

/// What a page says of paging, and its items as the server wrote them (not parsed).
#[derive(Debug)]
pub struct PageInfo {
    /// The page's items, each the text the server wrote.
    pub items: Vec<Box<RawValue>>,
    pub next_cursor: Option<String>,
    pub cursor_param: &'static str,
    pub total: Option<u64>,
}

/// The paging fields of a page, from its bytes, its items captured as text but not
/// built: the next page can be asked for at once, and an item is parsed only when read.
/// The rules are [`parse_page`]'s (it is run on the page with its list left empty).
/// `None` when the body is not a page this pass reads (not JSON, not an object, a list
/// that is not an array): [`parse_page`] on the whole body then says what is wrong.
pub fn page_info(bytes: &[u8]) -> Option<PageInfo> {
    let light: LightPage = serde_json::from_slice(bytes).ok()?;
    let items = if light.fields.contains_key("items") {
        light.items
    } else {
        light.results
    };
    let page = parse_page(Value::Object(light.fields)).ok()?;
    Some(PageInfo {
        items,
        next_cursor: page.next_cursor,
        cursor_param: page.cursor_param,
        total: page.total,
    })
}

/// The next page a page points to, guessed from its last bytes alone: the plain fields
/// after its list (`"total":5,"has_more":true,"cursor":"c2"}`, read backwards), under
/// [`parse_page`]'s rules. Lets the next request go out before the page is read; the
/// guess is checked against [`page_info`] once it is (a wrong one is dropped). `None`
/// when the tail is not plain enough to tell (escapes, nested values, no next page).
pub fn next_from_tail(bytes: &[u8]) -> Option<(String, &'static str)> {
    let mut fields = serde_json::Map::new();
    let mut at = trim_end(bytes, bytes.len());
    at = at.checked_sub(1).filter(|&i| bytes[i] == b'}')?;
    loop {
        // `"key": value`, backwards: the value, then the colon, then the key.
        let (value, start) = scalar_before(bytes, at)?;
        let colon = trim_end(bytes, start).checked_sub(1)?;
        (bytes[colon] == b':').then_some(())?;
        let (key, start) = string_before(bytes, colon)?;
        fields.insert(key, value);
        let before = trim_end(bytes, start).checked_sub(1)?;
        match bytes[before] {
            b',' => at = before,
            // The page's list (or its start): what comes before is not read.
            _ => break,
        }
        if matches!(bytes[trim_end(bytes, before).checked_sub(1)?], b']' | b'}') {
            break;
        }
    }
    fields.insert("items".into(), Value::Array(Vec::new()));
    let page = parse_page(Value::Object(fields)).ok()?;
    page.next_cursor.map(|c| (c, page.cursor_param))
}

/// The end of `bytes[..end]` without trailing JSON whitespace.
fn trim_end(bytes: &[u8], mut end: usize) -> usize {
    while end > 0 && matches!(bytes[end - 1], b' ' | b'\t' | b'\n' | b'\r') {
        end -= 1;
    }
    end
}

/// The plain scalar that ends at `end` (whitespace before `end` skipped), and where it
/// starts: a string without escapes, a number, `true`, `false` or `null`.
fn scalar_before(bytes: &[u8], end: usize) -> Option<(Value, usize)> {
    let end = trim_end(bytes, end);
    if bytes.get(end.checked_sub(1)?) == Some(&b'"') {
        let (text, start) = string_before(bytes, end)?;
        return Some((Value::String(text), start));
    }
    let start = bytes[..end]
        .iter()
        .rposition(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+')))
        .map_or(0, |i| i + 1);
    let value = serde_json::from_slice::<Value>(&bytes[start..end]).ok()?;
    (!value.is_object() && !value.is_array()).then_some((value, start))
}

/// The string without escapes that ends at `end` (its closing quote just before, after
/// trailing whitespace), and where its opening quote is.
fn string_before(bytes: &[u8], end: usize) -> Option<(String, usize)> {
    let close = trim_end(bytes, end).checked_sub(1)?;
    (bytes[close] == b'"').then_some(())?;
    let open = bytes[..close].iter().rposition(|&b| b == b'"')?;
    let text = &bytes[open + 1..close];
    if text.contains(&b'\\') || (open > 0 && bytes[open - 1] == b'\\') {
        return None;
    }
    Some((std::str::from_utf8(text).ok()?.to_string(), open))
}

/// A page's top-level fields, with `items` and `results` captured and left empty.
struct LightPage {
    fields: serde_json::Map<String, Value>,
    items: Vec<Box<RawValue>>,
    results: Vec<Box<RawValue>>,
}

impl<'de> serde::Deserialize<'de> for LightPage {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = LightPage;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list page")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<LightPage, A::Error> {
                let mut page = LightPage {
                    fields: serde_json::Map::new(),
                    items: Vec::new(),
                    results: Vec::new(),
                };
                while let Some(key) = map.next_key::<String>()? {
                    let value = match key.as_str() {
                        "items" | "results" => {
                            *if key == "items" {
                                &mut page.items
                            } else {
                                &mut page.results
                            } = map.next_value()?;
                            Value::Array(Vec::new())
                        }
                        _ => map.next_value()?,
                    };
                    page.fields.insert(key, value);
                }
                Ok(page)
            }
        }
        d.deserialize_map(Fields)
    }
}

/// The `cursor` (or `page`) query value of a `next` URL.
fn cursor_from_next(next: &str) -> Option<(&'static str, String)> {
    let query = next.split_once('?')?.1;
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    for param in ["cursor", "page"] {
        if let Some((_, v)) = pairs.iter().find(|(k, _)| k == param) {
            return Some((param, v.clone()));
        }
    }
    None
}

/// A response body as JSON; a body that is not JSON is kept as text (the `request`
/// action passes text on), with the reason it is not JSON: invalid UTF-8 (at which byte),
/// a syntax error (at which byte), or nesting deeper than the parser follows.
pub fn decode_body(bytes: &[u8]) -> (Value, Option<String>) {
    if bytes.is_empty() {
        return (Value::Null, None);
    }
    let err = match serde_json::from_slice(bytes) {
        Ok(v) => return (v, None),
        Err(e) => e,
    };
    let why = match std::str::from_utf8(bytes) {
        Err(utf8) => format!(
            "it is not valid UTF-8 (the first invalid byte is at offset {} of {})",
            utf8.valid_up_to(),
            bytes.len()
        ),
        Ok(_) => {
            let at = byte_offset(bytes, err.line(), err.column());
            let what = err.to_string();
            // serde_json's own words end with "at line L column C": give the byte instead.
            let what = what.split(" at line ").next().unwrap_or(&what);
            if what.contains("recursion limit") {
                format!("it nests arrays or objects more than 128 levels deep (at byte {at} of {}); not read", bytes.len())
            } else {
                format!(
                    "{what} at byte {at} of {} (starting `{}`)",
                    bytes.len(),
                    shorten(&printable(&bytes[..bytes.len().min(40)]), 40)
                )
            }
        }
    };
    (
        Value::String(String::from_utf8_lossy(bytes).into_owned()),
        Some(why),
    )
}

/// Bytes as text with control characters shown as `.` (the start of a body, for messages).
fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| if c.is_control() { '.' } else { c })
        .collect()
}

/// The byte offset of serde_json's 1-based line and column.
fn byte_offset(bytes: &[u8], line: usize, column: usize) -> usize {
    let mut start = 0;
    for _ in 1..line {
        match bytes[start..].iter().position(|&b| b == b'\n') {
            Some(i) => start += i + 1,
            None => break,
        }
    }
    (start + column.saturating_sub(1)).min(bytes.len())
}

/// Gives every object that has `uid` but no `id` an `id` too, everywhere inside.
pub fn normalize_ids(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if !map.contains_key("id") {
                if let Some(uid) = map.get("uid").cloned() {
                    map.insert("id".into(), uid);
                }
            }
            map.values_mut().for_each(normalize_ids);
        }
        Value::Array(items) => items.iter_mut().for_each(normalize_ids),
        _ => {}
    }
}

/// Where an export stands.
#[derive(Debug, PartialEq, Eq)]
pub enum ExportState {
    Done {
        download_url: String,
    },
    Failed {
        message: String,
    },
    Running {
        status: String,
    },
    /// The server says it is done (`completed`) but gives no download URL yet.
    NoUrl {
        status: String,
    },
}

pub fn export_state(body: &Value) -> ExportState {
    let status = body
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_ascii_lowercase();
    match status.as_str() {
        "completed" | "exported" => match body.get("download_url").and_then(Value::as_str) {
            Some(url) if !url.is_empty() => ExportState::Done {
                download_url: url.to_string(),
            },
            _ => ExportState::NoUrl { status },
        },
        "failed" | "error" | "cancelled" | "canceled" => {
            let message = ["error_message", "message", "error", "detail", "reason"]
                .iter()
                .find_map(|k| body.get(*k).and_then(message_text))
                .unwrap_or_else(|| "no reason given".into());
            ExportState::Failed {
                message: format!("{status}: {message}"),
            }
        }
        _ => ExportState::Running { status },
    }
}

fn message_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Object(o) => o.get("message").and_then(message_text),
        _ => None,
    }
}

/// The server's message from an error body of any shape, cut short.
pub fn error_message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let message = match parsed {
        Some(value) => message_from_json(&value).unwrap_or_else(|| value.to_string()),
        None => text.trim().to_string(),
    };
    shorten(&message, 500)
}

fn message_from_json(value: &Value) -> Option<String> {
    if let Some(err) = value.get("error") {
        if let Some(msg) = err.get("message").and_then(Value::as_str) {
            return Some(match err.get("code").and_then(Value::as_str) {
                Some(code) => format!("{msg} ({code})"),
                None => msg.to_string(),
            });
        }
        if let Some(s) = err.as_str() {
            return Some(s.to_string());
        }
    }
    if let Some(detail) = value.get("detail") {
        return Some(match detail {
            Value::String(s) => s.clone(),
            other => message_from_json(other).unwrap_or_else(|| other.to_string()),
        });
    }
    match value {
        Value::Object(map) if !map.is_empty() => Some(
            map.iter()
                .map(|(k, v)| format!("{k}: {}", joined(v)))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        Value::Array(items) if !items.is_empty() => {
            Some(joined(value)).filter(|_| !items.is_empty())
        }
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

fn joined(v: &Value) -> String {
    match v {
        Value::Array(items) => items.iter().map(joined).collect::<Vec<_>>().join(", "),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Cuts a message for display, masking secrets first (a cut could leave part of one).
pub fn shorten(text: &str, max: usize) -> String {
    let text = &crate::secrets::redact(text);
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let cut: String = text.chars().take(max).collect();
        format!("{cut}…")
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The light pass reads what the full parse reads: counts, cursors, totals, and says
    /// `None` where the full parse has something to say.
    #[test]
    fn page_info_agrees_with_parse_page() {
        let pages = [
            r#"{"items":[],"has_more":false}"#,
            r#" { "items" : [ {"a":"x\"]}[{"} , [1,[2]], "s\\", -1.5e3, true, null ] , "has_more" : true , "cursor" : "c1" , "total": 7 } "#,
            r#"{"results":[{"id":1},{"id":2}],"next":"https://h/api/v1/x/?page=3&limit=2","count":9}"#,
            r#"{"has_more":true,"next_cursor":"n\u00e9","items":[{"k":"{"}]}"#,
            r#"{"items":[1,2,3],"results":[4],"has_more":false}"#,
            r#"{"items":[1],"items":[1,2],"has_more":false}"#,
        ];
        for text in pages {
            let info = page_info(text.as_bytes()).unwrap_or_else(|| panic!("{text}"));
            let page = parse_page(serde_json::from_str(text).unwrap());
            match page {
                Ok(page) => {
                    let items: Vec<Value> = info
                        .items
                        .iter()
                        .map(|raw| serde_json::from_str(raw.get()).unwrap())
                        .collect();
                    assert_eq!(items, page.items, "{text}");
                    assert_eq!(info.next_cursor, page.next_cursor, "{text}");
                    assert_eq!(info.cursor_param, page.cursor_param, "{text}");
                    assert_eq!(info.total, page.total, "{text}");
                }
                Err(e) => panic!("{text}: {e}"),
            }
        }
        // Not pages this pass reads: the full parse says why.
        for text in [
            "[1,2]",
            r#"{"items":{"a":1}}"#,
            r#"{"items":[1,2"#,
            r#"{"items":[],"has_more":true} x"#,
            r#"{"items":[],"has_more":tru"#,
            r#"{"items":[],"has_more":true}"#,
            "",
        ] {
            assert!(page_info(text.as_bytes()).is_none(), "{text}");
        }
    }

    #[test]
    fn the_tail_guesses_the_next_page_as_the_whole_page_says() {
        let pages = [
            (
                r#"{"items":[{"a":1}],"total":3,"has_more":true,"cursor":"c2"}"#,
                Some("c2"),
            ),
            (
                " {\"items\": [1] , \"has_more\" : true , \"cursor\" : \"c 2\" }\n",
                Some("c 2"),
            ),
            (
                r#"{"results":[{"id":1}],"next":"https://h/api/v1/x/?page=3&limit=2","count":9}"#,
                Some("3"),
            ),
            (r#"{"items":[],"has_more":false,"cursor":"c9"}"#, None),
            (r#"{"results":[],"next":null,"count":0}"#, None),
            // Not plain enough to tell: nothing guessed.
            (r#"{"items":[1],"has_more":true,"cursor":"a\"b"}"#, None),
            (r#"{"items":[1],"has_more":true,"cursor":{"x":1}}"#, None),
            (r#"{"has_more":true,"cursor":"c2","items":[1,2]}"#, None),
            ("", None),
            ("}", None),
            (r#"{"cursor":"c2"}"#, None),
        ];
        for (text, want) in pages {
            let guess = next_from_tail(text.as_bytes());
            assert_eq!(guess.as_ref().map(|g| g.0.as_str()), want, "{text}");
            if let (Some(guess), Some(info)) = (&guess, page_info(text.as_bytes())) {
                assert_eq!(Some(&guess.0), info.next_cursor.as_ref(), "{text}");
                assert_eq!(guess.1, info.cursor_param, "{text}");
            }
        }
    }

    #[test]
    fn both_page_shapes() {
        let p = parse_page(json!({"items": [1], "total": 3, "has_more": true, "cursor": "c2"}))
            .unwrap();
        assert_eq!(p.next_cursor.as_deref(), Some("c2"));
        assert_eq!(p.total, Some(3));
        let p = parse_page(json!({"results": [1, 2], "next": "https://h/api/datasets/?cursor=abc%3D&limit=2", "previous": null}))
            .unwrap();
        assert_eq!(p.next_cursor.as_deref(), Some("abc="));
        let p = parse_page(json!({"results": [], "next": null})).unwrap();
        assert!(p.next_cursor.is_none());
        assert!(parse_page(json!({"detail": "x"})).is_err());
    }

    #[test]
    fn error_shapes() {
        assert_eq!(
            error_message(br#"{"error": {"code": "not_found", "message": "Dataset not found", "details": []}}"#),
            "Dataset not found (not_found)"
        );
        assert_eq!(error_message(br#"{"detail": "Not found."}"#), "Not found.");
        assert_eq!(
            error_message(br#"{"name": ["This field is required."], "format": ["bad"]}"#),
            "name: This field is required.; format: bad"
        );
        assert_eq!(
            error_message(b"<html>Bad Gateway</html>"),
            "<html>Bad Gateway</html>"
        );
    }

    #[test]
    fn ids_and_exports() {
        let mut v = json!({"results": [{"uid": "a"}, {"id": "b", "uid": "c"}]});
        normalize_ids(&mut v);
        assert_eq!(v["results"][0]["id"], "a");
        assert_eq!(v["results"][1]["id"], "b");
        assert_eq!(
            export_state(&json!({"status": "exported", "download_url": "u"})),
            ExportState::Done {
                download_url: "u".into()
            }
        );
        assert!(
            matches!(export_state(&json!({"status": "failed", "error": "disk full"})), ExportState::Failed { message } if message.contains("disk full"))
        );
        assert!(matches!(
            export_state(&json!({"status": "completed", "download_url": null})),
            ExportState::NoUrl { .. }
        ));
    }
}
