//! The pipeline file format as data: every key, its type, whether it is required, its
//! default and its documentation. This table is the single source of truth: validation
//! walks it, the JSON Schema (`avala-pipe schema`) is generated from it, and the README's
//! action reference is checked against it. Each action's entry ([`ActionSpec`]) lives in
//! the action's own file, next to the code that reads its inputs, and is listed here
//! through the action registry ([`ACTIONS`]).
//!
//! Takes: nothing. Gives: the format as constants.
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
    /// Rendered late, once per response (a poll's conditions over `response`), not with
    /// the other inputs before the step starts.
    pub late: bool,
}

pub const fn req(name: &'static str, ty: Ty, doc: &'static str) -> Field {
    Field {
        name,
        ty,
        required: true,
        default: None,
        doc,
        late: false,
    }
}

pub const fn opt(name: &'static str, ty: Ty, doc: &'static str) -> Field {
    Field {
        name,
        ty,
        required: false,
        default: None,
        doc,
        late: false,
    }
}

pub const fn dflt(name: &'static str, ty: Ty, default: &'static str, doc: &'static str) -> Field {
    Field {
        name,
        ty,
        required: false,
        default: Some(default),
        doc,
        late: false,
    }
}

impl Field {
    /// The same field, rendered late (per response).
    pub const fn late(self) -> Field {
        Field { late: true, ..self }
    }
}

pub const COUNT: Ty = Ty::Int {
    min: 1,
    max: 1_000_000_000,
};
pub const PARALLEL: Ty = Ty::Int { min: 1, max: 256 };

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
        "flavor",
        Ty::Enum(&["current", "documented"]),
        "current",
        "Which shape of the API to speak: `current` (today's API, as Avala's SDKs send it: trailing slashes, owner/slug items, presigned uploads) or `documented` (the REST page of Avala's docs). `--api-flavor` and AVALA_API_FLAVOR override it.",
    ),
    opt(
        "trailing_slash",
        Ty::Bool,
        "Append `/` to every API path (default: as the flavour wants: `current` yes, `documented` no).",
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
    /// Its requests change things on the server (a timeout then warns that requests in
    /// flight may already have been applied).
    pub changes_server: bool,
}

/// Every action's entry, in registry order.
pub static ACTIONS: std::sync::LazyLock<Vec<&'static ActionSpec>> =
    std::sync::LazyLock::new(|| {
        crate::actions::ActionKind::ALL
            .iter()
            .map(|a| a.spec())
            .collect()
    });

pub fn action(name: &str) -> Option<&'static ActionSpec> {
    ACTIONS.iter().copied().find(|a| a.name == name)
}

pub fn field<'a>(fields: &'a [Field], name: &str) -> Option<&'a Field> {
    fields.iter().find(|f| f.name == name)
}
