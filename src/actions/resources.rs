//! Read-only actions over one kind of resource: fetch one by id (`projects.get`,
//! `tasks.get`), list them with filters (`projects.list`, `tasks.list`), and wait until
//! every task of a project is done (`tasks.wait`). Each is a spec entry plus the routes of
//! both API flavours; the code is shared.
//!
//! Takes: rendered inputs (ids, filters). Gives: resources as the server sent them (ids
//! normalised). Must not: send anything but GETs.

use std::time::Duration;

use serde_json::{json, Value};

use super::list::{paginate, Paging, LIST_OUTPUTS, PAGING};
use super::{
    shown_duration, Action, ActionError, ActionPlan, ActionResult, Inputs, Repeats, RunCtx,
};
use crate::api::request::{HttpRequest, Method};
use crate::api::{Endpoint, Target};
use crate::pipeline::model::format_duration;
use crate::pipeline::spec::{dflt, opt, req, ActionSpec, Field, Ty};
use crate::template::Text;

/// One kind of resource: where the documented and today's API keep it.
struct Resource {
    documented: &'static str,
    current: &'static str,
}

impl Resource {
    fn all(&self, endpoint: &Endpoint) -> Target {
        endpoint.route(self.documented, self.current, &[])
    }

    fn one(&self, endpoint: &Endpoint, id: &Text) -> Target {
        let (d, c) = (
            format!("{}/{{}}", self.documented),
            format!("{}/{{}}", self.current),
        );
        endpoint.route(&d, &c, &[id])
    }

    fn get(
        &self,
        inputs: &Inputs,
        id: &Field,
        endpoint: &Endpoint,
    ) -> Result<HttpRequest, ActionError> {
        let id = inputs.required_text(id)?;
        Ok(HttpRequest::to(Method::Get, self.one(endpoint, &id)))
    }

    fn plan_get(
        &self,
        inputs: &Inputs,
        id: &Field,
        endpoint: &Endpoint,
    ) -> Result<ActionPlan, ActionError> {
        Ok(ActionPlan {
            requests: vec![self.get(inputs, id, endpoint)?],
            ..ActionPlan::default()
        })
    }

    async fn run_get(&self, inputs: &Inputs, id: &Field, ctx: &RunCtx<'_>) -> ActionResult {
        let req = self.get(inputs, id, ctx.client.endpoint())?;
        let resp = ctx.client.send_json(&req, &ctx.call, None).await?;
        let body = resp.json().map_err(|why| {
            ActionError::Other(format!(
                "GET {}: {why}",
                crate::api::request::display_path(&req.url)
            ))
        })?;
        Ok(body.into())
    }

    /// The first page, with the given filter inputs as query parameters.
    fn first_page(
        &self,
        inputs: &Inputs,
        filters: &[Field],
        endpoint: &Endpoint,
    ) -> Result<(Paging, HttpRequest), ActionError> {
        let paging = Paging::read(inputs)?;
        let mut params = Vec::new();
        for f in filters {
            if let Some(v) = inputs.text(f)? {
                params.push((f.name.to_string(), v));
            }
        }
        let first = paging.first_request(self.all(endpoint), &params);
        Ok((paging, first))
    }
}

const PROJECTS: Resource = Resource {
    documented: "/projects",
    current: "/users/me/projects",
};
const TASKS: Resource = Resource {
    documented: "/tasks",
    current: "/tasks",
};

const PROJECT: Field = req("project", Ty::Str, "Project id.");
const TASK: Field = req("task", Ty::Str, "Task id.");
const TASK_PROJECT: Field = opt("project", Ty::Str, "Only the tasks of this project.");
const TASK_STATUS: Field = opt("status", Ty::Str, "Only tasks with this status.");

/// `projects.get`.
pub struct ProjectsGet;

impl Action for ProjectsGet {
    const SPEC: &'static ActionSpec = &ActionSpec {
        name: "projects.get",
        summary: "GET /projects/{project} (today's API: /users/me/projects/{project}/).",
        inputs: &[PROJECT],
        one_of: &[],
        outputs: &[
            ("id", "Project id."),
            ("name", "Its name."),
            ("...", "Every other field of the project."),
        ],
        changes_server: false,
    };

    fn plan(inputs: &Inputs, endpoint: &Endpoint) -> Result<ActionPlan, ActionError> {
        PROJECTS.plan_get(inputs, &PROJECT, endpoint)
    }

    async fn run(inputs: &Inputs, ctx: &RunCtx<'_>) -> ActionResult {
        PROJECTS.run_get(inputs, &PROJECT, ctx).await
    }
}

/// `projects.list`.
pub struct ProjectsList;

impl Action for ProjectsList {
    const SPEC: &'static ActionSpec = &ActionSpec {
        name: "projects.list",
        summary: "GET /projects (today's API: /users/me/projects/), paginated.",
        inputs: &PAGING,
        one_of: &[],
        outputs: LIST_OUTPUTS,
        changes_server: false,
    };

    fn plan(inputs: &Inputs, endpoint: &Endpoint) -> Result<ActionPlan, ActionError> {
        let (paging, first) = PROJECTS.first_page(inputs, &[], endpoint)?;
        Ok(paging.plan(vec![first]))
    }

    async fn run(inputs: &Inputs, ctx: &RunCtx<'_>) -> ActionResult {
        let (paging, first) = PROJECTS.first_page(inputs, &[], ctx.client.endpoint())?;
        paging.run(&first, ctx).await
    }
}

/// `tasks.get`.
pub struct TasksGet;

impl Action for TasksGet {
    const SPEC: &'static ActionSpec = &ActionSpec {
        name: "tasks.get",
        summary: "GET /tasks/{task}/.",
        inputs: &[TASK],
        one_of: &[],
        outputs: &[
            ("id", "Task id."),
            ("status", "Its status."),
            ("...", "Every other field of the task."),
        ],
        changes_server: false,
    };

    fn plan(inputs: &Inputs, endpoint: &Endpoint) -> Result<ActionPlan, ActionError> {
        TASKS.plan_get(inputs, &TASK, endpoint)
    }

    async fn run(inputs: &Inputs, ctx: &RunCtx<'_>) -> ActionResult {
        TASKS.run_get(inputs, &TASK, ctx).await
    }
}

const TASK_FILTERS: [Field; 2] = [TASK_PROJECT, TASK_STATUS];
const TASKS_LIST_INPUTS: [Field; 6] = [
    TASK_PROJECT,
    TASK_STATUS,
    PAGING[0],
    PAGING[1],
    PAGING[2],
    PAGING[3],
];

/// `tasks.list`.
pub struct TasksList;

impl Action for TasksList {
    const SPEC: &'static ActionSpec = &ActionSpec {
        name: "tasks.list",
        summary: "GET /tasks/ with `project`/`status` filters, paginated.",
        inputs: &TASKS_LIST_INPUTS,
        one_of: &[],
        outputs: LIST_OUTPUTS,
        changes_server: false,
    };

    fn plan(inputs: &Inputs, endpoint: &Endpoint) -> Result<ActionPlan, ActionError> {
        let (paging, first) = TASKS.first_page(inputs, &TASK_FILTERS, endpoint)?;
        Ok(paging.plan(vec![first]))
    }

    async fn run(inputs: &Inputs, ctx: &RunCtx<'_>) -> ActionResult {
        let (paging, first) = TASKS.first_page(inputs, &TASK_FILTERS, ctx.client.endpoint())?;
        paging.run(&first, ctx).await
    }
}

const WAIT_PROJECT: Field = req("project", Ty::Str, "The project whose tasks to wait for.");
const DONE: Field = dflt(
    "done",
    Ty::StrOrList,
    "completed",
    "Statuses that count as done.",
);
const FAILED: Field = dflt(
    "failed",
    Ty::StrOrList,
    "failed",
    "Statuses that fail the wait at once.",
);
const INTERVAL: Field = dflt("interval", Ty::Duration, "10s", "First wait between polls.");
const MAX_INTERVAL: Field = dflt(
    "max_interval",
    Ty::Duration,
    "1m",
    "The wait grows up to this.",
);
const TIMEOUT: Field = dflt("timeout", Ty::Duration, "1h", "Give up after this long.");

/// `tasks.wait`.
pub struct TasksWait;

/// `tasks.wait`'s inputs, typed.
struct WaitInputs {
    project: Text,
    done: Vec<String>,
    failed: Vec<String>,
    interval: Option<Duration>,
    max_interval: Option<Duration>,
    timeout: Option<Duration>,
}

impl WaitInputs {
    fn read(inputs: &Inputs) -> Result<Self, ActionError> {
        let statuses = |f: &Field| -> Result<Vec<String>, ActionError> {
            let given = inputs.texts(f)?;
            Ok(if given.is_empty() {
                f.default.map(str::to_string).into_iter().collect()
            } else {
                given.iter().map(Text::shown).collect()
            })
        };
        Ok(WaitInputs {
            project: inputs.required_text(&WAIT_PROJECT)?,
            done: statuses(&DONE)?,
            failed: statuses(&FAILED)?,
            interval: inputs.duration(&INTERVAL)?,
            max_interval: inputs.duration(&MAX_INTERVAL)?,
            timeout: inputs.duration(&TIMEOUT)?,
        })
    }

    fn first(&self, endpoint: &Endpoint) -> HttpRequest {
        HttpRequest::to(Method::Get, TASKS.all(endpoint)).with_query(&[
            ("limit".to_string(), Text::Known("1000".into())),
            ("project".to_string(), self.project.clone()),
        ])
    }
}

impl Action for TasksWait {
    const SPEC: &'static ActionSpec = &ActionSpec {
        name: "tasks.wait",
        summary: "GET /tasks/?project={project} (every page) until every task is done.",
        inputs: &[WAIT_PROJECT, DONE, FAILED, INTERVAL, MAX_INTERVAL, TIMEOUT],
        one_of: &[],
        outputs: &[
            ("count", "Tasks of the project."),
            ("statuses", "How many tasks have each status."),
            ("polls", "Polls made."),
        ],
        changes_server: false,
    };

    fn plan(inputs: &Inputs, endpoint: &Endpoint) -> Result<ActionPlan, ActionError> {
        let wait = WaitInputs::read(inputs)?;
        Ok(ActionPlan {
            requests: vec![wait.first(endpoint)],
            repeats: Some(Repeats::Poll {
                interval: shown_duration(wait.interval),
                max_interval: shown_duration(wait.max_interval),
                timeout: shown_duration(wait.timeout),
                until: format!("every task's status is {}", wait.done.join(" or ")),
                fail_if: Some(format!("a task's status is {}", wait.failed.join(" or "))),
            }),
            notes: vec!["each poll reads every page of the project's tasks".into()],
        })
    }

    async fn run(inputs: &Inputs, ctx: &RunCtx<'_>) -> ActionResult {
        wait_tasks(WaitInputs::read(inputs)?, ctx).await
    }
}

async fn wait_tasks(wait: WaitInputs, ctx: &RunCtx<'_>) -> ActionResult {
    let first = wait.first(ctx.client.endpoint());
    let timeout = wait.timeout.unwrap_or_default();
    let mut poller = super::Poller::new(
        wait.interval.unwrap_or_default(),
        wait.max_interval.unwrap_or_default(),
        timeout,
    );
    loop {
        let polls = poller.poll();
        let mut statuses = serde_json::Map::new();
        let mut failed = None;
        let (count, _) = paginate(ctx.client, &ctx.call, &first, None, &mut |task| {
            let task = task.value();
            let status = task
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if failed.is_none() && wait.failed.contains(&status) {
                failed = Some(task.get("id").cloned().unwrap_or(Value::Null));
            }
            let n = statuses.get(&status).and_then(Value::as_u64).unwrap_or(0);
            statuses.insert(status, json!(n + 1));
        })
        .await?;
        if let Some(task) = failed {
            return Err(ActionError::Other(format!(
                "task {task} of project {} failed (after {polls} poll{})",
                wait.project.shown(),
                if polls == 1 { "" } else { "s" }
            )));
        }
        let pending: u64 = statuses
            .iter()
            .filter(|(s, _)| !wait.done.contains(s))
            .filter_map(|(_, n)| n.as_u64())
            .sum();
        if pending == 0 {
            return Ok(json!({"count": count, "statuses": statuses, "polls": polls}).into());
        }
        if poller.out_of_time() {
            return Err(ActionError::Other(format!(
                "{pending} of {count} tasks of project {} are not done after {} ({polls} polls; statuses: {}); timed out (timeout: {})",
                wait.project.shown(),
                poller.waited(),
                Value::Object(statuses),
                format_duration(timeout)
            )));
        }
        poller.pause(ctx, "while waiting for tasks").await?;
    }
}
