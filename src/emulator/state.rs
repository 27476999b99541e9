//! Everything the emulator changes while it serves: uploaded items, exports, the request
//! journal and the rate-limit window, behind one `Shared` value that every handler gets.
//!
//! It takes the options and the catalog and gives small, lock-scoped operations. Locks are
//! std locks held for a few instructions and never across an `.await`. It must not build HTTP
//! responses or know the response shapes (that is `flavor`), and it must not hold file bodies:
//! uploads are recorded as name, size and digest only.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde_json::{json, Value};

use super::catalog::{self, Catalog, DatasetInfo, ItemRecord};
use super::faults::FaultBook;
use super::limits::Limits;
use super::options::EmulatorOptions;

/// Most items one export document lists (the rest are counted, not listed).
const MAX_EXPORT_ITEMS: usize = 10_000;
/// Most datasets of a project one export document covers.
const MAX_EXPORT_DATASETS: usize = 1_000;

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
    /// A small JSON body (≤ 1 MiB, `Content-Type: application/json`), parsed.
    pub json: Option<serde_json::Value>,
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
    /// Size of the served file: the document, padded with spaces to `--export-bytes`.
    pub bytes: u64,
    /// The export document (JSON), fixed when the export was requested.
    pub document: Arc<Vec<u8>>,
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
    /// Datasets made by `POST /datasets/` or a manual-upload finalize, with their GET count.
    created: RwLock<Vec<(DatasetInfo, u32)>>,
    /// Polls of each task so far.
    task_polls: Mutex<HashMap<String, u32>>,
    /// Presign sessions and the objects on the storage origin.
    pub manual: Mutex<super::manual::Manual>,
    /// Fleet recording upload sessions (current flavour).
    pub fleet: Mutex<super::fleet::FleetUploads>,
    /// Objects of the table-driven resources (current flavour).
    pub resources: Mutex<super::resources::Store>,
    /// Requests on the storage origin that carried the API key header.
    pub key_leaks: AtomicU64,
    /// Where the storage origin keeps object bytes (removed with the emulator).
    pub blob_dir: tempfile::TempDir,
    /// Uploads and exports in flight, and what every limit saw.
    pub limits: Arc<Limits>,
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
        let limits = Arc::new(Limits::new(
            options.max_uploads,
            options.max_exports,
            options.rate_limit,
        ));
        Shared {
            limits,
            options,
            catalog,
            api_origin,
            storage_origin,
            faults,
            uploads: RwLock::default(),
            exports: Mutex::default(),
            journal: Mutex::new(journal),
            rate_window: Mutex::default(),
            created: RwLock::default(),
            task_polls: Mutex::default(),
            manual: Mutex::default(),
            resources: Mutex::default(),
            fleet: Mutex::default(),
            key_leaks: AtomicU64::new(0),
            blob_dir: tempfile::Builder::new()
                .prefix("avala-emulator-storage-")
                .tempdir()
                .expect("a temporary directory for the storage origin"),
        }
    }

    // ---- datasets ----------------------------------------------------------------------

    /// A seeded or created dataset by id.
    pub(crate) fn find_dataset(&self, id: &str) -> Option<DatasetInfo> {
        self.catalog.find_dataset(id).or_else(|| {
            let created = self.created.read().expect("created lock");
            created
                .iter()
                .find(|(d, _)| d.id == id)
                .map(|(d, _)| d.clone())
        })
    }

    /// A seeded or created dataset by owner and slug.
    pub(crate) fn find_dataset_by_slug(&self, owner: &str, slug: &str) -> Option<DatasetInfo> {
        let created = self.created.read().expect("created lock");
        if let Some((d, _)) = created
            .iter()
            .find(|(d, _)| d.owner == owner && d.slug == slug)
        {
            return Some(d.clone());
        }
        drop(created);
        (owner == catalog::OWNER)
            .then(|| self.catalog.find_dataset_by_slug(slug))
            .flatten()
    }

    /// Seeded datasets, then created ones.
    pub(crate) fn dataset_count(&self) -> usize {
        self.catalog.dataset_count() + self.created.read().expect("created lock").len()
    }

    pub(crate) fn dataset_at(&self, index: usize) -> Option<DatasetInfo> {
        let seeded = self.catalog.dataset_count();
        match index.checked_sub(seeded) {
            None => self.catalog.dataset_at(index),
            Some(k) => {
                let created = self.created.read().expect("created lock");
                created.get(k).map(|(d, _)| d.clone())
            }
        }
    }

    /// Creates a dataset (status `creating`); `None` when the owner already has that slug.
    pub(crate) fn create_dataset(
        &self,
        name: &str,
        slug: &str,
        data_type: &str,
        visibility: &str,
    ) -> Option<DatasetInfo> {
        if self.find_dataset_by_slug(catalog::OWNER, slug).is_some() {
            return None;
        }
        let mut created = self.created.write().expect("created lock");
        if created.iter().any(|(d, _)| d.slug == slug) {
            return None;
        }
        let index = self.catalog.dataset_count() + created.len();
        let number = index + 1;
        let info = DatasetInfo {
            index,
            id: catalog::seeded_id("ds_", number),
            name: name.to_owned(),
            slug: slug.to_owned(),
            data_type: data_type.to_owned(),
            visibility: visibility.to_owned(),
            seeded_items: 0,
            created_at: catalog::now(),
            owner: catalog::OWNER.to_owned(),
            stem: format!("{number:04}"),
        };
        created.push((info.clone(), 0));
        Some(info)
    }

    /// `creating` for a created dataset polled fewer than `--dataset-polls` times, else
    /// `created`. With `poll`, this call counts as one poll.
    pub(crate) fn dataset_status(&self, dataset: &DatasetInfo, poll: bool) -> &'static str {
        if dataset.index < self.catalog.dataset_count() || dataset.seeded_items > 0 {
            return "created";
        }
        if !poll {
            let created = self.created.read().expect("created lock");
            return match created.iter().find(|(d, _)| d.id == dataset.id) {
                Some((_, polls)) if *polls < self.options.dataset_polls => "creating",
                _ => "created",
            };
        }
        let mut created = self.created.write().expect("created lock");
        let Some((_, polls)) = created.iter_mut().find(|(d, _)| d.id == dataset.id) else {
            return "created";
        };
        if *polls >= self.options.dataset_polls {
            return "created";
        }
        if poll {
            *polls += 1;
        }
        "creating"
    }

    // ---- tasks -------------------------------------------------------------------------

    /// Counts one poll of a task and gives its status after it.
    pub(crate) fn poll_task(&self, id: &str) -> &'static str {
        let mut polls = self.task_polls.lock().expect("task lock");
        let count = polls.entry(id.to_owned()).or_insert(0);
        *count = count.saturating_add(1);
        let limit = self.options.task_polls;
        if *count > limit {
            "completed"
        } else if *count * 2 > limit {
            "in_progress"
        } else {
            "pending"
        }
    }

    // ---- storage -----------------------------------------------------------------------

    pub(crate) fn count_key_leak(&self) -> u64 {
        self.key_leaks.fetch_add(1, Ordering::SeqCst) + 1
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

    /// A seeded or uploaded item of a dataset by id.
    pub(crate) fn find_item(&self, dataset: &DatasetInfo, id: &str) -> Option<ItemRecord> {
        let prefix = format!("item_{}_", dataset.stem);
        if let Some(number) = id
            .strip_prefix(&prefix)
            .and_then(|n| n.parse::<usize>().ok())
        {
            if (1..=dataset.seeded_items).contains(&number) {
                let item = self.catalog.seeded_item(dataset, number - 1);
                if item.id == id {
                    return Some(item);
                }
            }
        }
        if dataset.seeded_items <= 10_000 {
            if let Some(item) = (0..dataset.seeded_items)
                .map(|p| self.catalog.seeded_item(dataset, p))
                .find(|item| item.id == id)
            {
                return Some(item);
            }
        }
        let uploads = self.uploads.read().expect("uploads lock");
        let uploaded = uploads.by_dataset.get(&dataset.index)?;
        uploaded
            .iter()
            .map(|&k| &uploads.log[k].item)
            .find(|item| item.id == id)
            .cloned()
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
            id: catalog::item_id(dataset, number),
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

    /// Stores a new export with the next `exp_NNNN` id and the configured size; `None` when
    /// `--max-exports` are running (created and not yet done).
    pub(crate) fn add_export(&self, spec: ExportSpec) -> Option<ExportRecord> {
        // The document is built under the exports lock (it takes the uploads and created
        // locks, never the other way round), so ids stay in creation order.
        let mut exports = self.exports.lock().expect("exports lock");
        let polls = self.options.export_polls;
        let running = exports.iter().filter(|e| e.polls < polls).count();
        if !self.limits.admit_export(running as u32) {
            return None;
        }
        let id = catalog::seeded_id("exp_", exports.len() + 1);
        let now = catalog::now();
        let document = self.export_document(&id, &spec, now);
        let export = ExportRecord {
            id,
            bytes: self.options.export_bytes.max(document.len() as u64),
            document: Arc::new(document),
            spec,
            created_at: now,
            updated_at: now,
            polls: 0,
        };
        exports.push(export.clone());
        Some(export)
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

    /// A page of exports, newest first.
    pub(crate) fn exports_page(&self, offset: usize, limit: usize) -> (Vec<ExportRecord>, usize) {
        let exports = self.exports.lock().expect("exports lock");
        let page = exports
            .iter()
            .rev()
            .skip(offset)
            .take(limit)
            .cloned()
            .collect();
        (page, exports.len())
    }

    /// The datasets an export covers: its datasets, then those of its projects (project
    /// number k of P covers the seeded datasets at positions k-1, k-1+P, …; the example
    /// project covers the example dataset).
    fn export_datasets(&self, spec: &ExportSpec) -> (Vec<DatasetInfo>, Vec<Value>) {
        let mut datasets: Vec<DatasetInfo> = spec
            .datasets
            .iter()
            .filter_map(|id| self.find_dataset(id))
            .collect();
        let mut projects = Vec::new();
        let count = self.catalog.project_count().max(1);
        for id in &spec.projects {
            let Some(project) = self.catalog.find_project(id) else {
                continue;
            };
            projects.push(json!({"uid": project.id, "name": project.name}));
            if project.id == catalog::EXAMPLE_PROJECT {
                datasets.extend(self.catalog.find_dataset(catalog::EXAMPLE_DATASET));
                continue;
            }
            let position = (0..self.catalog.project_count())
                .find(|&i| {
                    self.catalog
                        .project_at(i)
                        .is_some_and(|p| p.id == project.id)
                })
                .unwrap_or(0);
            let mut i = position;
            while i < self.catalog.dataset_count() && datasets.len() < MAX_EXPORT_DATASETS {
                datasets.extend(self.catalog.dataset_at(i));
                i += count;
            }
        }
        datasets.dedup_by(|a, b| a.id == b.id);
        (datasets, projects)
    }

    /// The JSON export document: the datasets an export covers with their items (seeded and
    /// uploaded), at most [`MAX_EXPORT_ITEMS`] items in all (`truncated` says when cut).
    fn export_document(&self, id: &str, spec: &ExportSpec, now: u64) -> Vec<u8> {
        let (datasets, projects) = self.export_datasets(spec);
        let mut budget = MAX_EXPORT_ITEMS;
        let mut truncated = false;
        let mut listed = Vec::with_capacity(datasets.len());
        for dataset in &datasets {
            let (items, total) = self.items_page(dataset, 0, budget);
            budget -= items.len();
            truncated |= items.len() < total;
            let items: Vec<Value> = items
                .iter()
                .map(|item| {
                    json!({
                        "uid": item.id,
                        "key": item.key,
                        "url": format!("{}/items/{}/{}", self.storage_origin, dataset.id, item.id),
                        "metadata": item.metadata,
                        "created_at": catalog::iso8601(item.created_at),
                        "annotations": [],
                    })
                })
                .collect();
            listed.push(json!({
                "uid": dataset.id,
                "name": dataset.name,
                "slug": dataset.slug,
                "owner_name": dataset.owner,
                "data_type": dataset.data_type,
                "item_count": total,
                "items": items,
            }));
        }
        let document = json!({
            "export": id,
            "format": spec.format,
            "created_at": catalog::iso8601(now),
            "projects": projects,
            "slices": spec.slices,
            "datasets": listed,
            "truncated": truncated,
        });
        let mut bytes = serde_json::to_vec_pretty(&document).expect("JSON values serialize");
        bytes.push(b'\n');
        bytes
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
        self.limits.count_request(second, window.1 > limit);
        RateSlot {
            limit,
            allowed: window.1 <= limit,
            remaining: limit.saturating_sub(window.1),
            reset: second + 1,
        }
    }
}
