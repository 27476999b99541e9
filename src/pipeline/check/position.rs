//! Where a caret goes: takes the source and a position, gives the width of the token
//! there (a quoted scalar, a key, a flow collection or a plain value) for diagnostics.
//!
//! Must not: decide what is wrong; it only measures text.

use super::*;

/// Width of the token at `pos`, for the caret: a quoted scalar, a key, or a plain value.
pub fn token_width(source: &str, pos: Pos) -> usize {
    let Some(line) = source.lines().nth(pos.line.saturating_sub(1) as usize) else {
        return 1;
    };
    let rest: String = line
        .chars()
        .skip(pos.col.saturating_sub(1) as usize)
        .collect();
    let rest = rest.trim_end();
    let width = if rest.starts_with('"') || rest.starts_with('\'') {
        let quote = rest.chars().next().unwrap_or('"');
        rest[1..].find(quote).map_or(rest.len(), |i| i + 2)
    } else if rest.starts_with('[') || rest.starts_with('{') {
        // A flow collection: up to its closing bracket, when that is on this line and near.
        flow_width(rest).filter(|w| *w <= 80).unwrap_or(1)
    } else {
        // A plain scalar or key ends at the first delimiter, whichever comes first.
        [": ", ", ", "]", "}", " #"]
            .iter()
            .filter_map(|d| rest.find(d))
            .chain(rest.strip_suffix(':').map(str::len))
            .min()
            .unwrap_or(rest.len())
    };
    rest[..width.min(rest.len())].chars().count().max(1)
}

/// Byte length of the flow collection that starts `text`, up to its closing bracket.
pub(super) fn flow_width(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut quote = None;
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[' | '{') => depth += 1,
            (None, ']' | '}') => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}
