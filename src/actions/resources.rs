//! Read-only actions that fetch one resource by id (`projects.get`): one GET, the body is
//! the step's result. Each is a spec entry and a path; the code is shared.
//!
//! Takes: rendered inputs (the id). Gives: the resource as the server sent it (ids
//! normalised). Must not: send anything but a GET.

use super::{Action, ActionError, ActionPlan, ActionResult, Inputs, RunCtx};
use crate::api::request::{HttpRequest, Method};
use crate::api::Endpoint;
use crate::pipeline::spec::{req, ActionSpec, Field, Ty};

/// One resource fetched by id: its path (a `{}` hole for the id) and its id input.
struct GetOne {
    path: &'static str,
    id: Field,
}

impl GetOne {
    fn request(&self, inputs: &Inputs, endpoint: &Endpoint) -> Result<HttpRequest, ActionError> {
        let id = inputs.required_text(&self.id)?;
        Ok(HttpRequest::to(Method::Get, endpoint.at(self.path, &[&id])))
    }

    fn plan(&self, inputs: &Inputs, endpoint: &Endpoint) -> Result<ActionPlan, ActionError> {
        Ok(ActionPlan {
            requests: vec![self.request(inputs, endpoint)?],
            repeats: None,
            notes: vec![],
        })
    }

    async fn run(&self, inputs: &Inputs, ctx: &RunCtx<'_>) -> ActionResult {
        let req = self.request(inputs, ctx.client.endpoint())?;
        Ok(ctx.client.send_json(&req, &ctx.call, None).await?.body)
    }
}

const PROJECT: GetOne = GetOne {
    path: "/projects/{}",
    id: req("project", Ty::Str, "Project id."),
};

/// `projects.get`.
pub struct ProjectsGet;

impl Action for ProjectsGet {
    const SPEC: &'static ActionSpec = &ActionSpec {
        name: "projects.get",
        summary: "GET /projects/{project}.",
        inputs: &[PROJECT.id],
        one_of: &[],
        outputs: &[
            ("id", "Project id."),
            ("name", "Its name."),
            ("...", "Every other field of the project."),
        ],
        changes_server: false,
    };

    fn plan(inputs: &Inputs, endpoint: &Endpoint) -> Result<ActionPlan, ActionError> {
        PROJECT.plan(inputs, endpoint)
    }

    async fn run(inputs: &Inputs, ctx: &RunCtx<'_>) -> ActionResult {
        PROJECT.run(inputs, ctx).await
    }
}
