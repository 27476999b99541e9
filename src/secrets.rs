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

/// Replaces every secret value (the API key, `secrets:`) with `***` in text and JSON, also
/// where it appears base64-encoded (a server or proxy echoing an `Authorization: Basic`
/// header or a token back).
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    /// The secrets and their base64 forms.
    secrets: Vec<String>,
}

impl Redactor {
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut forms: Vec<String> = Vec::new();
        for secret in secrets.into_iter().filter(|s| s.len() >= 4) {
            forms.extend(base64_forms(&secret));
            forms.push(secret);
        }
        // Longest first, so a secret containing another is masked whole.
        forms.sort_by_key(|s| std::cmp::Reverse(s.len()));
        forms.dedup();
        Redactor { secrets: forms }
    }

    pub fn text(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "***");
            }
        }
        out
    }

    pub fn json(&self, value: &mut Value) {
        if self.secrets.is_empty() {
            return;
        }
        match value {
            Value::String(s) if self.secrets.iter().any(|x| s.contains(x.as_str())) => {
                *s = self.text(s);
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.json(v)),
            Value::Object(map) => {
                // Keys too: a server may echo a secret as a field name.
                if map
                    .keys()
                    .any(|k| self.secrets.iter().any(|x| k.contains(x.as_str())))
                {
                    let entries = std::mem::take(map);
                    *map = entries
                        .into_iter()
                        .map(|(k, v)| (self.text(&k), v))
                        .collect();
                }
                map.values_mut().for_each(|v| self.json(v));
            }
            _ => {}
        }
    }
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
