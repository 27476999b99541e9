//! The seeded, read-only part of the emulator's world: datasets, their seeded items, projects.
//!
//! It takes the options (or a `--seed` file) and gives objects by position or by id. Generated
//! objects are computed from their index on demand, so `--datasets 100000` costs no memory and
//! no start-up time. It must not hold anything that changes while serving (uploads and exports
//! live in `state`), and it knows nothing of HTTP or of the two response shapes.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::{json, Value};

/// 2024-01-01T00:00:00Z: seeded timestamps count from here, so they never change between runs.
const SEED_EPOCH: u64 = 1_704_067_200;
const DATA_TYPES: [&str; 5] = ["image", "video", "lidar", "mcap", "splat"];

/// A dataset as the catalog knows it (item count without uploads).
#[derive(Clone, Debug)]
pub(crate) struct DatasetInfo {
    /// Position in the catalog, 0-based; also the number in seeded item ids.
    pub index: usize,
    pub id: String,
    pub name: String,
    pub slug: String,
    pub data_type: String,
    pub visibility: String,
    pub seeded_items: usize,
    pub created_at: u64,
    /// `owner_name` of the current flavour: the `{owner}` of owner/slug paths.
    pub owner: String,
    /// What item ids of this dataset are built from: `item_{stem}_0001`.
    pub stem: String,
}

/// The username (and owner of every seeded dataset) of the emulator's one user.
pub(crate) const OWNER: &str = "demo";
/// The examples of Avala's REST page use these ids: they always exist, in both flavours, but
/// stay out of lists so `--datasets N` lists exactly N.
pub(crate) const EXAMPLE_DATASET: &str = "dataset_abc123";
pub(crate) const EXAMPLE_PROJECT: &str = "project_abc123";
/// Position given to the example dataset (far beyond any generated or created one).
const EXAMPLE_INDEX: usize = 1 << 40;

/// A dataset item, seeded or uploaded.
#[derive(Clone, Debug)]
pub(crate) struct ItemRecord {
    pub id: String,
    pub key: String,
    pub metadata: Value,
    pub created_at: u64,
}

#[derive(Clone, Debug)]
pub(crate) struct ProjectInfo {
    pub id: String,
    pub name: String,
    pub status: String,
    pub created_at: u64,
}

/// The `--seed` file: `{"datasets": [...], "projects": [...]}` or just the list of datasets.
#[derive(Deserialize)]
#[serde(untagged)]
enum SeedFile {
    Full {
        datasets: Vec<SeedDataset>,
        #[serde(default)]
        projects: Option<Vec<SeedProject>>,
    },
    Datasets(Vec<SeedDataset>),
}

#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
struct SeedDataset {
    id: Option<String>,
    name: Option<String>,
    slug: Option<String>,
    data_type: Option<String>,
    visibility: Option<String>,
    /// Explicit items; without it, `item_count` (default `--items-per-dataset`) are generated.
    items: Option<Vec<SeedItem>>,
    item_count: Option<usize>,
}

#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
struct SeedItem {
    id: Option<String>,
    key: String,
    #[serde(default)]
    metadata: Option<Value>,
}

#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
struct SeedProject {
    id: Option<String>,
    name: Option<String>,
    status: Option<String>,
}

enum Datasets {
    Generated(usize),
    Listed {
        list: Vec<DatasetInfo>,
        items: Vec<Option<Vec<ItemRecord>>>,
        by_id: HashMap<String, usize>,
    },
}

enum Projects {
    Generated(usize),
    Listed {
        list: Vec<ProjectInfo>,
        by_id: HashMap<String, usize>,
    },
}

pub(crate) struct Catalog {
    datasets: Datasets,
    projects: Projects,
    items_per_dataset: usize,
}

impl Catalog {
    pub(crate) fn generated(datasets: usize, projects: usize, items_per_dataset: usize) -> Self {
        Catalog {
            datasets: Datasets::Generated(datasets),
            projects: Projects::Generated(projects),
            items_per_dataset,
        }
    }

    /// Reads a `--seed` file; its datasets replace the generated ones, and its projects (when
    /// given) replace the generated projects.
    pub(crate) fn from_seed_file(
        path: &Path,
        projects: usize,
        items_per_dataset: usize,
    ) -> Result<Self, SeedError> {
        let text = std::fs::read_to_string(path)?;
        let seed: SeedFile = serde_json::from_str(&text)?;
        let (datasets, seeded_projects) = match seed {
            SeedFile::Full { datasets, projects } => (datasets, projects),
            SeedFile::Datasets(datasets) => (datasets, None),
        };
        let mut catalog = Catalog::generated(0, projects, items_per_dataset);
        catalog.datasets = listed_datasets(datasets, items_per_dataset)?;
        if let Some(list) = seeded_projects {
            catalog.projects = listed_projects(list)?;
        }
        Ok(catalog)
    }

    pub(crate) fn dataset_count(&self) -> usize {
        match &self.datasets {
            Datasets::Generated(n) => *n,
            Datasets::Listed { list, .. } => list.len(),
        }
    }

    /// The dataset at a 0-based position.
    pub(crate) fn dataset_at(&self, index: usize) -> Option<DatasetInfo> {
        match &self.datasets {
            Datasets::Generated(n) if index < *n => {
                Some(generated_dataset(index, self.items_per_dataset))
            }
            Datasets::Generated(_) => None,
            Datasets::Listed { list, .. } => list.get(index).cloned(),
        }
    }

    pub(crate) fn find_dataset(&self, id: &str) -> Option<DatasetInfo> {
        if id == EXAMPLE_DATASET {
            return Some(example_dataset(self.items_per_dataset));
        }
        match &self.datasets {
            Datasets::Generated(n) => {
                parse_seeded_id(id, "ds_", *n).and_then(|index| self.dataset_at(index))
            }
            Datasets::Listed { by_id, .. } => by_id.get(id).and_then(|&i| self.dataset_at(i)),
        }
    }

    /// The seeded dataset with this slug (all belong to [`OWNER`]).
    pub(crate) fn find_dataset_by_slug(&self, slug: &str) -> Option<DatasetInfo> {
        if slug == "example-dataset" {
            return self.find_dataset(EXAMPLE_DATASET);
        }
        match &self.datasets {
            Datasets::Generated(n) => {
                let number: usize = slug.strip_prefix("demo-dataset-")?.parse().ok()?;
                (number >= 1 && number <= *n && format!("demo-dataset-{number}") == slug)
                    .then(|| self.dataset_at(number - 1))
                    .flatten()
            }
            Datasets::Listed { list, .. } => list.iter().find(|d| d.slug == slug).cloned(),
        }
    }

    /// The `position`-th (0-based) seeded item of a dataset; `position < seeded_items`.
    pub(crate) fn seeded_item(&self, dataset: &DatasetInfo, position: usize) -> ItemRecord {
        if let Datasets::Listed { items, .. } = &self.datasets {
            if let Some(Some(list)) = items.get(dataset.index) {
                return list[position].clone();
            }
        }
        let number = position + 1;
        let (stem, ext) = match dataset.data_type.as_str() {
            "video" => ("clip", "mp4"),
            "lidar" => ("scan", "pcd"),
            "mcap" => ("log", "mcap"),
            "splat" => ("scene", "ply"),
            _ => ("image", "jpg"),
        };
        let size = 1_000 + (dataset.index * 7_919 + number * 104_729) % 900_000;
        ItemRecord {
            id: format!("item_{}_{number:04}", dataset.stem),
            key: format!("{stem}_{number:04}.{ext}"),
            metadata: json!({ "size": size, "index": number }),
            created_at: dataset.created_at + 60 * number as u64,
        }
    }

    pub(crate) fn project_count(&self) -> usize {
        match &self.projects {
            Projects::Generated(n) => *n,
            Projects::Listed { list, .. } => list.len(),
        }
    }

    pub(crate) fn project_at(&self, index: usize) -> Option<ProjectInfo> {
        match &self.projects {
            Projects::Generated(n) if index < *n => Some(ProjectInfo {
                id: seeded_id("prj_", index + 1),
                name: format!("Demo project {}", index + 1),
                status: "active".into(),
                created_at: SEED_EPOCH + 1_800 + 3_600 * index as u64,
            }),
            Projects::Generated(_) => None,
            Projects::Listed { list, .. } => list.get(index).cloned(),
        }
    }

    pub(crate) fn find_project(&self, id: &str) -> Option<ProjectInfo> {
        if id == EXAMPLE_PROJECT {
            return Some(ProjectInfo {
                id: EXAMPLE_PROJECT.into(),
                name: "Example project".into(),
                status: "active".into(),
                created_at: SEED_EPOCH + 900,
            });
        }
        match &self.projects {
            Projects::Generated(n) => {
                parse_seeded_id(id, "prj_", *n).and_then(|index| self.project_at(index))
            }
            Projects::Listed { by_id, .. } => by_id.get(id).and_then(|&i| self.project_at(i)),
        }
    }
}

/// `item_0001_0021`: the dataset's stem (its 1-based position, zero-padded) and the item
/// number.
pub(crate) fn item_id(dataset: &DatasetInfo, number: usize) -> String {
    format!("item_{}_{number:04}", dataset.stem)
}

/// `ds_0001`, `prj_0012`, `exp_0003`: the prefix and a number zero-padded to 4 digits.
pub(crate) fn seeded_id(prefix: &str, number: usize) -> String {
    format!("{prefix}{number:04}")
}

/// The 0-based index of a generated id, if it is exactly one the catalog would produce.
pub(crate) fn parse_seeded_id(id: &str, prefix: &str, count: usize) -> Option<usize> {
    let number: usize = id.strip_prefix(prefix)?.parse().ok()?;
    (number >= 1 && number <= count && seeded_id(prefix, number) == id).then(|| number - 1)
}

/// The dataset of the REST page's examples.
fn example_dataset(items: usize) -> DatasetInfo {
    DatasetInfo {
        index: EXAMPLE_INDEX,
        id: EXAMPLE_DATASET.into(),
        name: "Example dataset".into(),
        slug: "example-dataset".into(),
        data_type: "image".into(),
        visibility: "private".into(),
        seeded_items: items,
        created_at: SEED_EPOCH,
        owner: OWNER.into(),
        stem: "abc123".into(),
    }
}

fn generated_dataset(index: usize, items: usize) -> DatasetInfo {
    let number = index + 1;
    DatasetInfo {
        owner: OWNER.into(),
        stem: format!("{number:04}"),
        index,
        id: seeded_id("ds_", number),
        name: format!("Demo dataset {number}"),
        slug: format!("demo-dataset-{number}"),
        data_type: DATA_TYPES[index % DATA_TYPES.len()].into(),
        visibility: "private".into(),
        seeded_items: items,
        created_at: SEED_EPOCH + 3_600 * index as u64,
    }
}

/// Why a `--seed` file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error(transparent)]
    Read(#[from] std::io::Error),
    #[error(transparent)]
    Parse(#[from] serde_json::Error),
    #[error("dataset id {0} appears twice")]
    DuplicateDataset(String),
    #[error("project id {0} appears twice")]
    DuplicateProject(String),
}

fn listed_datasets(
    seeds: Vec<SeedDataset>,
    items_per_dataset: usize,
) -> Result<Datasets, SeedError> {
    let mut list = Vec::with_capacity(seeds.len());
    let mut items = Vec::with_capacity(seeds.len());
    let mut by_id = HashMap::new();
    for (index, seed) in seeds.into_iter().enumerate() {
        let base = generated_dataset(index, seed.item_count.unwrap_or(items_per_dataset));
        let id = seed.id.clone().unwrap_or_else(|| base.id.clone());
        if by_id.insert(id.clone(), index).is_some() {
            return Err(SeedError::DuplicateDataset(id));
        }
        let name = seed.name.clone().unwrap_or_else(|| base.name.clone());
        let explicit = seed.items.map(|list| {
            list.into_iter()
                .enumerate()
                .map(|(j, item)| ItemRecord {
                    id: item.id.unwrap_or_else(|| item_id(&base, j + 1)),
                    key: item.key,
                    metadata: item.metadata.unwrap_or_else(|| json!({})),
                    created_at: base.created_at + 60 * (j as u64 + 1),
                })
                .collect::<Vec<_>>()
        });
        list.push(DatasetInfo {
            index,
            slug: seed.slug.unwrap_or_else(|| slugify(&name)),
            name,
            id,
            data_type: seed.data_type.unwrap_or(base.data_type),
            visibility: seed.visibility.unwrap_or(base.visibility),
            seeded_items: explicit.as_ref().map_or(base.seeded_items, Vec::len),
            created_at: base.created_at,
            owner: base.owner,
            stem: base.stem,
        });
        items.push(explicit);
    }
    Ok(Datasets::Listed { list, items, by_id })
}

fn listed_projects(seeds: Vec<SeedProject>) -> Result<Projects, SeedError> {
    let mut list = Vec::with_capacity(seeds.len());
    let mut by_id = HashMap::new();
    for (index, seed) in seeds.into_iter().enumerate() {
        let id = seed.id.unwrap_or_else(|| seeded_id("prj_", index + 1));
        if by_id.insert(id.clone(), index).is_some() {
            return Err(SeedError::DuplicateProject(id));
        }
        list.push(ProjectInfo {
            name: seed.name.unwrap_or_else(|| id.clone()),
            id,
            status: seed.status.unwrap_or_else(|| "active".into()),
            created_at: SEED_EPOCH + 1_800 + 3_600 * index as u64,
        });
    }
    Ok(Projects::Listed { list, by_id })
}

fn slugify(name: &str) -> String {
    let mut slug = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    slug.trim_end_matches('-').to_owned()
}

pub(crate) use crate::clock::{iso8601, now};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_epoch_is_new_year_2024() {
        assert_eq!(iso8601(SEED_EPOCH), "2024-01-01T00:00:00Z");
    }

    #[test]
    fn generated_ids_round_trip_and_reject_near_misses() {
        assert_eq!(parse_seeded_id("ds_0001", "ds_", 3), Some(0));
        assert_eq!(parse_seeded_id("ds_12345", "ds_", 20_000), Some(12_344));
        assert_eq!(parse_seeded_id("ds_1", "ds_", 3), None);
        assert_eq!(parse_seeded_id("ds_0004", "ds_", 3), None);
        assert_eq!(parse_seeded_id("ds_0000", "ds_", 3), None);
        assert_eq!(slugify("Cats & Dogs!"), "cats-dogs");
    }
}
