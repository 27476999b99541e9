//! The pipeline file format as data: every key, its type, whether it is required, its
//! default and its documentation. This table is the single source of truth: validation
//! walks it, the JSON Schema (`avala-pipe schema`) is generated from it, and the README's
//! action reference is checked against it.
//!
//! Must not: look at YAML or templates (that is `check`).

/// The type a key expects. Any value may instead be a template string (`"{{ ... }}"`)
/// whose type is then checked when it is rendered at run time.
#[derive(Debug, Clone, Copy)]
pub enum Ty {
    /// A string (numbers are accepted and kept as written).
    Str,
    Bool,
    Int {
        min: i64,
        max: i64,
    },
    /// `500ms`, `2s`, `10m`, `1h`, or a plain number of seconds.
    Duration,
    /// A list of strings.
    StrList,
    /// A string or a list of strings.
    StrOrList,
    /// An integer or a list of integers (HTTP statuses).
    IntOrList,
    /// A map from names to values of the given type.
    Map(&'static Ty),
    /// Any YAML value (a JSON body, a var).
    Any,
    /// One of a fixed set of strings.
    Enum(&'static [&'static str]),
    /// A mapping with known keys.
    Object(&'static [Field]),
    /// A template that must render to a boolean (or a literal boolean).
    Condition,
    /// A template that must yield a list (or a literal list).
    List,
    /// The `steps` list.
    Steps,
}

/// One key of a mapping.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub ty: Ty,
    pub required: bool,
    pub default: Option<&'static str>,
    pub doc: &'static str,
}

const fn req(name: &'static str, ty: Ty, doc: &'static str) -> Field {
    Field {
        name,
        ty,
        required: true,
        default: None,
        doc,
    }
}

const fn opt(name: &'static str, ty: Ty, doc: &'static str) -> Field {
    Field {
        name,
        ty,
        required: false,
        default: None,
        doc,
    }
}

const fn dflt(name: &'static str, ty: Ty, default: &'static str, doc: &'static str) -> Field {
    Field {
        name,
        ty,
        required: false,
        default: Some(default),
        doc,
    }
}

const COUNT: Ty = Ty::Int {
    min: 1,
    max: 1_000_000_000,
};
const PARALLEL: Ty = Ty::Int { min: 1, max: 256 };

pub const RETRY: &[Field] = &[
    dflt(
        "max_attempts",
        Ty::Int { min: 1, max: 100 },
        "5",
        "Attempts in all, the first included.",
    ),
    dflt(
        "initial_interval",
        Ty::Duration,
        "500ms",
        "First backoff; it doubles on each retry (with full jitter).",
    ),
    dflt(
        "max_interval",
        Ty::Duration,
        "20s",
        "Longest backoff between two attempts.",
    ),
];

pub const API: &[Field] = &[
    opt(
        "base_url",
        Ty::Str,
        "API base URL (default https://server.avala.ai/api/v1). `--base-url` and AVALA_BASE_URL override it.",
    ),
    dflt(
        "trailing_slash",
        Ty::Bool,
        "false",
        "Append `/` to every API path, as the current Avala API expects (`/datasets/`).",
    ),
];

pub const DEFAULTS: &[Field] = &[
    opt("timeout", Ty::Duration, "Default time limit of each step."),
    opt(
        "retry",
        Ty::Object(RETRY),
        "Default retry policy of each step's requests.",
    ),
];

pub const TOP: &[Field] = &[
    req(
        "version",
        Ty::Int { min: 1, max: 1 },
        "Format version; must be 1.",
    ),
    opt(
        "name",
        Ty::Str,
        "Pipeline name (default: the file name without extension).",
    ),
    opt("description", Ty::Str, "Free text."),
    opt("api", Ty::Object(API), "Where the API is."),
    opt(
        "vars",
        Ty::Map(&Ty::Any),
        "Variables, `{{ vars.NAME }}`; `--var NAME=VALUE` overrides a declared one.",
    ),
    opt(
        "secrets",
        Ty::StrList,
        "Environment variables exposed as `{{ secrets.NAME }}` and masked in every output; a value shorter than 4 characters is refused.",
    ),
    dflt(
        "concurrency",
        PARALLEL,
        "4",
        "Steps in flight at once (`--concurrency` overrides).",
    ),
    opt(
        "defaults",
        Ty::Object(DEFAULTS),
        "Settings applied to every step unless it overrides them.",
    ),
    req("steps", Ty::Steps, "The steps, in file order."),
    opt(
        "outputs",
        Ty::Map(&Ty::Any),
        "Values evaluated after the run and included in the report.",
    ),
];

pub const STEP: &[Field] = &[
    req(
        "id",
        Ty::Str,
        "Unique id, `[A-Za-z_][A-Za-z0-9_]*`; templates refer to `steps.<id>`.",
    ),
    opt("name", Ty::Str, "Display name."),
    req("action", Ty::Str, "What the step does: one of the actions."),
    opt("with", Ty::Any, "The action's inputs."),
    opt(
        "needs",
        Ty::StrOrList,
        "Ids of steps that must finish first (besides those the templates reference).",
    ),
    opt(
        "if",
        Ty::Condition,
        "Run only when this renders true; otherwise the step is skipped.",
    ),
    opt(
        "for_each",
        Ty::List,
        "Run once per element of this list, with `item` and `index` bound.",
    ),
    opt(
        "max_parallel",
        PARALLEL,
        "With for_each: iterations in flight at once (default: the pipeline's concurrency).",
    ),
    opt(
        "outputs",
        Ty::Map(&Ty::Any),
        "Extra outputs, evaluated with `result` bound to the action's result.",
    ),
    opt(
        "retry",
        Ty::Object(RETRY),
        "Retry policy for this step's requests.",
    ),
    opt("timeout", Ty::Duration, "The step's overall time limit."),
    dflt(
        "continue_on_error",
        Ty::Bool,
        "false",
        "A failure of this step does not fail the run; dependants still run.",
    ),
];

/// One action: its name, what it does, its inputs and its outputs.
#[derive(Debug, Clone, Copy)]
pub struct ActionSpec {
    pub name: &'static str,
    pub summary: &'static str,
    pub inputs: &'static [Field],
    /// At least one of these inputs must be present (empty: no such rule).
    pub one_of: &'static [&'static str],
    pub outputs: &'static [(&'static str, &'static str)],
}

const PAGING: [Field; 4] = [
    dflt("limit", Ty::Int { min: 1, max: 1000 }, "100", "Page size."),
    opt("max_items", COUNT, "Stop after this many items."),
    opt(
        "query",
        Ty::Map(&Ty::Any),
        "Extra query parameters (filters).",
    ),
    opt(
        "save_to",
        Ty::Str,
        "Stream the items to this JSON Lines file instead of keeping them in memory.",
    ),
];

const LIST_OUTPUTS: &[(&str, &str)] = &[
    ("items", "The items (empty with `save_to`)."),
    ("count", "How many items were fetched."),
    (
        "total",
        "The server's total, when it gives one (else null).",
    ),
    ("path", "With `save_to`: the file written."),
];

const ITEMS_LIST_INPUTS: &[Field] = &[
    req("dataset", Ty::Str, "Dataset id."),
    PAGING[0],
    PAGING[1],
    PAGING[2],
    PAGING[3],
];

pub const POLL: &[Field] = &[
    req(
        "until",
        Ty::Condition,
        "Done when this renders true; `response` is the latest `{status, headers, body}`.",
    ),
    opt(
        "fail_if",
        Ty::Condition,
        "Fail at once when this renders true.",
    ),
    dflt("interval", Ty::Duration, "2s", "First wait between polls."),
    dflt(
        "max_interval",
        Ty::Duration,
        "30s",
        "The wait grows up to this.",
    ),
    dflt("timeout", Ty::Duration, "30m", "Give up after this long."),
];

const MULTIPART: &[Field] = &[
    opt("fields", Ty::Map(&Ty::Any), "Text fields: name → value."),
    opt(
        "files",
        Ty::Map(&Ty::Str),
        "File fields: name → path (streamed from disk).",
    ),
];

pub const ACTIONS: &[ActionSpec] = &[
    ActionSpec {
        name: "datasets.list",
        summary: "GET /datasets, following cursors until there are no more pages.",
        inputs: &PAGING,
        one_of: &[],
        outputs: LIST_OUTPUTS,
    },
    ActionSpec {
        name: "items.list",
        summary: "GET /datasets/{dataset}/items, paginated.",
        inputs: ITEMS_LIST_INPUTS,
        one_of: &[],
        outputs: LIST_OUTPUTS,
    },
    ActionSpec {
        name: "items.upload",
        summary:
            "POST /datasets/{dataset}/items, multipart, one request per file, streamed from disk.",
        inputs: &[
            req("dataset", Ty::Str, "Dataset id."),
            req("files", Ty::StrOrList, "A path, a glob, or a list of them."),
            dflt(
                "field",
                Ty::Str,
                "file",
                "Name of the multipart file field.",
            ),
            dflt(
                "concurrency",
                Ty::Int { min: 1, max: 64 },
                "4",
                "Uploads in flight at once.",
            ),
            dflt(
                "allow_empty",
                Ty::Bool,
                "false",
                "Succeed when no file matches.",
            ),
        ],
        one_of: &[],
        outputs: &[
            ("files", "List of `{path, bytes, sha256, response}`."),
            ("count", "Files uploaded."),
            ("bytes", "Bytes uploaded."),
        ],
    },
    ActionSpec {
        name: "exports.create",
        summary: "POST /exports with a JSON body.",
        inputs: &[
            opt("project_id", Ty::Str, "Project to export."),
            opt("dataset_id", Ty::Str, "Dataset to export."),
            dflt("format", Ty::Str, "json", "Export format."),
            opt(
                "body",
                Ty::Map(&Ty::Any),
                "Extra fields merged into the body.",
            ),
        ],
        one_of: &["project_id", "dataset_id"],
        outputs: &[
            ("id", "Export id."),
            ("status", "Its status."),
            ("...", "Every other field of the created export."),
        ],
    },
    ActionSpec {
        name: "exports.wait",
        summary: "GET /exports/{export} until it is done.",
        inputs: &[
            req("export", Ty::Str, "Export id."),
            dflt("interval", Ty::Duration, "2s", "First wait between polls."),
            dflt(
                "max_interval",
                Ty::Duration,
                "30s",
                "The wait grows up to this.",
            ),
            dflt("timeout", Ty::Duration, "30m", "Give up after this long."),
        ],
        one_of: &[],
        outputs: &[
            ("id", "Export id."),
            ("status", "`completed` or `exported`."),
            ("download_url", "Where to download it."),
            ("...", "Every other field of the export."),
        ],
    },
    ActionSpec {
        name: "download",
        summary: "GET url, streamed to a temporary file and renamed into place when complete.",
        inputs: &[
            req(
                "url",
                Ty::Str,
                "Absolute URL, or a path under the base URL.",
            ),
            req("to", Ty::Str, "Destination file."),
            opt(
                "sha256",
                Ty::Str,
                "Expected hex digest; a mismatch fails and keeps the old file.",
            ),
            dflt("overwrite", Ty::Bool, "true", "Replace an existing file."),
        ],
        one_of: &[],
        outputs: &[
            ("path", "The file written."),
            ("bytes", "Its size."),
            ("sha256", "Its hex digest."),
        ],
    },
    ActionSpec {
        name: "request",
        summary: "Any API call.",
        inputs: &[
            dflt(
                "method",
                Ty::Enum(&["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]),
                "GET",
                "HTTP method.",
            ),
            opt("path", Ty::Str, "Path under the base URL."),
            opt(
                "url",
                Ty::Str,
                "Absolute URL (the key is sent only to the API's origin).",
            ),
            opt("query", Ty::Map(&Ty::Any), "Query parameters."),
            opt("json", Ty::Any, "JSON body."),
            opt("multipart", Ty::Object(MULTIPART), "Multipart body."),
            opt(
                "expect",
                Ty::IntOrList,
                "Statuses that count as success (default: any 2xx).",
            ),
            dflt(
                "paginate",
                Ty::Bool,
                "false",
                "Follow cursors and collect `items`.",
            ),
            opt(
                "poll",
                Ty::Object(POLL),
                "Repeat the request until a condition holds.",
            ),
        ],
        one_of: &["path", "url"],
        outputs: &[
            ("status", "HTTP status."),
            ("headers", "Response headers."),
            ("body", "Parsed JSON, else text."),
            ("items", "With `paginate`: every item of every page."),
        ],
    },
];

pub fn action(name: &str) -> Option<&'static ActionSpec> {
    ACTIONS.iter().find(|a| a.name == name)
}

pub fn field<'a>(fields: &'a [Field], name: &str) -> Option<&'a Field> {
    fields.iter().find(|f| f.name == name)
}
