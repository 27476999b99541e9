//! Today's upload protocol (current flavour): presigned targets for files on the way to a
//! dataset, the objects the storage origin received for them, and the batches a finalize
//! turns into a dataset.
//!
//! It takes presign requests (`file-upload-url`), part-signing and completion calls, and the
//! storage origin's reports of received bytes, and gives the JSON descriptors of `API.md`
//! ("Uploads: presign → storage → finalize") and the finished files of a batch. Object bytes
//! live in files under the emulator's temporary directory, never in memory. It must not parse
//! HTTP or build responses other than plain JSON values.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Parts of a MULTIPART session are between these sizes (as S3 and the SDK require).
pub(crate) const MIN_PART: u64 = 5 * 1024 * 1024;
pub(crate) const MAX_PART: u64 = 128 * 1024 * 1024;
const MAX_PARTS: u64 = 10_000;
/// The "secret" behind the storage origin's signatures (checkable, not secure).
const SECRET: &str = "avala-emulator-upload";

/// How an object is to be sent to storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Method {
    /// Legacy presigned POST form (one `file` part).
    Form,
    /// v2 single PUT.
    Put,
    /// v2 multipart session.
    Multipart { part_size: u64, part_count: u64 },
}

/// Bytes received for a part (or the whole object): where they are, size, digest.
#[derive(Clone, Debug)]
pub(crate) struct Blob {
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
}

/// One file on its way to a dataset.
#[derive(Clone, Debug)]
pub(crate) struct Object {
    /// UUID-shaped: the `upload_uid` of v2 and the object's name on storage.
    pub id: String,
    /// `dataset_upload_uid` (v2) or `name:<dataset_name>` (legacy).
    pub batch: String,
    pub path: String,
    pub size: u64,
    pub method: Method,
    /// Received parts by number (a form or PUT object has only part 1).
    pub parts: BTreeMap<u64, Blob>,
    /// Digest of the whole object once complete.
    pub sha256: Option<String>,
    /// The object belongs to a dataset now.
    pub finalized: bool,
}

impl Object {
    /// The expected size of part `number` (1-based), if it exists.
    pub(crate) fn part_len(&self, number: u64) -> Option<u64> {
        match self.method {
            Method::Multipart {
                part_size,
                part_count,
            } if (1..=part_count).contains(&number) => {
                Some(part_size.min(self.size - (number - 1) * part_size))
            }
            Method::Multipart { .. } => None,
            _ => (number == 1).then_some(self.size),
        }
    }

    pub(crate) fn part_count(&self) -> u64 {
        match self.method {
            Method::Multipart { part_count, .. } => part_count,
            _ => 1,
        }
    }

    pub(crate) fn complete(&self) -> bool {
        self.sha256.is_some()
    }
}

/// Every presigned object, by id and by (batch, path).
#[derive(Default)]
pub(crate) struct Manual {
    next: u64,
    pub objects: HashMap<String, Object>,
    by_path: HashMap<(String, String), String>,
    /// Bytes reserved by presigns and kept by finished objects.
    pub used: u64,
    /// Item id → size and the files holding its bytes in order (what item URLs serve).
    pub item_files: HashMap<String, (u64, Vec<PathBuf>)>,
    /// Multipart object id → the digest of its leading parts, advanced as parts arrive so
    /// that `complete` need not read the whole object again.
    pub digests: HashMap<String, Arc<Mutex<OrderedDigest>>>,
}

/// The sha256 of an object's parts `1..next` and the first `at` bytes of part `next`,
/// hashed in order.
pub(crate) struct OrderedDigest {
    pub hasher: Sha256,
    pub next: u64,
    pub at: u64,
    /// The receive hashing part `next` as it arrives (see `storage::Inline`).
    pub owner: Option<u64>,
}

impl Default for OrderedDigest {
    fn default() -> Self {
        OrderedDigest {
            hasher: Sha256::new(),
            next: 1,
            at: 0,
            owner: None,
        }
    }
}

/// What a presign asks for.
pub(crate) struct Presign {
    pub dataset_name: String,
    pub path: String,
    pub size: u64,
    /// `dataset_upload_uid` when `upload_protocol_version` is 2.
    pub v2_batch: Option<String>,
}

/// Why a presign is refused.
pub(crate) enum PresignError {
    Quota { used: u64, limit: u64 },
}

impl Manual {
    fn new_id(&mut self) -> String {
        self.next += 1;
        format!("00000000-0000-4000-8000-{:012x}", self.next)
    }

    /// Answers a presign: a new target, or the existing one for the same batch, path and size
    /// (v2 resumes), or `complete: true` when that object is already stored.
    pub(crate) fn presign(
        &mut self,
        request: Presign,
        quota: u64,
        multipart_threshold: u64,
        storage_origin: &str,
    ) -> Result<Value, PresignError> {
        let batch = match &request.v2_batch {
            Some(uid) => uid.clone(),
            None => format!("name:{}", request.dataset_name),
        };
        let key = (batch.clone(), request.path.clone());
        if let Some(existing) = self.by_path.get(&key).and_then(|id| self.objects.get(id)) {
            if request.v2_batch.is_some() && existing.size == request.size && !existing.finalized {
                return Ok(self.descriptor(existing, storage_origin));
            }
        }
        // A new target replaces an older one for the same path (its reservation is freed).
        if let Some(old) = self.by_path.remove(&key) {
            if let Some(old) = self.objects.remove(&old) {
                self.used = self.used.saturating_sub(old.size);
                for blob in old.parts.values() {
                    let _ = std::fs::remove_file(&blob.path);
                }
            }
        }
        if self.used.saturating_add(request.size) > quota {
            return Err(PresignError::Quota {
                used: self.used,
                limit: quota,
            });
        }
        let method = match &request.v2_batch {
            None => Method::Form,
            Some(_) if request.size > multipart_threshold => {
                let part_size = request
                    .size
                    .div_ceil(MAX_PARTS)
                    .clamp(MIN_PART, MAX_PART)
                    .max(MIN_PART);
                Method::Multipart {
                    part_size,
                    part_count: request.size.div_ceil(part_size).max(1),
                }
            }
            Some(_) => Method::Put,
        };
        let id = self.new_id();
        let object = Object {
            id: id.clone(),
            batch,
            path: request.path,
            size: request.size,
            method,
            parts: BTreeMap::new(),
            sha256: None,
            finalized: false,
        };
        self.used += object.size;
        let answer = match method {
            Method::Form => form_descriptor(&object, storage_origin),
            _ => self.descriptor(&object, storage_origin),
        };
        self.by_path.insert(key, id.clone());
        self.objects.insert(id, object);
        Ok(answer)
    }

    /// The v2 descriptor of an object as it stands.
    fn descriptor(&self, object: &Object, storage_origin: &str) -> Value {
        if object.complete() {
            return json!({ "upload_uid": object.id, "complete": true });
        }
        match object.method {
            Method::Multipart {
                part_size,
                part_count,
            } => {
                let uploaded: Vec<Value> = object
                    .parts
                    .iter()
                    .map(|(n, blob)| json!({ "part_number": n, "size": blob.size }))
                    .collect();
                json!({
                    "upload_uid": object.id,
                    "method": "MULTIPART",
                    "part_size": part_size,
                    "part_count": part_count,
                    "uploaded_parts": uploaded,
                })
            }
            Method::Put | Method::Form => json!({
                "upload_uid": object.id,
                "method": "PUT",
                "url": put_url(storage_origin, &object.id, None),
                "headers": { "Content-Type": "application/octet-stream" },
            }),
        }
    }

    /// Signed URLs for parts of a multipart session; `None` when a number is out of range.
    pub(crate) fn sign_parts(
        &self,
        id: &str,
        numbers: &[u64],
        storage_origin: &str,
    ) -> Option<Value> {
        let object = self.objects.get(id)?;
        let mut parts = Vec::with_capacity(numbers.len());
        for &n in numbers {
            object.part_len(n)?;
            if !matches!(object.method, Method::Multipart { .. }) {
                return None;
            }
            parts.push(json!({
                "part_number": n,
                "url": put_url(storage_origin, id, Some(n)),
                "headers": {},
            }));
        }
        Some(json!({ "parts": parts }))
    }

    /// The files of a batch that are complete and not yet in a dataset.
    pub(crate) fn finished(&self, batch: &str) -> Vec<Object> {
        let mut list: Vec<Object> = self
            .objects
            .values()
            .filter(|o| o.batch == batch && o.complete() && !o.finalized)
            .cloned()
            .collect();
        list.sort_by(|a, b| a.path.cmp(&b.path));
        list
    }
}

/// The legacy POST-form descriptor: the fields to send with the `file` part.
fn form_descriptor(object: &Object, storage_origin: &str) -> Value {
    let policy = STANDARD.encode(
        json!({
            "object": object.id,
            "key": object.path,
            "conditions": [["content-length-range", object.size, object.size]],
        })
        .to_string(),
    );
    json!({
        "method": "POST",
        "url": format!("{storage_origin}/bucket/"),
        "fields": {
            "key": object.path,
            "Content-Type": "application/octet-stream",
            "x-amz-algorithm": "AWS4-HMAC-SHA256",
            "x-amz-credential": "EMULATOR/19700101/local/s3/aws4_request",
            "x-amz-date": "19700101T000000Z",
            "policy": policy,
            "x-amz-signature": sign(&policy),
        },
    })
}

/// What a form's `policy` field promises, once its signature is checked.
pub(crate) struct FormPolicy {
    pub object: String,
    pub key: String,
    pub size: u64,
}

/// Checks a form's policy against its signature and reads it.
pub(crate) fn read_policy(policy: &str, signature: &str) -> Option<FormPolicy> {
    if sign(policy) != signature {
        return None;
    }
    let value: Value = serde_json::from_slice(&STANDARD.decode(policy).ok()?).ok()?;
    Some(FormPolicy {
        object: value["object"].as_str()?.to_owned(),
        key: value["key"].as_str()?.to_owned(),
        size: value["conditions"][0][2].as_u64()?,
    })
}

/// `{origin}/bucket/{id}?…&X-Amz-Signature=…` (with `partNumber` and `uploadId` for a part).
fn put_url(storage_origin: &str, id: &str, part: Option<u64>) -> String {
    let part_query = part.map_or(String::new(), |n| format!("partNumber={n}&uploadId={id}&"));
    format!(
        "{storage_origin}/bucket/{id}?{part_query}X-Amz-Algorithm=AWS4-HMAC-SHA256\
         &X-Amz-Expires=3600&X-Amz-Signature={}",
        sign(&put_target(id, part))
    )
}

/// What a PUT URL's signature covers.
pub(crate) fn put_target(id: &str, part: Option<u64>) -> String {
    format!("PUT /bucket/{id} part={}", part.unwrap_or(0))
}

pub(crate) fn sign(text: &str) -> String {
    hex::encode(Sha256::digest(format!("{SECRET}\n{text}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presign(manual: &mut Manual, size: u64, v2: bool) -> Value {
        let request = Presign {
            dataset_name: "cats".into(),
            path: "a/b.jpg".into(),
            size,
            v2_batch: v2.then(|| "batch-1".into()),
        };
        match manual.presign(request, 1 << 40, 10 * 1024 * 1024, "http://s") {
            Ok(value) => value,
            Err(_) => panic!("refused"),
        }
    }

    #[test]
    fn large_v2_files_get_multipart_geometry_the_sdk_accepts() {
        let mut manual = Manual::default();
        let size = 12 * 1024 * 1024 + 1;
        let answer = presign(&mut manual, size, true);
        assert_eq!(answer["method"], "MULTIPART");
        let part = answer["part_size"].as_u64().unwrap();
        assert!((MIN_PART..=MAX_PART).contains(&part));
        assert_eq!(answer["part_count"].as_u64().unwrap(), size.div_ceil(part));
        // The same presign again resumes the same session.
        assert_eq!(
            presign(&mut manual, size, true)["upload_uid"],
            answer["upload_uid"]
        );
        assert_eq!(manual.used, size);
        assert_eq!(presign(&mut manual, 10, true)["method"], "PUT");
        assert_eq!(manual.used, 10, "a new size replaces the old reservation");
    }

    #[test]
    fn form_policies_are_signed_and_readable() {
        let mut manual = Manual::default();
        let answer = presign(&mut manual, 42, false);
        let fields = &answer["fields"];
        let policy = fields["policy"].as_str().unwrap();
        let read = read_policy(policy, fields["x-amz-signature"].as_str().unwrap()).unwrap();
        assert_eq!((read.key.as_str(), read.size), ("a/b.jpg", 42));
        assert!(read_policy(policy, "0").is_none());
    }
}
