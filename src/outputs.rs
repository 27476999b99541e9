//! A step's outputs: JSON, except a list's items, which stay the server's text until
//! something reads them. A list of 20,000 items is written to the journal as it came
//! (one copy of its bytes), and only the items a template reads are ever parsed.
//!
//! Takes: actions' results; a page's items as raw JSON. Gives: outputs as JSON text
//! (journal, `save_to`), as JSON values (reports, `results`), as template values (lazy).
//! Must not: change what an item says: text that is not the canonical form of the item
//! (escapes, an id to add, line breaks) is parsed and written anew.

use std::sync::{Arc, OnceLock};

use minijinja::value::{Enumerator, Object, ObjectRepr};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;

/// A step's outputs.
#[derive(Clone, Debug)]
pub struct Outputs {
    /// Every output; where `items` holds a list's items, the `items` entry here is a null
    /// that keeps its place among the keys.
    fields: Value,
    items: Option<Arc<Items>>,
}

impl Default for Outputs {
    fn default() -> Self {
        Outputs::from(Value::Object(serde_json::Map::new()))
    }
}

impl From<Value> for Outputs {
    fn from(fields: Value) -> Self {
        Outputs {
            fields,
            items: None,
        }
    }
}

impl PartialEq<Value> for Outputs {
    fn eq(&self, other: &Value) -> bool {
        self.to_value() == *other
    }
}

impl Outputs {
    /// Outputs with a list's items under `items`: `fields` is an object and has an
    /// `items` entry where they belong among the keys.
    pub fn with_items(mut fields: serde_json::Map<String, Value>, items: Items) -> Self {
        fields.insert("items".into(), Value::Null);
        Outputs {
            fields: Value::Object(fields),
            items: Some(Arc::new(items)),
        }
    }

    /// Sets one output (a step's own `outputs:`); a result that is not an object becomes
    /// `value` beside it.
    pub fn insert(&mut self, name: String, value: Value) {
        if !self.fields.is_object() {
            let other = std::mem::take(&mut self.fields);
            self.fields = Value::Object(serde_json::Map::from_iter([("value".into(), other)]));
        }
        if name == "items" {
            self.items = None;
        }
        if let Value::Object(map) = &mut self.fields {
            map.insert(name, value);
        }
    }

    /// One output, when it is not a list's items (those are read through the template
    /// value or [`Outputs::to_value`]).
    pub fn field(&self, key: &str) -> Option<&Value> {
        match self.items {
            Some(_) if key == "items" => None,
            _ => self.fields.get(key),
        }
    }

    /// The outputs as JSON when they hold no list's items.
    pub fn as_json(&self) -> Option<&Value> {
        self.items.is_none().then_some(&self.fields)
    }

    /// The outputs as one JSON value (every item parsed): reports, `results`.
    pub fn to_value(&self) -> Value {
        let mut value = self.fields.clone();
        if let (Some(items), Some(slot)) = (&self.items, value.get_mut("items")) {
            *slot = Value::Array(items.0.iter().map(Item::value).collect());
        }
        value
    }

    /// Takes the value out: the outputs of a step without a list's items are not copied.
    pub fn into_value(self) -> Value {
        match self.items {
            None => self.fields,
            Some(_) => self.to_value(),
        }
    }

    /// The outputs as templates see them: a list's items are parsed one by one when read.
    pub fn template(&self) -> minijinja::Value {
        let Some(items) = &self.items else {
            return crate::template::from_json(&self.fields);
        };
        let Some(map) = self.fields.as_object() else {
            return crate::template::from_json(&self.fields);
        };
        map.iter()
            .map(|(k, v)| {
                let v = if k == "items" {
                    minijinja::Value::from_object(ItemsSeq::new(items.clone()))
                } else {
                    crate::template::from_json(v)
                };
                (k.clone(), v)
            })
            .collect()
    }
}

impl Outputs {
    /// The outputs as compact JSON text, a list's items copied as they are (the journal
    /// writes a step's outputs this way: one copy of the items' bytes, no parse).
    pub fn json_text(&self) -> String {
        let (Some(items), Some(map)) = (&self.items, self.fields.as_object()) else {
            return serde_json::to_string(&self.fields).unwrap_or_default();
        };
        let mut out = String::with_capacity(items.1 + 2 * items.0.len() + 256);
        out.push('{');
        for (i, (k, v)) in map.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&serde_json::to_string(k).unwrap_or_default());
            out.push(':');
            if k == "items" {
                items.write_json(&mut out);
            } else {
                out.push_str(&serde_json::to_string(v).unwrap_or_default());
            }
        }
        out.push('}');
        out
    }
}

/// Through serde a list's items are parsed ([`Outputs::json_text`] copies them instead).
impl Serialize for Outputs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (Some(items), Some(map)) = (&self.items, self.fields.as_object()) else {
            return self.fields.serialize(s);
        };
        let mut out = s.serialize_map(Some(map.len()))?;
        for (k, v) in map {
            if k == "items" {
                out.serialize_entry(k, items.as_ref())?;
            } else {
                out.serialize_entry(k, v)?;
            }
        }
        out.end()
    }
}

/// A list's items, each as the server wrote it.
#[derive(Debug, Default)]
pub struct Items(Vec<Item>, /* their text's bytes */ usize);

impl Items {
    pub fn push(&mut self, item: Item) {
        self.1 += item.text.len();
        self.0.push(item);
    }

    /// The items as a JSON array, appended to `out`.
    fn write_json(&self, out: &mut String) {
        out.push('[');
        for (i, item) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            if item.plain {
                out.push_str(&item.text);
            } else {
                out.push_str(&serde_json::to_string(&item.value()).unwrap_or_default());
            }
        }
        out.push(']');
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Items {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for item in &self.0 {
            seq.serialize_element(item)?;
        }
        seq.end()
    }
}

/// One item of a list page, as the server wrote it: JSON text whose syntax and UTF-8
/// were checked where it was captured.
#[derive(Debug)]
pub struct Item {
    text: Box<str>,
    /// The text is what serializing the parsed item would write, up to spaces and escapes
    /// (the masker reads escaped forms of a secret too): no `uid` (the item gains an
    /// `id`), no line break (the journal is a line per record).
    plain: bool,
}

/// A page's items as captured, and whether the page must be parsed in full.
pub struct ScannedPage {
    pub items: Vec<Item>,
    /// An item may hold what a full parse refuses and capturing it does not check (a
    /// number out of range, an escape that is no character, nesting past the parser's
    /// limit): the page must be parsed in full to know.
    pub doubtful: bool,
}

/// Nesting past this (outside strings) makes an item doubtful: a page nests its items two
/// levels deep and the parser stops at 128.
const PLAIN_DEPTH: usize = 100;
/// A longer run of digits may be a number out of range (f64 ends near 1.8e308).
const PLAIN_DIGITS: usize = 300;

/// Reads a page's captured items (their JSON syntax and UTF-8 already checked); `body`
/// is the page they came from. What is rare is looked for in the whole page at once
/// (vectorised searches), and an item is looked at alone only where the page has it.
pub fn scan_page(body: &[u8], raws: Vec<Box<RawValue>>) -> ScannedPage {
    // A key written with escapes may be `uid` too.
    let uids = has_uid(body);
    let escapes = memchr::memchr(b'\\', body).is_some();
    let breaks = memchr::memchr2(b'\n', b'\r', body).is_some();
    let mut nested = false;
    let items = raws
        .into_iter()
        .map(|raw| {
            let mut item: Box<str> = raw.into();
            let text = item.as_bytes();
            // Opening brackets, strings' included, bound the nesting from above.
            let opens = memchr::memchr2_iter(b'[', b'{', text).count();
            let too_deep = opens > PLAIN_DEPTH && deep(text);
            nested |= too_deep;
            // Line breaks are written anew (the journal is a line per record), and so are
            // `\u` and `\/` escapes: the masker's base64 forms of a secret are read plain.
            let mut plain = !(breaks && memchr::memchr2(b'\n', b'\r', text).is_some()
                || escapes && has_escape_to_rewrite(text));
            if too_deep {
                plain = false; // ids are given by the parse (`value`)
            } else if uids && has_uid(text) {
                // Today's API: every item has a `uid`, to be given its `id` once, here,
                // in the text (parsing and writing each item anew cost 20 k instructions).
                match with_ids(&item) {
                    Some(Ok(with)) => item = with.into_boxed_str(),
                    Some(Err(())) => plain = false,
                    None => {}
                }
            }
            Item { text: item, plain }
        })
        .collect::<Vec<_>>();
    // Where the page might hold a number out of range or a surrogate, look item by item
    // with strings told apart from the rest (an id such as `a1e5` is no exponent).
    let doubtful = nested || may_refuse(body) && items.iter().any(|i| refused(i.text.as_bytes()));
    ScannedPage { items, doubtful }
}

/// Might the item have a `uid` key (plainly, or with escapes)?
fn has_uid(text: &[u8]) -> bool {
    memchr::memmem::find(text, b"\"uid\"").is_some() || memchr::memmem::find(text, b"\\u").is_some()
}

/// Does the item escape a character that serialising would write plain (`\uXXXX` other
/// than a control character's, `\/`)? Those are written anew, so the masker, which reads a
/// secret's base64 forms only as plain characters, sees what serde would write.
fn has_escape_to_rewrite(text: &[u8]) -> bool {
    memchr::memchr_iter(b'\\', text).any(|at| match text.get(at + 1) {
        Some(b'/') => true,
        Some(b'u') => {
            !text[at + 2..].starts_with(b"00") || !matches!(text.get(at + 4), Some(b'0' | b'1'))
        }
        _ => false,
    })
}

/// `text` (one JSON value, its syntax checked) with `"id": <uid>` added, last, to every
/// object that has a `uid` and no `id`: what [`crate::api::shapes::normalize_ids`] does to
/// the parsed value, done on the text. `None`: nothing to add; `Err`: not plain enough to
/// do in the text (a `uid` that is itself an object or a list) — the item is then parsed
/// and written anew.
fn with_ids(text: &str) -> Option<Result<String, ()>> {
    let mut ids = Ids {
        b: text.as_bytes(),
        at: 0,
        adds: Vec::new(),
    };
    if ids.value().is_err() {
        return Some(Err(()));
    }
    if ids.adds.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(text.len() + ids.adds.len() * 16);
    let mut from = 0;
    for (close, (start, end)) in &ids.adds {
        out.push_str(&text[from..*close]);
        out.push_str(",\"id\":");
        out.push_str(&text[*start..*end]);
        from = *close;
    }
    out.push_str(&text[from..]);
    Some(Ok(out))
}

/// A walk over a JSON text whose syntax is known good, noting where ids are to be added.
struct Ids<'a> {
    b: &'a [u8],
    at: usize,
    /// Each object's closing brace that needs an `id`, and its `uid` value's span.
    adds: Vec<(usize, (usize, usize))>,
}

impl Ids<'_> {
    fn skip_space(&mut self) {
        while matches!(self.b.get(self.at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn value(&mut self) -> Result<(), ()> {
        self.skip_space();
        match self.b.get(self.at).ok_or(())? {
            b'{' => self.object(),
            b'[' => {
                self.at += 1;
                loop {
                    self.skip_space();
                    if self.b.get(self.at) == Some(&b']') {
                        self.at += 1;
                        return Ok(());
                    }
                    self.value()?;
                    self.skip_space();
                    if self.b.get(self.at) == Some(&b',') {
                        self.at += 1;
                    }
                }
            }
            b'"' => {
                self.at = string_end(self.b, self.at + 1).0;
                Ok(())
            }
            _ => {
                while self.b.get(self.at).is_some_and(|c| {
                    !matches!(c, b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r')
                }) {
                    self.at += 1;
                }
                Ok(())
            }
        }
    }

    fn object(&mut self) -> Result<(), ()> {
        self.at += 1;
        let (mut has_id, mut uid) = (false, None);
        loop {
            self.skip_space();
            match self.b.get(self.at).ok_or(())? {
                b'}' => break,
                b',' => {
                    self.at += 1;
                    continue;
                }
                _ => {}
            }
            let key_start = self.at + 1;
            self.at = string_end(self.b, key_start).0;
            let written = &self.b[key_start - 1..self.at];
            let decoded;
            let mut key = &written[1..written.len() - 1];
            if key.contains(&b'\\') {
                decoded = serde_json::from_slice::<String>(written).map_err(|_| ())?;
                key = decoded.as_bytes();
            }
            self.skip_space();
            self.at += 1; // the colon
            self.skip_space();
            let start = self.at;
            self.value()?;
            match key {
                b"id" => has_id = true,
                b"uid" if matches!(self.b[start], b'{' | b'[') => return Err(()),
                b"uid" => uid = Some((start, self.at)),
                _ => {}
            }
        }
        if let (false, Some(span)) = (has_id, uid) {
            self.adds.push((self.at, span));
        }
        self.at += 1;
        Ok(())
    }
}

/// Might the page hold what the parse refuses and the capture does not: an exponent (a
/// digit then `e`), a long run of digits, a `\\u` escape of a surrogate? (Anywhere, in
/// strings too: [`refused`] then tells.)
fn may_refuse(body: &[u8]) -> bool {
    // Branch-free over blocks (the compiler vectorises it): `e` is everywhere in text.
    let exponent = body.len() > 1
        && body[..body.len() - 1]
            .chunks(256)
            .zip(body[1..].chunks(256))
            .any(|(this, next)| {
                this.iter().zip(next).fold(false, |hit, (&a, &b)| {
                    hit | ((a.wrapping_sub(b'0') < 10) & ((b | 0x20) == b'e'))
                })
            });
    // A run longer than the limit covers a stride point and the half-limit after it.
    let stride = PLAIN_DIGITS / 2;
    let long_run = (0..body.len().saturating_sub(stride))
        .step_by(stride)
        .any(|k| body[k..=k + stride].iter().all(u8::is_ascii_digit));
    let surrogate = memchr::memmem::find_iter(body, b"\\u").any(|at| {
        let unit = body.get(at + 2..at + 4);
        matches!(unit, Some([d, h]) if d.eq_ignore_ascii_case(&b'd') && matches!(h.to_ascii_lowercase(), b'8'..=b'9' | b'a'..=b'f'))
    });
    exponent || long_run || surrogate
}

/// Does the item hold, outside its strings, a number out of range (an exponent, a long
/// run of digits), or in them an escaped surrogate?
fn refused(text: &[u8]) -> bool {
    let (mut digits, mut i) = (0usize, 0usize);
    while i < text.len() {
        let b = text[i];
        if b.is_ascii_digit() {
            digits += 1;
            if digits > PLAIN_DIGITS {
                return true;
            }
            i += 1;
            continue;
        }
        digits = 0;
        match b {
            b'"' => {
                let (end, surrogate) = string_end(text, i + 1);
                if surrogate {
                    return true;
                }
                i = end;
                continue;
            }
            b'e' | b'E' if i > 0 && text[i - 1].is_ascii_digit() => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

/// Does the item nest deeper than [`PLAIN_DEPTH`] outside its strings?
fn deep(text: &[u8]) -> bool {
    let (mut depth, mut i) = (0usize, 0usize);
    while i < text.len() {
        match text[i] {
            b'"' => {
                i = string_end(text, i + 1).0;
                continue;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > PLAIN_DEPTH {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    false
}

impl Item {
    /// An item already parsed (a page the capture did not read): written anew.
    pub fn from_value(value: &Value) -> Item {
        Item {
            text: value.to_string().into_boxed_str(),
            plain: true,
        }
    }

    /// The item parsed, with `id` beside `uid` as every response gets it.
    pub fn value(&self) -> Value {
        match serde_json::from_str::<Value>(&self.text) {
            Ok(mut v) => {
                if !self.plain {
                    crate::api::shapes::normalize_ids(&mut v);
                }
                v
            }
            // Not reached: a page whose items may not parse is parsed in full first.
            Err(e) => {
                tracing::warn!("a listed item no longer parses ({e}); kept as text");
                Value::String(self.text.to_string())
            }
        }
    }

    /// The item as one line of JSON (`save_to`).
    pub fn write_line(&self, w: &mut impl std::io::Write) -> std::io::Result<()> {
        if self.plain {
            w.write_all(self.text.as_bytes())?;
        } else {
            serde_json::to_writer(&mut *w, &self.value())?;
        }
        w.write_all(b"\n")
    }
}

impl Serialize for Item {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value().serialize(s)
    }
}

/// Where the string starting at `from` (after its quote) ends (after its closing quote),
/// and whether it escapes a surrogate (`\ud800`-`\udfff`: the parse checks their pairing,
/// the capture does not). Escapes are kept as written: the masker reads escaped forms.
/// (A plain loop: an item's strings are short, too short for a vectorised search to pay.)
fn string_end(text: &[u8], mut at: usize) -> (usize, bool) {
    let mut surrogate = false;
    while at < text.len() {
        match text[at] {
            b'"' => return (at + 1, surrogate),
            b'\\' => {
                if text.get(at + 1) == Some(&b'u') {
                    let hex = text
                        .get(at + 2..at + 6)
                        .and_then(|h| std::str::from_utf8(h).ok());
                    let unit = hex.and_then(|h| u16::from_str_radix(h, 16).ok());
                    surrogate |= unit.is_none_or(|u| (0xd800..=0xdfff).contains(&u));
                }
                at += 2;
            }
            _ => at += 1,
        }
    }
    (text.len(), true)
}

/// A list's items as a template sequence: an item is parsed the first time it is read.
#[derive(Debug)]
struct ItemsSeq {
    items: Arc<Items>,
    parsed: Vec<OnceLock<minijinja::Value>>,
}

impl ItemsSeq {
    fn new(items: Arc<Items>) -> Self {
        let parsed = (0..items.len()).map(|_| OnceLock::new()).collect();
        ItemsSeq { items, parsed }
    }
}

impl Object for ItemsSeq {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }

    fn get_value(self: &Arc<Self>, key: &minijinja::Value) -> Option<minijinja::Value> {
        let i = key.as_usize()?;
        let item = self.items.0.get(i)?;
        // Never waits for another thread's parse (`get_or_init` would): a render stopped by
        // its memory budget mid-parse would leave the item locked for every later reader.
        if let Some(parsed) = self.parsed[i].get() {
            return Some(parsed.clone());
        }
        let parsed = crate::template::from_json(&item.value());
        let _ = self.parsed[i].set(parsed.clone());
        Some(parsed)
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Seq(self.items.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A page of one item: the item, and whether the page is doubtful.
    fn item(text: &str) -> (Item, bool) {
        let raw = RawValue::from_string(text.to_string()).unwrap();
        let mut page = scan_page(text.as_bytes(), vec![raw]);
        (page.items.pop().unwrap(), page.doubtful)
    }

    #[test]
    fn plain_and_doubtful_items() {
        let plain = |t: &str| item(t).0.plain;
        let doubtful = |t: &str| item(t).1;
        assert!(plain(
            r#"{"id": "ds_1", "name": "cats", "n": [1, 2.5, true, null]}"#
        ));
        assert!(!doubtful(
            r#"{"id": "ds_1", "n": 12345, "x": "1e999 in a string"}"#
        ));
        // `\/` and `\u` escapes (but a control character's) are written anew, as are ids to
        // add and line breaks: the masker reads a secret's base64 forms only plain.
        assert!(!plain(
            r#"{"id": "a\"b\\", "url": "https:\/\/h\/x", "e": "\u00e9 \uD83D\uDE00"}"#
        ));
        assert!(!plain(r#"{"k": "a\/b"}"#));
        assert!(!plain(r#"{"k": "\u0041"}"#));
        assert!(plain(r#"{"k": "a\"b\\c\n\u001f"}"#));
        // A uid key written with escapes gets its id; a deep item is left to the parse.
        assert_eq!(
            &*item(r#"{"\u0075id": "u"}"#).0.text,
            r#"{"\u0075id": "u","id":"u"}"#
        );
        let deep_uid = format!("{}{{\"uid\": \"u\"}}{}", "[".repeat(120), "]".repeat(120));
        assert!(!item(&deep_uid).0.plain);
        assert!(!doubtful(
            r#"{"id": "a\"b\\", "url": "https:\/\/h\/x", "e": "\u00e9"}"#
        ));
        // A uid gets its id in the text: still plain.
        assert!(plain(r#"{"uid": "u1"}"#));
        assert_eq!(
            &*item(r#"{"uid": "u1"}"#).0.text,
            r#"{"uid": "u1","id":"u1"}"#
        );
        assert!(!plain(r#"{"a": {"uid": {"x": 1}}}"#));
        // Keys written with escapes are read as what they say.
        assert!(with_ids(r#"{"\u0069d": 1, "uid": "x"}"#).is_none());
        let added = with_ids(r#"{"\u0075id": "x"}"#).unwrap().unwrap();
        assert_eq!(added, r#"{"\u0075id": "x","id":"x"}"#);
        assert!(!plain("{\"id\":\n\"a\"}"));
        // What only a full parse refuses.
        assert!(doubtful(r#"{"n": 1e400}"#));
        assert!(doubtful(r#"{"n": 2E5}"#));
        assert!(doubtful(r#"{"s": "\ud800"}"#));
        assert!(doubtful(r#"{"s": "\uDFFF x"}"#));
        // `true` and `false` outside strings, digits then `e` inside one: no exponent.
        assert!(!doubtful(
            r#"{"s": "x2e5", "n": [1, 2], "t": true, "f": false}"#
        ));
        assert!(doubtful(&format!("{{\"n\": {}}}", "9".repeat(400))));
        let deep = format!("{}{}", "[".repeat(120), "]".repeat(120));
        assert!(doubtful(&deep));
        assert!(!doubtful(&format!("{}{}", "[".repeat(90), "]".repeat(90))));
    }

    /// Any JSON, written compact or pretty: ids added in the text as in the parsed value.
    #[test]
    fn ids_added_in_the_text_as_in_the_value() {
        use proptest::prelude::*;
        let key = prop::sample::select(vec!["id", "uid", "a", "b\"c", "é"]);
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[a-z\"\\\\ ]{0,6}".prop_map(Value::from),
        ];
        let json = leaf.prop_recursive(4, 40, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((key.clone(), inner), 0..5).prop_map(|pairs| {
                    Value::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
                }),
            ]
        });
        proptest!(|(value in json, pretty in any::<bool>())| {
            let text = if pretty {
                serde_json::to_string_pretty(&value).unwrap()
            } else {
                serde_json::to_string(&value).unwrap()
            };
            let mut want = value.clone();
            crate::api::shapes::normalize_ids(&mut want);
            match with_ids(&text) {
                None => prop_assert_eq!(&value, &want),
                Some(Ok(text)) => {
                    let got: Value = serde_json::from_str(&text).unwrap();
                    prop_assert_eq!(&got, &want);
                    // The same order of keys too: `id` last, as the value gets it.
                    prop_assert_eq!(serde_json::to_string(&got).unwrap(), serde_json::to_string(&want).unwrap());
                }
                // Only a uid that is an object or a list is left to the parse.
                Some(Err(())) => prop_assert!(text.contains("\"uid\"")),
            }
        });
    }

    #[test]
    fn items_read_as_they_would_be_parsed() {
        let mut items = Items::default();
        for text in [
            r#"{"id": "a", "n": 1}"#,
            r#"{"uid": "u1", "inner": {"uid": "u2"}}"#,
            r#"{"id": "q\"uote\u00e9"}"#,
            "{\"id\":\n \"nl\"}",
        ] {
            items.push(item(text).0);
        }
        let mut fields = serde_json::Map::new();
        fields.insert("count".into(), json!(4));
        let outputs = Outputs::with_items(fields, items);
        let want = json!({
            "count": 4,
            "items": [
                {"id": "a", "n": 1},
                {"uid": "u1", "inner": {"uid": "u2", "id": "u2"}, "id": "u1"},
                {"id": "q\"uoteé"},
                {"id": "nl"},
            ],
        });
        assert_eq!(outputs.to_value(), want);
        // As text: one line, the plain item as written, the others written anew; through
        // serde, the same values.
        assert_eq!(serde_json::to_value(&outputs).unwrap(), want);
        let text = outputs.json_text();
        assert!(!text.contains('\n'));
        assert!(text.contains(r#"{"id": "a", "n": 1}"#));
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), want);
        assert_eq!(outputs.field("count"), Some(&json!(4)));
        assert_eq!(outputs.field("items"), None);
        // As a template value: read lazily, the same values.
        let env = minijinja::Environment::new();
        let ctx = minijinja::context! { o => outputs.template() };
        let render = |t: &str| env.render_str(t, &ctx).unwrap();
        assert_eq!(render("{{ o.items | length }}"), "4");
        assert_eq!(
            render("{{ o.items[1].id }}/{{ o.items[1].inner.id }}"),
            "u1/u2"
        );
        assert_eq!(render("{{ o.items[-1].id }}"), "nl");
        assert_eq!(
            render("{{ o.items | map(attribute='id') | join(',') }}"),
            "a,u1,q\"uoteé,nl"
        );
        assert_eq!(render("{{ o.count }}"), "4");
    }
}
