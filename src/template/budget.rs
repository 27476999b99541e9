//! A memory budget for template renders. minijinja's fuel counts instructions, not bytes:
//! `{% set ns.s = ns.s ~ ns.s %}` in a 40-step loop, or a join with a 90 MB separator, is a
//! handful of instructions and gigabytes of memory, and a failed allocation aborts the
//! process. So a render that could grow (see [`could_grow`]) runs on a worker thread whose
//! allocations are counted by the process's global allocator; past [`MEMORY_BUDGET`] the
//! allocation that would cross it never happens: the worker raises a flag and sleeps for
//! good (an allocator may neither fail, which aborts, nor unwind), and the caller, which
//! watches the flag, returns an error naming the template. The stopped worker keeps what
//! it had allocated (under the budget), so a template that was stopped once is refused
//! without running again, and after [`MAX_STOPPED`] stops every growing render is refused.
//!
//! Must not: change what a render produces, or slow down the plain renders (`{{ x.y }}`)
//! that make up nearly all of them; those run where they are called.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Bytes one render may have allocated at once (beyond the values it reads).
pub const MEMORY_BUDGET: usize = 256 << 20;

/// Workers stopped by the budget before every growing render is refused: each one keeps up
/// to [`MEMORY_BUDGET`] for the rest of the process.
const MAX_STOPPED: usize = 4;

/// The process's allocator: the system's, counting the allocations of budgeted threads.
pub struct Counting;

#[global_allocator]
static GLOBAL: Counting = Counting;

thread_local! {
    /// Whether this thread is running a budgeted render.
    static BUDGETED: Cell<bool> = const { Cell::new(false) };
    /// Bytes this thread may still allocate while budgeted.
    static LEFT: Cell<isize> = const { Cell::new(0) };
    /// The flag to raise when the budget is spent (valid while budgeted).
    static SPENT: Cell<*const AtomicBool> = const { Cell::new(std::ptr::null()) };
}

/// Counts `bytes` more (or fewer, when negative) against a budgeted thread; never returns
/// when that would spend more than the budget.
fn charge(bytes: isize) {
    let budgeted = BUDGETED.try_with(Cell::get).unwrap_or(false);
    if !budgeted {
        return;
    }
    let left = LEFT.try_with(|l| {
        let left = l.get().saturating_sub(bytes);
        l.set(left);
        left
    });
    if left.is_ok_and(|left| left < 0) {
        if let Ok(flag) = SPENT.try_with(Cell::get) {
            if !flag.is_null() {
                // SAFETY: the flag's Arc is held by the job running on this very thread,
                // which never returns from here.
                unsafe { (*flag).store(true, Ordering::SeqCst) };
            }
        }
        // Sleeping allocates nothing; the caller has stopped waiting for this thread.
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

// SAFETY: every call is passed on to the system allocator unchanged; `charge` only counts
// (it allocates nothing, and never unwinds).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        charge(layout.size() as isize);
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        charge(layout.size() as isize);
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        charge(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        charge(new_size as isize - layout.size() as isize);
        System.realloc(ptr, layout, new_size)
    }
}

/// Could rendering `text` allocate much more than the values it reads? Plain expressions —
/// references, comparisons, `and`/`or`/`not`, and filters that give back at most what they
/// are given (`default`, `length`, `lower`, `tojson`, ...) — at most a few of them, cannot;
/// statements, `~`, `*`, `+`, calls and other filters may.
pub fn could_grow(text: &str) -> bool {
    // Every template of every step goes through here (checked, previewed, rendered): bytes
    // are scanned by hand, without a substring searcher or an allocation per call.
    let b = text.as_bytes();
    if b.windows(2).any(|w| w == b"{%") || count_opens(b) > 8 {
        return true;
    }
    let mut rest = b;
    while let Some(start) = find2(rest, b"{{") {
        let inner = &rest[start + 2..];
        let end = find2(inner, b"}}").unwrap_or(inner.len());
        if !plain_expression(&inner[..end]) {
            return true;
        }
        rest = &inner[end..];
    }
    false
}

/// Where `pat` first starts in `hay`.
fn find2(hay: &[u8], pat: &[u8; 2]) -> Option<usize> {
    hay.windows(2).position(|w| w == pat)
}

/// The number of non-overlapping `{{` (as `str::matches` counts them).
fn count_opens(b: &[u8]) -> usize {
    let (mut n, mut i) = (0, 0);
    while i + 1 < b.len() {
        if b[i] == b'{' && b[i + 1] == b'{' {
            n += 1;
            i += 2;
        } else {
            i += 1;
        }
    }
    n
}

/// Filters whose result is no bigger than their input (a few bytes per item at most),
/// with or without arguments.
const SMALL_FILTERS: &[&str] = &[
    "default",
    "d",
    "length",
    "count",
    "lower",
    "upper",
    "title",
    "capitalize",
    "trim",
    "first",
    "last",
    "int",
    "float",
    "string",
    "bool",
    "abs",
    "round",
    "list",
    "unique",
    "sort",
    "reverse",
    "items",
    "dictsort",
    "min",
    "max",
    "safe",
    "escape",
    "e",
    "urlencode",
    "select",
    "reject",
    "selectattr",
    "rejectattr",
];

/// Filters that stay small only without arguments (`tojson(indent=10**8)` does not).
const SMALL_BARE_FILTERS: &[&str] = &["tojson"];

/// Whether one `{{ }}`'s inside is plain. Bytes, not chars: everything allowed outside a
/// string literal is ASCII (any other byte is refused, as any other char was), and a
/// literal ends at the next byte equal to its ASCII quote.
fn plain_expression(expr: &[u8]) -> bool {
    let word_byte = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    // The previous token: a filter name allowed to take arguments.
    let mut call_allowed = false;
    let mut after_pipe = false;
    while i < expr.len() {
        let c = expr[i];
        i += 1;
        match c {
            b'\'' | b'"' => {
                // A string literal: skipped whole (a template is at most a few KiB).
                match expr[i..].iter().position(|&x| x == c) {
                    Some(p) => i += p + 1,
                    None => return false,
                }
                call_allowed = false;
            }
            c if word_byte(c) => {
                let start = i - 1;
                while i < expr.len() && word_byte(expr[i]) {
                    i += 1;
                }
                let word = &expr[start..i];
                call_allowed = false;
                if after_pipe {
                    after_pipe = false;
                    if SMALL_FILTERS.iter().any(|f| f.as_bytes() == word)
                        || (word == b"map" && map_by_attribute(&expr[i..]))
                    {
                        call_allowed = true;
                    } else if !SMALL_BARE_FILTERS.iter().any(|f| f.as_bytes() == word) {
                        return false;
                    }
                }
            }
            b'|' => after_pipe = true,
            b'(' if call_allowed => call_allowed = false,
            b'.' | b'[' | b']' | b' ' | b'-' | b'!' | b'=' | b'<' | b'>' | b',' | b')' | b'/'
            | b'\n' => call_allowed = false,
            _ => return false,
        }
    }
    true
}

/// `map(attribute=...)` without a `default` before the first `)`: what follows `map`.
fn map_by_attribute(rest: &[u8]) -> bool {
    let rest = rest.trim_ascii_start();
    let args = rest.split(|&c| c == b')').next().unwrap_or(b"");
    rest.starts_with(b"(attribute=") && !args.windows(7).any(|w| w == b"default")
}

/// Why a budgeted render did not finish.
pub enum Stopped {
    /// It needed more than the budget (now, or when it ran before).
    Memory,
    /// Too many renders were stopped in this process already.
    TooMany,
}

type Job = Box<dyn FnOnce() + Send>;

/// Idle workers, each waiting for its next job.
static IDLE: Mutex<Vec<mpsc::Sender<Job>>> = Mutex::new(Vec::new());
static STOPPED: AtomicUsize = AtomicUsize::new(0);
/// Templates stopped once: refused from then on.
static REFUSED: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn worker() -> Option<mpsc::Sender<Job>> {
    if let Some(idle) = IDLE.lock().ok()?.pop() {
        return Some(idle);
    }
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("avala-pipe-render".into())
        .spawn(move || {
            while let Ok(job) = rx.recv() {
                job();
            }
        })
        .ok()?;
    Some(tx)
}

/// Runs `job` (the render of `source`) within the memory budget, on a worker thread.
pub fn run<T: Send + 'static>(
    source: &str,
    job: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Stopped> {
    if REFUSED.lock().is_ok_and(|r| r.iter().any(|s| s == source)) {
        return Err(Stopped::Memory);
    }
    if STOPPED.load(Ordering::SeqCst) >= MAX_STOPPED {
        return Err(Stopped::TooMany);
    }
    let spent = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = mpsc::sync_channel::<std::thread::Result<T>>(1);
    let flag = spent.clone();
    let wrapped: Job = Box::new(move || {
        let _ = SPENT.try_with(|s| s.set(Arc::as_ptr(&flag)));
        let _ = LEFT.try_with(|l| l.set(MEMORY_BUDGET as isize));
        let _ = BUDGETED.try_with(|b| b.set(true));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
        let _ = BUDGETED.try_with(|b| b.set(false));
        let _ = SPENT.try_with(|s| s.set(std::ptr::null()));
        drop(flag);
        let _ = done_tx.send(result);
    });
    let Some(sender) = worker() else {
        return Err(Stopped::TooMany);
    };
    if sender.send(wrapped).is_err() {
        return Err(Stopped::TooMany);
    }
    loop {
        match done_rx.recv_timeout(Duration::from_millis(5)) {
            Ok(result) => {
                if let Ok(mut idle) = IDLE.lock() {
                    idle.push(sender);
                }
                return result.map_err(|panic| std::panic::resume_unwind(panic));
            }
            Err(mpsc::RecvTimeoutError::Timeout) if spent.load(Ordering::SeqCst) => {
                STOPPED.fetch_add(1, Ordering::SeqCst);
                if let Ok(mut refused) = REFUSED.lock() {
                    refused.push(source.to_string());
                }
                return Err(Stopped::Memory);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return Err(Stopped::TooMany),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::could_grow;
    use super::{SMALL_BARE_FILTERS, SMALL_FILTERS};

    // The char-and-String version `could_grow` replaced (to check they agree).
    fn could_grow_reference(text: &str) -> bool {
        if text.contains("{%") || text.matches("{{").count() > 8 {
            return true;
        }
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            let inner = &rest[start + 2..];
            let end = inner.find("}}").unwrap_or(inner.len());
            if !plain_expression_reference(&inner[..end]) {
                return true;
            }
            rest = &inner[end..];
        }
        false
    }

    fn plain_expression_reference(expr: &str) -> bool {
        let mut chars = expr.chars().peekable();
        // The previous token: a filter name allowed to take arguments.
        let mut call_allowed = false;
        let mut after_pipe = false;
        while let Some(c) = chars.next() {
            match c {
                '\'' | '"' => {
                    // A string literal: skipped whole (a template is at most a few KiB).
                    if !chars.by_ref().any(|x| x == c) {
                        return false;
                    }
                    call_allowed = false;
                }
                c if c.is_ascii_alphanumeric() || c == '_' => {
                    let mut word = String::from(c);
                    while let Some(&n) = chars.peek() {
                        if !(n.is_ascii_alphanumeric() || n == '_') {
                            break;
                        }
                        word.push(n);
                        chars.next();
                    }
                    call_allowed = false;
                    if after_pipe {
                        after_pipe = false;
                        let rest: String = chars.clone().collect();
                        if SMALL_FILTERS.contains(&word.as_str())
                            || (word == "map"
                                && rest.trim_start().starts_with("(attribute=")
                                && !rest.split(')').next().unwrap_or("").contains("default"))
                        {
                            call_allowed = true;
                        } else if !SMALL_BARE_FILTERS.contains(&word.as_str()) {
                            return false;
                        }
                    }
                }
                '|' => after_pipe = true,
                '(' if call_allowed => call_allowed = false,
                '.' | '[' | ']' | ' ' | '-' | '!' | '=' | '<' | '>' | ',' | ')' | '/' | '\n' => {
                    call_allowed = false
                }
                _ => return false,
            }
        }
        true
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_the_reference(
            text in "([{}%|()'\"a-z_ .,=!<>/\\-]|map|default|tojson|attribute=|\\{\\{|\\}\\}|é){0,40}"
        ) {
            proptest::prop_assert_eq!(could_grow(&text), could_grow_reference(&text), "{}", text);
        }
    }

    #[test]
    fn plain_references_do_not_grow() {
        for plain in [
            "plain text",
            "{{ steps.list.outputs.items }}",
            "out/{{ item.name }}-{{ vars['a-b'] }}.json",
            "{{- item.id -}}",
            "{{ steps.a.status != 'failed' and x is defined }}",
            "{{ steps.a.outputs.id | default('none') }}",
            "{{ steps.a.outputs.items | map(attribute='id') | list | tojson }}",
            "{{ xs | selectattr('n', 'equalto', 3) | list | length > 0 }}",
            "{{ xs | sort(attribute='n') | first | tojson }}",
        ] {
            assert!(!could_grow(plain), "{plain}");
        }
        for growing in [
            "{% for i in x %}{% endfor %}",
            "{{ a ~ a }}",
            "{{ x | join(',') }}",
            "{{ 'x' * 3 }}",
            "{{ f() }}",
            "{{ x | tojson(indent=100000000) }}",
            "{{ x | map('replace', 'a', big) }}",
            "{{ x | replace('a', big) }}",
            "{{ x | map(attribute='a', default=big) | list }}",
            "{{ 'unterminated }}",
            &"{{ a }}".repeat(9),
        ] {
            assert!(could_grow(growing), "{growing}");
        }
    }
}
