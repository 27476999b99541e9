//! The dependency graph of a pipeline's steps: a topological order in which ties go in
//! file order, the dependants of each step, cycles reported as whole paths, and the
//! Mermaid / DOT / JSON renderings of `avala-pipe graph`.
//!
//! Must not: know what steps do; it sees indexes and edges only.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::pipeline::model::Pipeline;

/// Steps as nodes, `deps[i]` the steps `i` waits for.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub deps: Vec<Vec<usize>>,
    pub dependants: Vec<Vec<usize>>,
    /// A topological order; among steps ready at the same time, file order.
    pub order: Vec<usize>,
}

impl Graph {
    /// Builds the graph, or returns every cycle found (each as the list of its steps,
    /// starting at the one that comes first in the file).
    pub fn build(deps: &[Vec<usize>]) -> Result<Graph, Vec<Vec<usize>>> {
        let n = deps.len();
        let mut dependants = vec![Vec::new(); n];
        let mut waiting: Vec<usize> = deps.iter().map(Vec::len).collect();
        for (i, ds) in deps.iter().enumerate() {
            for &d in ds {
                dependants[d].push(i);
            }
        }
        let mut ready: BinaryHeap<Reverse<usize>> =
            (0..n).filter(|&i| waiting[i] == 0).map(Reverse).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(Reverse(i)) = ready.pop() {
            order.push(i);
            for &d in &dependants[i] {
                waiting[d] -= 1;
                if waiting[d] == 0 {
                    ready.push(Reverse(d));
                }
            }
        }
        if order.len() == n {
            return Ok(Graph {
                deps: deps.to_vec(),
                dependants,
                order,
            });
        }
        Err(find_cycles(deps, &waiting))
    }

    /// The graph of a checked pipeline (built once, by the validator that proved it has
    /// no cycle).
    pub fn of(pipeline: &Pipeline) -> std::sync::Arc<Graph> {
        pipeline.graph.clone()
    }

    /// Every step that depends on `i`, directly or not.
    pub fn downstream(&self, i: usize) -> Vec<usize> {
        let mut seen = vec![false; self.deps.len()];
        let mut stack = vec![i];
        let mut out = Vec::new();
        while let Some(s) = stack.pop() {
            for &d in &self.dependants[s] {
                if !seen[d] {
                    seen[d] = true;
                    out.push(d);
                    stack.push(d);
                }
            }
        }
        out.sort_unstable();
        out
    }
}

/// Cycles among the steps Kahn's algorithm could not order.
fn find_cycles(deps: &[Vec<usize>], waiting: &[usize]) -> Vec<Vec<usize>> {
    let n = deps.len();
    let stuck: Vec<bool> = (0..n).map(|i| waiting[i] > 0).collect();
    // 0 = unvisited, 1 = on the current path, 2 = done
    let mut state = vec![0u8; n];
    let mut cycles: Vec<Vec<usize>> = Vec::new();
    for start in (0..n).filter(|&i| stuck[i]) {
        if state[start] != 0 {
            continue;
        }
        // Iterative DFS along dependency edges, keeping the path.
        let mut path: Vec<(usize, usize)> = vec![(start, 0)];
        state[start] = 1;
        while let Some(&mut (node, ref mut next)) = path.last_mut() {
            let edges: Vec<usize> = {
                let mut e: Vec<usize> = deps[node].iter().copied().filter(|&d| stuck[d]).collect();
                e.sort_unstable();
                e
            };
            if *next < edges.len() {
                let target = edges[*next];
                *next += 1;
                match state[target] {
                    0 => {
                        state[target] = 1;
                        path.push((target, 0));
                    }
                    1 => {
                        let at = path.iter().position(|(p, _)| *p == target).unwrap_or(0);
                        // Edges point at dependencies; show the flow order instead:
                        // a -> b means b needs a.
                        let mut cycle: Vec<usize> = path[at..].iter().map(|(p, _)| *p).collect();
                        cycle.reverse();
                        let min_pos = cycle
                            .iter()
                            .enumerate()
                            .min_by_key(|(_, s)| **s)
                            .map(|(i, _)| i)
                            .unwrap_or(0);
                        cycle.rotate_left(min_pos);
                        if !cycles.contains(&cycle) {
                            cycles.push(cycle);
                        }
                    }
                    _ => {}
                }
            } else {
                state[node] = 2;
                path.pop();
            }
        }
    }
    cycles
}

/// Mermaid flowchart (renders in GitHub Markdown).
pub fn to_mermaid(p: &Pipeline) -> String {
    let mut out = String::from("flowchart TD\n");
    for s in &p.steps {
        out.push_str(&format!(
            "    {}[\"{}<br/><small>{}</small>\"]\n",
            s.id,
            s.name.as_deref().unwrap_or(&s.id).replace('"', "#quot;"),
            s.action.name()
        ));
    }
    for s in &p.steps {
        for &d in &s.deps {
            out.push_str(&format!("    {} --> {}\n", p.steps[d].id, s.id));
        }
    }
    out
}

/// Graphviz DOT.
pub fn to_dot(p: &Pipeline) -> String {
    let mut out = format!(
        "digraph \"{}\" {{\n    rankdir=TB;\n    node [shape=box];\n",
        p.name.replace('"', "\\\"")
    );
    for s in &p.steps {
        out.push_str(&format!(
            "    \"{}\" [label=\"{}\\n{}\"];\n",
            s.id,
            s.name.as_deref().unwrap_or(&s.id).replace('"', "\\\""),
            s.action.name()
        ));
    }
    for s in &p.steps {
        for &d in &s.deps {
            out.push_str(&format!("    \"{}\" -> \"{}\";\n", p.steps[d].id, s.id));
        }
    }
    out.push_str("}\n");
    out
}

/// JSON: `{"pipeline", "order", "steps": [{"id", "action", "needs", "line"}], "edges": [[from, to]]}`.
pub fn to_json(p: &Pipeline) -> serde_json::Value {
    let graph = &p.graph;
    serde_json::json!({
        "pipeline": p.name,
        "order": graph.order.iter().map(|&i| &p.steps[i].id).collect::<Vec<_>>(),
        "steps": p.steps.iter().map(|s| serde_json::json!({
            "id": s.id,
            "action": s.action.name(),
            "needs": s.deps.iter().map(|&d| &p.steps[d].id).collect::<Vec<_>>(),
            "line": s.pos.line,
        })).collect::<Vec<_>>(),
        "edges": p.steps.iter().flat_map(|s| s.deps.iter().map(move |&d| [&p.steps[d].id, &s.id])).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_breaks_ties_in_file_order() {
        // 2 needs 0; 1 free; 3 needs 1 and 2
        let g = Graph::build(&[vec![], vec![], vec![0], vec![1, 2]]).unwrap();
        assert_eq!(g.order, vec![0, 1, 2, 3]);
        assert_eq!(g.downstream(0), vec![2, 3]);
    }

    #[test]
    fn cycles_are_whole_paths() {
        // a(0) needs c(2), b(1) needs a, c needs b: a -> b -> c -> a
        let err = Graph::build(&[vec![2], vec![0], vec![1], vec![]]).unwrap_err();
        assert_eq!(err, vec![vec![0, 1, 2]]);
    }
}
