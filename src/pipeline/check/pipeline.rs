//! The top level of a pipeline file: takes the root mapping and gives the checked
//! [`Pipeline`], one function per key group (version, api, vars and secrets, defaults,
//! the steps list, outputs), then links the templates to the steps they name.
//!
//! Must not: look inside one step (that is `step`) or name any particular action.

use std::sync::Arc;

use super::*;
use crate::graph;
use crate::pipeline::model::ApiFlavor;

/// A step's retry policy and time limit; `defaults:` gives every step that does not say
/// otherwise its own.
#[derive(Clone, Copy, Default)]
pub(super) struct Limits {
    pub(super) retry: RetryPolicy,
    pub(super) timeout: Option<Duration>,
}

impl Checker<'_> {
    /// `step_nodes`: the entries of the `steps:` list, taken out of `root`.
    pub(super) fn pipeline(
        &mut self,
        path: &Path,
        root: &Node,
        step_nodes: Option<Vec<Node>>,
    ) -> Option<Pipeline> {
        let map = self.root_map(root)?;
        let fields = self.fields(map, spec::TOP, "the pipeline");
        let get = |key: &str| fields.get(key).copied();
        self.version(get("version"));
        let name = get("name")
            .and_then(|n| self.string(n))
            .unwrap_or_else(|| default_name(path));
        let description = get("description").and_then(|n| self.string(n));
        let api = self.api(get("api"));
        let vars = self.tvalue_map(get("vars"), Scope::Vars, None);
        let secrets = self.secrets(get("secrets"));
        let concurrency = get("concurrency")
            .and_then(|n| self.int(n, 1, 256))
            .unwrap_or(4) as usize;
        let defaults = self.defaults(get("defaults"));
        let written = step_nodes.as_ref().map(Vec::len);
        let mut steps = self.steps(get("steps"), step_nodes.unwrap_or_default(), defaults);
        self.step = None;
        let outputs = self.tvalue_map(get("outputs"), Scope::PipelineOutputs, None);

        let all_steps_parsed = written == Some(steps.len());
        self.unique_ids(&steps);
        let mut templated = Templated { vars, outputs };
        self.link(&mut steps, &mut templated, &secrets, all_steps_parsed);
        let graph = match self.diags.is_empty() {
            true => self.graph(&steps),
            false => Default::default(),
        };
        Some(Pipeline {
            path: path.to_path_buf(),
            source: Arc::from(self.source),
            name,
            description,
            base_url: api.base_url,
            trailing_slash: api.trailing_slash,
            flavor: api.flavor,
            vars: templated.vars,
            secrets,
            concurrency,
            steps,
            outputs: templated.outputs,
            graph: Arc::new(graph),
        })
    }

    /// The root must be a mapping; an empty file is said to be empty.
    fn root_map<'n>(&mut self, root: &'n Node) -> Option<&'n [(Node, Node)]> {
        if let Some(map) = root.as_map() {
            return Some(map);
        }
        let message = match root.kind {
            // An empty file, or only comments: say so rather than "found null".
            NodeKind::Null => "the pipeline file is empty".to_string(),
            _ => format!(
                "a pipeline file must be a mapping, found {}",
                root.type_name()
            ),
        };
        self.error(root.pos, message)
            .help("start with `version: 1` and a `steps:` list");
        None
    }

    fn version(&mut self, version: Option<&Node>) {
        let Some(v) = version else { return };
        // Other types have already been reported by the type check.
        let comparable = matches!(v.kind, NodeKind::Int(_) | NodeKind::Str(_));
        let one =
            matches!(v.kind, NodeKind::Int(1)) || matches!(&v.kind, NodeKind::Str(s) if s == "1");
        if comparable && !one {
            self.error(
                v.pos,
                format!(
                    "unsupported version {}: this avala-pipe reads version 1",
                    scalar_text(v)
                ),
            )
            .help("set `version: 1`");
        }
    }

    /// `api:`: the base URL (checked against the URL policy), `trailing_slash` and
    /// `flavor`; each is `None` when not given.
    fn api(&mut self, api: Option<&Node>) -> Api {
        let Some(map) = api.and_then(Node::as_map) else {
            return Api::default();
        };
        let fields = lookup(map, spec::API);
        let api = Api {
            base_url: fields.get("base_url").and_then(|n| self.string(n)),
            trailing_slash: fields.get("trailing_slash").and_then(|n| self.boolean(n)),
            flavor: fields
                .get("flavor")
                .and_then(|n| self.string(n))
                .and_then(|f| ApiFlavor::from_name(&f)),
        };
        if let (Some(url), Some(node)) = (&api.base_url, find(map, "base_url")) {
            if let Err(e) = check_base_url(url) {
                self.error(node.pos, e.to_string());
            }
        }
        api
    }

    /// `secrets:`: the names, refusing the API key's own variable.
    fn secrets(&mut self, node: Option<&Node>) -> Vec<String> {
        let Some(node) = node else { return vec![] };
        let secrets = self.str_list(node);
        for (i, s) in secrets.iter().enumerate() {
            if s == "AVALA_API_KEY" {
                if let NodeKind::Seq(items) = &node.kind {
                    self.error(items[i].pos, "AVALA_API_KEY cannot be a template secret: the key is sent by avala-pipe itself and never reachable from templates");
                }
            }
        }
        secrets
    }

    /// `defaults:`: the limits of every step that does not set its own.
    fn defaults(&mut self, node: Option<&Node>) -> Limits {
        let Some(map) = node.and_then(Node::as_map) else {
            return Limits::default();
        };
        let d = lookup(map, spec::DEFAULTS);
        let get = |key: &str| d.get(key).copied();
        self.limits(get("retry"), get("timeout"), Limits::default())
    }

    /// `steps:`: a non-empty list (`items`, taken out of `node`); each entry is checked by
    /// [`Self::step`], then dropped, so that the next step's values reuse its memory.
    fn steps(&mut self, node: Option<&Node>, items: Vec<Node>, defaults: Limits) -> Vec<Step> {
        let Some(node) = node else { return vec![] };
        match &node.kind {
            NodeKind::Seq(_) if !items.is_empty() => {
                let mut steps = Vec::with_capacity(items.len());
                for (index, item) in items.into_iter().enumerate() {
                    steps.extend(self.step(index, &item, defaults));
                }
                steps
            }
            NodeKind::Seq(_) | NodeKind::Null => {
                self.error(
                    node.pos,
                    "`steps` is empty: a pipeline needs at least one step",
                );
                vec![]
            }
            _ => {
                self.error(
                    node.pos,
                    format!(
                        "`steps` must be a list of steps, found {}",
                        node.type_name()
                    ),
                );
                vec![]
            }
        }
    }

    fn unique_ids(&mut self, steps: &[Step]) {
        let mut seen: HashMap<&str, &Step> = HashMap::new();
        for step in steps {
            if let Some(first) = seen.get(step.id.as_str()) {
                let line = first.pos.line;
                self.step = Some(step.id.clone());
                self.error(
                    step.pos,
                    format!(
                        "duplicate step id `{}` (first used on line {line})",
                        step.id
                    ),
                )
                .help("step ids must be unique: rename one of them");
            } else {
                seen.insert(&step.id, step);
            }
        }
        self.step = None;
    }

    /// Checks every pending template's names, then stores what they reference: the
    /// steps' dependency edges and each template's step refs.
    fn link(
        &mut self,
        steps: &mut [Step],
        templated: &mut Templated,
        secrets: &[String],
        all_steps_parsed: bool,
    ) {
        let pending = std::mem::take(&mut self.pending);
        let ids: HashMap<String, usize> = steps.iter().map(|s| (s.id.clone(), s.index)).collect();
        let step_names: Vec<String> = steps.iter().map(|s| s.id.clone()).collect();
        let known = Known {
            steps,
            ids: &ids,
            step_names: &step_names,
            vars: &templated.vars,
            secrets,
            all_steps_parsed,
        };
        for p in &pending {
            self.references(p, &known);
        }
        add_edges(steps, &pending, &ids);
        // Store the analysed templates (with their step refs) back into the steps.
        let analysed = AnalysedTemplates::new(&pending);
        attach_step_refs(steps, &analysed);
        for v in templated.outputs.values_mut() {
            fill_refs(v, &analysed);
        }
        for v in templated.vars.values_mut() {
            fill_refs(v, &analysed);
        }
    }

    /// The dependency graph; each cycle is reported as the whole loop, at its first step.
    fn graph(&mut self, steps: &[Step]) -> graph::Graph {
        let deps: Vec<Vec<usize>> = steps.iter().map(|s| s.deps.clone()).collect();
        let cycles = match graph::Graph::build(&deps) {
            Ok(graph) => return graph,
            Err(cycles) => cycles,
        };
        for cycle in cycles {
            let first = &steps[cycle[0]];
            let path: Vec<&str> = cycle
                .iter()
                .chain(std::iter::once(&cycle[0]))
                .map(|i| steps[*i].id.as_str())
                .collect();
            self.step = Some(first.id.clone());
            self.error(first.pos, format!("dependency cycle: {}", path.join(" -> ")))
                .help("a step cannot depend, directly or through others, on itself; remove one of these edges (`needs` or a `steps.<id>` reference)");
        }
        self.step = None;
        graph::Graph::default()
    }
}

/// The `api:` block, as given.
#[derive(Default)]
struct Api {
    base_url: Option<String>,
    trailing_slash: Option<bool>,
    flavor: Option<ApiFlavor>,
}

/// The pipeline-level maps whose templates get their step refs once all are linked.
struct Templated {
    vars: IndexMap<String, TValue>,
    outputs: IndexMap<String, TValue>,
}

/// The pipeline's name when the file gives none: the file name without extension.
fn default_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "pipeline".into())
}
