//! Everything the emulator changes while it serves: uploaded items, exports, the request
//! journal and the rate-limit window, behind one `Shared` value that every handler gets.
//!
//! It takes the options and the catalog and gives small, lock-scoped operations. Locks are
//! std locks held for a few instructions and never across an `.await`. It must not build HTTP
//! responses or know the response shapes (that is `flavor`), and it must not hold file bodies:
//! uploads are recorded as name, size and digest only.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, RwLock};

use super::catalog::{self, Catalog, DatasetInfo, ItemRecord};
use super::faults::FaultBook;
use super::options::EmulatorOptions;

/// Which listener a request reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// The API listener (`base_url`).
    Api,
    /// The storage listener (`storage_origin`, the presigned download URLs).
    Storage,
}

/// One request as the emulator received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    pub origin: Origin,
    pub method: String,
    pub path: String,
    /// The raw query string, without `?` (empty when there is none).
    pub query: String,
    /// Header names lowercased; repeated headers joined with `", "`.
    pub headers: BTreeMap<String, String>,
    /// The status sent, or 0 while the request is still being answered.
    pub status: u16,
}

/// One file stored by `POST /datasets/{id}/items`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredUpload {
    pub dataset: String,
    pub item_id: String,
    /// The file name of the multipart part (the item's `key`).
    pub name: String,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
}

/// What an export request asks for, whichever body shape it came in.
#[derive(Clone, Debug)]
pub(crate) struct ExportSpec {
    pub name: Option<String>,
    pub format: String,
    pub projects: Vec<String>,
    pub datasets: Vec<String>,
    pub slices: Vec<String>,
}

/// An export job. Its stage is derived from `polls` (see `Shared::export_stage`).
#[derive(Clone, Debug)]
pub(crate) struct ExportRecord {
    pub id: String,
    pub spec: ExportSpec,
    pub created_at: u64,
    pub updated_at: u64,
    /// Polls of `GET /exports/{id}` so far.
    pub polls: u32,
    /// Size of the generated file.
    pub bytes: u64,
}

impl ExportRecord {
    /// The file name served by the storage listener: `exp_0001.json`.
    pub(crate) fn file_name(&self) -> String {
        let ext = if self.spec.format == "jsonl" {
            "jsonl"
        } else {
            "json"
        };
        format!("{}.{ext}", self.id)
    }
}

/// Where an export stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExportStage {
    /// Fewer polls than `--export-polls` so far.
    Running,
    /// Done, with a file on the storage origin.
    Ready,
    /// Done, failed (`--fail-export`).
    Failed,
}

/// The outcome of counting one request against `--rate-limit`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RateSlot {
    pub limit: u32,
    pub allowed: bool,
    pub remaining: u32,
    /// Unix time at which the current window ends.
    pub reset: u64,
}

/// State shared by every handler of both listeners.
pub(crate) struct Shared {
    pub options: EmulatorOptions,
    pub catalog: Catalog,
    /// `http://127.0.0.1:PORT` of each listener.
    pub api_origin: String,
    pub storage_origin: String,
    pub faults: FaultBook,
    uploads: RwLock<Uploads>,
    exports: Mutex<Vec<ExportRecord>>,
    journal: Mutex<Journal>,
    rate_window: Mutex<(u64, u32)>,
}

#[derive(Default)]
struct Uploads {
    log: Vec<Upload>,
    /// Dataset position → indexes into `log`, in upload order.
    by_dataset: HashMap<usize, Vec<usize>>,
}

struct Upload {
    dataset: String,
    item: ItemRecord,
    size: u64,
    sha256: String,
}

struct Journal {
    entries: VecDeque<RecordedRequest>,
    /// Entries dropped from the front to stay within `limit`.
    dropped: u64,
    limit: usize,
}

impl Shared {
    pub(crate) fn new(
        options: EmulatorOptions,
        catalog: Catalog,
        api_origin: String,
        storage_origin: String,
        faults: FaultBook,
    ) -> Self {
        let journal = Journal {
            entries: VecDeque::new(),
            dropped: 0,
            limit: options.journal_limit,
        };
        Shared {
            options,
            catalog,
            api_origin,
            storage_origin,
            faults,
            uploads: RwLock::default(),
            exports: Mutex::default(),
            journal: Mutex::new(journal),
            rate_window: Mutex::default(),
        }
    }

    // ---- items -------------------------------------------------------------------------

    /// Seeded plus uploaded items of a dataset.
    pub(crate) fn item_count(&self, dataset: &DatasetInfo) -> usize {
        self.item_counts(std::slice::from_ref(dataset))[0]
    }

    /// Item counts for several datasets under one lock.
    pub(crate) fn item_counts(&self, datasets: &[DatasetInfo]) -> Vec<usize> {
        let uploads = self.uploads.read().expect("uploads lock");
        datasets
            .iter()
            .map(|d| d.seeded_items + uploads.by_dataset.get(&d.index).map_or(0, Vec::len))
            .collect()
    }

    /// Items `offset..offset+limit` of a dataset (seeded first, then uploads) and the total.
    pub(crate) fn items_page(
        &self,
        dataset: &DatasetInfo,
        offset: usize,
        limit: usize,
    ) -> (Vec<ItemRecord>, usize) {
        let uploads = self.uploads.read().expect("uploads lock");
        let uploaded = uploads
            .by_dataset
            .get(&dataset.index)
            .map_or(&[][..], Vec::as_slice);
        let total = dataset.seeded_items + uploaded.len();
        let end = total.min(offset.saturating_add(limit));
        let items = (offset..end)
            .map(
                |position| match position.checked_sub(dataset.seeded_items) {
                    None => self.catalog.seeded_item(dataset, position),
                    Some(k) => uploads.log[uploaded[k]].item.clone(),
                },
            )
            .collect();
        (items, total)
    }

    /// Records an upload as a new item of the dataset and returns that item.
    pub(crate) fn add_upload(
        &self,
        dataset: &DatasetInfo,
        name: String,
        size: u64,
        sha256: String,
        content_type: Option<String>,
    ) -> ItemRecord {
        let mut uploads = self.uploads.write().expect("uploads lock");
        let position = uploads.log.len();
        let uploaded = uploads.by_dataset.entry(dataset.index).or_default();
        uploaded.push(position);
        let number = dataset.seeded_items + uploaded.len();
        let item = ItemRecord {
            id: catalog::item_id(dataset.index, number),
            key: name,
            metadata: serde_json::json!({
                "size": size,
                "sha256": sha256,
                "content_type": content_type,
            }),
            created_at: catalog::now(),
        };
        uploads.log.push(Upload {
            dataset: dataset.id.clone(),
            item: item.clone(),
            size,
            sha256,
        });
        item
    }

    pub(crate) fn uploads(&self) -> Vec<StoredUpload> {
        let uploads = self.uploads.read().expect("uploads lock");
        uploads
            .log
            .iter()
            .map(|u| StoredUpload {
                dataset: u.dataset.clone(),
                item_id: u.item.id.clone(),
                name: u.item.key.clone(),
                size: u.size,
                sha256: u.sha256.clone(),
            })
            .collect()
    }

    // ---- exports -----------------------------------------------------------------------

    /// Stores a new export with the next `exp_NNNN` id and the configured size.
    pub(crate) fn add_export(&self, spec: ExportSpec) -> ExportRecord {
        let mut exports = self.exports.lock().expect("exports lock");
        let now = catalog::now();
        let export = ExportRecord {
            id: catalog::seeded_id("exp_", exports.len() + 1),
            spec,
            created_at: now,
            updated_at: now,
            polls: 0,
            bytes: self.options.export_bytes,
        };
        exports.push(export.clone());
        export
    }

    /// Counts one poll of the export (if `poll`) and returns it.
    pub(crate) fn export(&self, id: &str, poll: bool) -> Option<ExportRecord> {
        let mut exports = self.exports.lock().expect("exports lock");
        let export = exports.iter_mut().find(|e| e.id == id)?;
        if poll && export.polls < self.options.export_polls {
            export.polls += 1;
            export.updated_at = catalog::now();
        }
        Some(export.clone())
    }

    pub(crate) fn exports_page(&self, offset: usize, limit: usize) -> (Vec<ExportRecord>, usize) {
        let exports = self.exports.lock().expect("exports lock");
        let page = exports.iter().skip(offset).take(limit).cloned().collect();
        (page, exports.len())
    }

    /// Where an export stands after its polls so far.
    pub(crate) fn export_stage(&self, export: &ExportRecord) -> ExportStage {
        match export.polls >= self.options.export_polls {
            false => ExportStage::Running,
            true if self.options.fail_export => ExportStage::Failed,
            true => ExportStage::Ready,
        }
    }

    // ---- journal -----------------------------------------------------------------------

    /// Appends a request to the journal; the returned number is for `set_status`.
    pub(crate) fn record(&self, request: RecordedRequest) -> u64 {
        let mut journal = self.journal.lock().expect("journal lock");
        let seq = journal.dropped + journal.entries.len() as u64;
        if journal.limit == 0 {
            journal.dropped += 1;
            return seq;
        }
        if journal.entries.len() == journal.limit {
            journal.entries.pop_front();
            journal.dropped += 1;
        }
        journal.entries.push_back(request);
        seq
    }

    pub(crate) fn set_status(&self, seq: u64, status: u16) {
        let mut journal = self.journal.lock().expect("journal lock");
        if let Some(index) = seq.checked_sub(journal.dropped) {
            if let Some(entry) = journal.entries.get_mut(index as usize) {
                entry.status = status;
            }
        }
    }

    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        let journal = self.journal.lock().expect("journal lock");
        journal.entries.iter().cloned().collect()
    }

    // ---- rate limit --------------------------------------------------------------------

    /// Counts a request in the current one-second window of `--rate-limit`.
    pub(crate) fn take_rate_slot(&self, limit: u32) -> RateSlot {
        let second = catalog::now();
        let mut window = self.rate_window.lock().expect("rate lock");
        if window.0 != second {
            *window = (second, 0);
        }
        window.1 = window.1.saturating_add(1);
        RateSlot {
            limit,
            allowed: window.1 <= limit,
            remaining: limit.saturating_sub(window.1),
            reset: second + 1,
        }
    }
}
