//! The template context of a run: `vars`, `env` (without AVALA_API_KEY), `secrets`,
//! `run`, `pipeline`, `steps.<id>.{outputs,status}`, and `item`/`index`/`result`/
//! `response` where they apply. Vars are rendered once, in order, at the start.
//!
//! Takes: the pipeline and what the CLI knows of the environment. Gives: contexts.
//! Must not: read the process environment (the CLI passes it in).

use std::collections::BTreeMap;
use std::path::Path;

use minijinja::value::Value;

use crate::pipeline::model::{Pipeline, TValue};
use crate::template::{self, TemplateError, Unknown};

/// Why the values every template sees could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum GlobalsError {
    #[error("secret {0} is listed under `secrets:` but the environment variable {0} is not set")]
    MissingSecret(String),
    #[error("var `{name}`: {source}")]
    Var { name: String, source: TemplateError },
}

/// The values every template sees, fixed for the run.
#[derive(Clone, Debug)]
pub struct Globals {
    pub vars: Value,
    pub env: Value,
    pub secrets: Value,
    pub run: Value,
    pub pipeline: Value,
}

/// What a run knows about its surroundings.
#[derive(Clone, Debug, Default)]
pub struct Environment {
    /// The process environment; AVALA_API_KEY is removed before it is used.
    pub env: BTreeMap<String, String>,
    pub run_id: String,
    pub started_at: String,
    pub date: String,
    /// Dry-run: a secret that is not set shows as `<secret NAME: not set>` instead of
    /// failing, so plans can be reviewed where the secrets are not available.
    pub preview: bool,
}

impl Globals {
    /// Renders the vars (each may use env, secrets, run, pipeline and earlier vars);
    /// `overrides` (`--var`, `--vars-file`; the last one of a name wins) replace the
    /// value written in the file.
    pub fn new(
        p: &Pipeline,
        environment: &Environment,
        overrides: &[(String, TValue)],
    ) -> Result<Globals, GlobalsError> {
        let mut env = environment.env.clone();
        env.remove("AVALA_API_KEY");
        let mut secrets = BTreeMap::new();
        for name in &p.secrets {
            match env.get(name) {
                Some(v) => {
                    secrets.insert(name.clone(), v.clone());
                }
                None if environment.preview => {
                    secrets.insert(name.clone(), format!("<secret {name}: not set>"));
                }
                None => return Err(GlobalsError::MissingSecret(name.clone())),
            }
        }
        let dir = p
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut globals = Globals {
            vars: Value::from(BTreeMap::<String, Value>::new()),
            env: Value::from_serialize(&env),
            secrets: Value::from_serialize(&secrets),
            run: Value::from_serialize(serde_json::json!({
                "id": environment.run_id,
                "started_at": environment.started_at,
                "date": environment.date,
            })),
            pipeline: Value::from_serialize(serde_json::json!({
                "name": p.name,
                "dir": dir.display().to_string(),
            })),
        };
        let mut vars = serde_json::Map::new();
        for (name, value) in &p.vars {
            let value = overrides
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map_or(value, |(_, v)| v);
            let ctx = globals.context(&Value::from(BTreeMap::<String, Value>::new()), &[]);
            let rendered =
                template::render_value(value, &ctx).map_err(|source| GlobalsError::Var {
                    name: name.clone(),
                    source,
                })?;
            vars.insert(name.clone(), rendered);
            globals.vars = Value::from_serialize(&vars);
        }
        Ok(globals)
    }

    /// A context with the given `steps` map and extra bindings.
    pub fn context(&self, steps: &Value, extra: &[(&str, Value)]) -> Value {
        let mut map: BTreeMap<&str, Value> = BTreeMap::new();
        map.insert("vars", self.vars.clone());
        map.insert("env", self.env.clone());
        map.insert("secrets", self.secrets.clone());
        map.insert("run", self.run.clone());
        map.insert("pipeline", self.pipeline.clone());
        map.insert("steps", steps.clone());
        for (k, v) in extra {
            map.insert(k, v.clone());
        }
        Value::from(map)
    }
}

/// The `steps` of a run's template context: the entry of every finished step, shared by
/// all steps and growing as the run goes (entries are written once, when a step ends).
/// A step only reads its dependencies, which are final before it starts, so sharing one
/// map is as good as a snapshot per step, without copying it at every start.
#[derive(Debug, Default)]
pub struct StepEntries(std::sync::RwLock<BTreeMap<String, Value>>);

impl StepEntries {
    pub fn insert(&self, id: String, entry: Value) {
        if let Ok(mut map) = self.0.write() {
            map.insert(id, entry);
        }
    }
}

impl minijinja::value::Object for StepEntries {
    fn get_value(self: &std::sync::Arc<Self>, key: &Value) -> Option<Value> {
        self.0.read().ok()?.get(key.as_str()?).cloned()
    }

    fn enumerate(self: &std::sync::Arc<Self>) -> minijinja::value::Enumerator {
        let keys: Vec<Value> = match self.0.read() {
            Ok(map) => map.keys().map(|k| Value::from(k.as_str())).collect(),
            Err(_) => Vec::new(),
        };
        minijinja::value::Enumerator::Values(keys)
    }
}

/// A step's entry under `steps`: `{outputs, status}` (the outputs as templates see them:
/// [`crate::outputs::Outputs::template`]).
pub fn step_entry(outputs: Value, status: &str) -> Value {
    let mut map = BTreeMap::new();
    map.insert("outputs", outputs);
    map.insert("status", Value::from(status));
    Value::from(map)
}

/// A step whose outputs are not known yet (dry-run).
pub fn unknown_entry(id: &str) -> Value {
    let mut map = BTreeMap::new();
    map.insert("outputs", Unknown::value(format!("steps.{id}.outputs")));
    map.insert("status", Unknown::value(format!("steps.{id}.status")));
    Value::from(map)
}
