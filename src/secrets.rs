//! Secrets and their masking: the API key and the values of the variables listed under
//! `secrets:` become `***` in every output — text, JSON, logs — also where they appear
//! JSON-escaped, percent-encoded (two ways) or base64-encoded. The CLI installs the run's
//! redactor once ([`install`]); log lines and shortened messages pass through [`redact`].
//!
//! Must not: decide what is secret (the CLI does) or print anything.

use std::sync::RwLock;

use serde_json::Value;

static ACTIVE: RwLock<Option<Redactor>> = RwLock::new(None);

/// Makes `redactor` the one [`redact`] applies, for the rest of the process.
pub fn install(redactor: Redactor) {
    if let Ok(mut active) = ACTIVE.write() {
        *active = Some(redactor);
    }
}

/// Checks that each named secret (name, value) is long enough to mask ([`check_length`]),
/// then installs a redactor for all of them in every form ([`forms`]).
pub fn install_checked(named: impl IntoIterator<Item = (String, String)>) -> Result<(), TooShort> {
    let mut values = Vec::new();
    for (name, value) in named {
        check_length(&name, &value)?;
        values.extend(forms(&value));
    }
    install(Redactor::new(values));
    Ok(())
}

/// Masks the installed secrets in `text` (unchanged when none is installed).
pub fn redact(text: &str) -> String {
    match ACTIVE.read() {
        Ok(active) => match active.as_ref() {
            Some(r) => r.text(text),
            None => text.to_string(),
        },
        Err(_) => text.to_string(),
    }
}

/// A secret as it may appear in output: as is, JSON-escaped (a body printed as text),
/// percent-encoded as a path segment or query value by us, and as the URL parser encodes
/// a path.
pub fn forms(secret: &str) -> Vec<String> {
    let json = serde_json::to_string(secret).unwrap_or_default();
    let mut forms = vec![
        secret.to_string(),
        json.get(1..json.len().saturating_sub(1))
            .unwrap_or_default()
            .to_string(),
        crate::api::request::segment(secret),
        crate::api::request::encode_query(secret),
    ];
    if let Ok(mut url) = reqwest::Url::parse("http://h/") {
        url.set_path(secret);
        forms.push(url.path().trim_start_matches('/').to_string());
    }
    forms.retain(|f| !f.is_empty());
    forms.sort();
    forms.dedup();
    forms
}

/// The shortest secret masked: a shorter one would turn unrelated text into `***` all over
/// the output, so the CLI refuses such values before anything runs ([`check_length`]).
pub const MIN_SECRET_CHARS: usize = 4;

/// Refuses a secret too short to mask (`name` says which); an empty or blank value has
/// nothing to mask and passes.
pub fn check_length(name: &str, value: &str) -> Result<(), TooShort> {
    let n = value.trim().chars().count();
    if n == 0 || n >= MIN_SECRET_CHARS {
        return Ok(());
    }
    Err(TooShort {
        name: name.to_string(),
        chars: n,
    })
}

/// A secret too short to mask (its value is never part of the error).
#[derive(Debug, thiserror::Error)]
#[error(
    "{name} is {chars} character{plural} long: secrets (the API key, `secrets:`) shorter than {MIN_SECRET_CHARS} characters cannot be masked in output without masking unrelated text, so they are refused (check the value, or do not list it as a secret)",
    plural = if *chars == 1 { "" } else { "s" }
)]
pub struct TooShort {
    pub name: String,
    pub chars: usize,
}

/// Replaces every secret value (the API key, `secrets:`) with `***` in text and JSON, in
/// every form a server, a proxy or our own encoders may give it:
/// - as is;
/// - with any of its characters percent-encoded (`%2F` or `%2f`, also only some of them,
///   `+` for a space), as the URL parser, form encoding or another client's encoder writes it;
/// - with any of its characters JSON-escaped (`\"`, `\/`, `\u00e9` in either case, surrogate
///   pairs), as a body printed as text shows it;
/// - base64-encoded (standard and URL-safe, at any alignment), as a server or proxy echoes an
///   `Authorization: Basic` header or a token back.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    /// One pattern for every form of every secret; `None` when there is nothing to mask.
    matcher: Option<regex_automata::meta::Regex>,
    /// The values as they are, masked by plain search when the pattern could not be built
    /// (secrets too many or too long for it): never nothing masked.
    plain: Vec<String>,
}

impl Redactor {
    /// Masks each value given, unless it is blank (the CLI refuses values too short to mask:
    /// [`check_length`]).
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut values: Vec<String> = secrets
            .into_iter()
            .filter(|s| !s.trim().is_empty())
            .collect();
        // Longest first: the first alternative that matches wins, so a secret containing
        // another is masked whole.
        values.sort_by_key(|s| std::cmp::Reverse(s.len()));
        values.dedup();
        let mut patterns: Vec<String> = Vec::new();
        for value in &values {
            patterns.push(any_encoding(value));
        }
        // The base64 cores are shorter than the secrets they come from: after them all.
        let mut cores: Vec<String> = values.iter().flat_map(|v| base64_forms(v)).collect();
        cores.sort_by_key(|s| std::cmp::Reverse(s.len()));
        cores.dedup();
        patterns.extend(cores.iter().map(|c| literal(c)));
        if patterns.is_empty() {
            return Redactor::default();
        }
        // Secrets of more than 8 KiB in all (certificates, key files) would make a pattern
        // slow to build: they are masked as they are.
        let total: usize = values.iter().map(String::len).sum();
        if total > 8 << 10 {
            return Redactor {
                matcher: None,
                plain: values,
            };
        }
        let matcher = regex_automata::meta::Regex::builder()
            .configure(regex_automata::meta::Config::new().nfa_size_limit(Some(64 << 20)))
            .build(&patterns.join("|"));
        match matcher {
            Ok(m) => Redactor {
                matcher: Some(m),
                plain: Vec::new(),
            },
            Err(_) => Redactor {
                matcher: None,
                plain: values,
            },
        }
    }

    fn masks_any(&self, text: &str) -> bool {
        match &self.matcher {
            Some(m) => m.is_match(text),
            None => self.plain.iter().any(|p| text.contains(p.as_str())),
        }
    }

    pub fn text(&self, text: &str) -> String {
        let Some(m) = &self.matcher else {
            let mut out = text.to_string();
            for p in &self.plain {
                if out.contains(p.as_str()) {
                    out = out.replace(p.as_str(), "***");
                }
            }
            return out;
        };
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for found in m.find_iter(text) {
            out.push_str(&text[last..found.start()]);
            out.push_str("***");
            last = found.end();
        }
        out.push_str(&text[last..]);
        out
    }

    /// JSON text (compact), masked as [`Redactor::json`] masks a value, without parsing
    /// it when nothing needs masking; true when something was masked.
    /// (The journal writes a step's outputs this way: cloning a 20k-item list to mask it
    /// cost more than writing it.)
    pub fn json_text_masked(&self, text: String) -> (String, bool) {
        // Most outputs hold no secret: one scan of the whole text instead of one per string
        // and key. Only with the pattern, which matches JSON-escaped forms too (a plain
        // search for secrets too long for one would miss a secret holding a `"`).
        let nothing = match &self.matcher {
            Some(m) => !m.is_match(&text),
            None => self.plain.is_empty(),
        };
        if nothing {
            return (text, false);
        }
        // Something may need masking (rare): as a value, masked string by string.
        let value = serde_json::from_str::<Value>(&text).unwrap_or(Value::Null);
        let changed = std::cell::Cell::new(false);
        let shown = MaskedJson {
            value: &value,
            redactor: self,
            changed: &changed,
        };
        let text = serde_json::to_string(&shown).unwrap_or_default();
        (text, changed.get())
    }

    pub fn json(&self, value: &mut Value) {
        self.json_masked(value);
    }

    /// Masks like [`Redactor::json`]; true when something was masked (so callers need no
    /// copy of the value to compare with).
    pub fn json_masked(&self, value: &mut Value) -> bool {
        if self.matcher.is_none() && self.plain.is_empty() {
            return false;
        }
        match value {
            Value::String(s) if self.masks_any(s) => {
                *s = self.text(s);
                true
            }
            // A numeric secret (a PIN, an account number) echoed as a JSON number.
            Value::Number(n) if self.masks_any(&n.to_string()) => {
                *value = Value::String(self.text(&n.to_string()));
                true
            }
            Value::Array(items) => items
                .iter_mut()
                .fold(false, |changed, v| self.json_masked(v) | changed),
            Value::Object(map) => {
                // Keys too: a server may echo a secret as a field name.
                let keys = map.keys().any(|k| self.masks_any(k));
                if keys {
                    let entries = std::mem::take(map);
                    *map = entries
                        .into_iter()
                        .map(|(k, v)| (self.text(&k), v))
                        .collect();
                }
                map.values_mut()
                    .fold(keys, |changed, v| self.json_masked(v) | changed)
            }
            _ => false,
        }
    }
}

/// A value serialized with every secret masked (see [`Redactor::json_text_masked`]).
struct MaskedJson<'a> {
    value: &'a Value,
    redactor: &'a Redactor,
    changed: &'a std::cell::Cell<bool>,
}

impl MaskedJson<'_> {
    fn masked<'t>(&self, text: &'t str) -> std::borrow::Cow<'t, str> {
        if self.redactor.masks_any(text) {
            self.changed.set(true);
            std::borrow::Cow::Owned(self.redactor.text(text))
        } else {
            std::borrow::Cow::Borrowed(text)
        }
    }
}

impl serde::Serialize for MaskedJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap as _, SerializeSeq as _};
        let r = self.redactor;
        if r.matcher.is_none() && r.plain.is_empty() {
            return serde::Serialize::serialize(self.value, s);
        }
        let inner = |value| MaskedJson {
            value,
            redactor: r,
            changed: self.changed,
        };
        match self.value {
            Value::String(text) => s.serialize_str(&self.masked(text)),
            // A numeric secret (a PIN, an account number) echoed as a JSON number: read
            // as text on the stack, not in a fresh String per number.
            Value::Number(n) => {
                let mut buf = [0u8; 64];
                let len = {
                    let mut cursor = std::io::Cursor::new(&mut buf[..]);
                    std::io::Write::write_fmt(&mut cursor, format_args!("{n}"))
                        .ok()
                        .map(|()| cursor.position() as usize)
                };
                let owned;
                let text = match len {
                    Some(len) => std::str::from_utf8(&buf[..len]).unwrap_or_default(),
                    None => {
                        owned = n.to_string();
                        owned.as_str()
                    }
                };
                if r.masks_any(text) {
                    self.changed.set(true);
                    s.serialize_str(&r.text(text))
                } else {
                    serde::Serialize::serialize(n, s)
                }
            }
            Value::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&inner(item))?;
                }
                seq.end()
            }
            Value::Object(map) => {
                let mut out = s.serialize_map(Some(map.len()))?;
                for (key, value) in map {
                    out.serialize_entry(&*self.masked(key), &inner(value))?;
                }
                out.end()
            }
            other => serde::Serialize::serialize(other, s),
        }
    }
}

/// A pattern matching exactly `text`.
fn literal(text: &str) -> String {
    text.chars()
        .map(|c| format!("\\x{{{:x}}}", c as u32))
        .collect()
}

/// A hex digit in either case.
fn hex_digit(d: char) -> String {
    if d.is_ascii_alphabetic() {
        format!("[{}{}]", d.to_ascii_lowercase(), d.to_ascii_uppercase())
    } else {
        d.to_string()
    }
}

fn hex_digits(value: u32, width: usize) -> String {
    format!("{value:0width$x}").chars().map(hex_digit).collect()
}

/// A pattern matching `secret` with each character as is, percent-encoded or JSON-escaped.
fn any_encoding(secret: &str) -> String {
    let mut pattern = String::from("(?:");
    for c in secret.chars() {
        let mut forms = vec![literal(&c.to_string())];
        let mut utf8 = [0u8; 4];
        forms.push(
            c.encode_utf8(&mut utf8)
                .bytes()
                .map(|b| format!("%{}", hex_digits(u32::from(b), 2)))
                .collect(),
        );
        let mut units = [0u16; 2];
        forms.push(
            c.encode_utf16(&mut units)
                .iter()
                .map(|u| format!("\\\\u{}", hex_digits(u32::from(*u), 4)))
                .collect(),
        );
        let short = match c {
            '"' => Some(r#"\\""#),
            '\\' => Some(r"\\\\"),
            '/' => Some(r"\\/"),
            '\n' => Some(r"\\n"),
            '\r' => Some(r"\\r"),
            '\t' => Some(r"\\t"),
            '\u{8}' => Some(r"\\b"),
            '\u{c}' => Some(r"\\f"),
            ' ' => Some(r"\+"),
            _ => None,
        };
        forms.extend(short.map(str::to_string));
        pattern.push_str(&format!("(?:{})", forms.join("|")));
    }
    pattern.push(')');
    pattern
}

/// The text a secret always becomes inside any base64 encoding of data that contains it:
/// for each of the three byte alignments it can have, the encoding of its whole 3-byte
/// groups, in the standard and URL-safe alphabets. Short secrets have none (the cores would
/// be too short to mask without hitting unrelated text).
pub fn base64_forms(secret: &str) -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    use base64::Engine as _;
    let bytes = secret.as_bytes();
    let mut forms = Vec::new();
    for skip in 0..3 {
        let Some(rest) = bytes.get(skip..) else {
            continue;
        };
        let whole = &rest[..rest.len() / 3 * 3];
        if whole.len() < 6 {
            continue;
        }
        for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
            forms.push(engine.encode(whole));
        }
    }
    forms
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every encoding the redactor claims, in both letter cases and mixed.
    #[test]
    fn masks_every_claimed_encoding() {
        let secret = "pt_Zq/9 x+é\"K7";
        let r = Redactor::new([secret.to_string()]);
        let pct = |lower: bool, all: bool| -> String {
            secret
                .bytes()
                .map(|b| {
                    if !all && (b.is_ascii_alphanumeric() || b == b'_') {
                        (b as char).to_string()
                    } else if lower {
                        format!("%{b:02x}")
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect()
        };
        let json = serde_json::to_string(secret).unwrap();
        let unicode = |upper: bool| -> String {
            secret
                .encode_utf16()
                .map(|u| {
                    if upper {
                        format!("\\u{u:04X}")
                    } else {
                        format!("\\u{u:04x}")
                    }
                })
                .collect()
        };
        let forms = [
            secret.to_string(),
            json[1..json.len() - 1].to_string(),
            pct(false, true),
            pct(true, true),
            pct(true, false),
            pct(false, false).replace("%20", "+"),
            "pt_Zq%2F9%20x%2b%C3%a9%22K7".to_string(),
            unicode(false),
            unicode(true),
            "pt_Zq\\/9 x+\\u00E9\\\"K7".to_string(),
        ];
        for form in forms {
            assert_eq!(r.text(&format!("<{form}>")), "<***>", "{form}");
        }
        // Not masked: the same text with one character changed, or in another case.
        assert_eq!(r.text("pt_zq/9 x+é\"K7"), "pt_zq/9 x+é\"K7");
        assert_eq!(r.text("%70%74_Zq%2F9"), "%70%74_Zq%2F9");
    }

    #[test]
    fn short_secrets_are_refused_blank_ones_ignored() {
        assert!(check_length("T", "abc")
            .unwrap_err()
            .to_string()
            .contains("T is 3 characters"));
        assert!(check_length("T", "é").is_err());
        assert!(check_length("T", "abcd").is_ok());
        assert!(check_length("T", "").is_ok());
        assert!(check_length("T", "   ").is_ok());
        assert_eq!(Redactor::new(["   ".to_string()]).text("a   b"), "a   b");
        assert_eq!(Redactor::new(["abcd".to_string()]).text("xabcdx"), "x***x");
    }

    #[test]
    fn a_secret_too_long_for_the_pattern_is_still_masked_as_is() {
        let huge: String = (0..100_000u32)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let r = Redactor::new([huge.clone()]);
        assert!(r.matcher.is_none(), "the pattern would be slow to build");
        assert_eq!(r.text(&format!("<{huge}>")), "<***>");
    }

    #[test]
    fn a_numeric_secret_is_masked_in_json_numbers() {
        let r = Redactor::new(["48213377".to_string()]);
        let mut v = serde_json::json!({"pin": 48213377, "big": 1482133770u64, "other": 7});
        r.json(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"pin": "***", "big": "1***0", "other": 7})
        );
    }

    #[test]
    fn the_longest_secret_is_masked_whole() {
        let r = Redactor::new(["abcd".to_string(), "abcdefgh".to_string()]);
        assert_eq!(r.text("abcdefgh abcd"), "*** ***");
    }
}
