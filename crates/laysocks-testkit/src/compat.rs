//! The compatibility table: run one real program per row under the layer, record whether
//! it did its job end to end and whether anything went around the proxy, and render the
//! result as the markdown table the README carries.
//!
//! Why a table rather than one test per program: users ask "does laysocks work with X?",
//! and a table that CI regenerates answers that honestly, for every program at once. So
//! the rows run one after the other on one rig and each is judged on its own: a program
//! that fails or panics (a helper that timed out, a server that did not start) marks its
//! own row and the others still run. The caller asserts at the end, with the whole table.
//!
//! The rendered table holds only what is fixed per program (name, static notes) and the
//! two verdicts, so a passing run always renders the same text and the README's copy can
//! be compared byte for byte ([`readme_table`]).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use crate::Rig;

/// The README's table sits between these two lines.
pub const BEGIN: &str = "<!-- compat:begin -->";
pub const END: &str = "<!-- compat:end -->";

/// What one row did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub program: String,
    pub notes: String,
    /// `Err(why)` when the program did not do its job (or its check panicked).
    pub works: Result<(), String>,
    /// `Err(what leaked)` from [`Rig::check_no_leak`] after the row.
    pub leak_free: Result<(), String>,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.works.is_ok() && self.leak_free.is_ok()
    }
}

/// Runs one row: resets the rig's leak baseline, runs `check` (a panic inside it counts
/// as "does not work", with the panic's message), then reads the leak counters.
pub fn run_row(
    rig: &Rig,
    program: &str,
    notes: &str,
    check: impl FnOnce() -> Result<(), String>,
) -> Outcome {
    rig.reset_leak_baseline();
    let start = Instant::now();
    let works = match catch_unwind(AssertUnwindSafe(check)) {
        Ok(r) => r,
        Err(p) => Err(format!("panicked: {}", panic_text(&*p))),
    };
    let elapsed = start.elapsed();
    let leak_free = rig.check_no_leak();
    Outcome {
        program: program.to_string(),
        notes: notes.to_string(),
        works,
        leak_free,
        elapsed,
    }
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else {
        "(no message)".to_string()
    }
}

fn yes_no(r: &Result<(), String>) -> &'static str {
    if r.is_ok() {
        "yes"
    } else {
        "no"
    }
}

/// The markdown table: `| program | works | leak-free | notes |`, one line per row, in
/// the order given, ending with a newline.
pub fn table(rows: &[Outcome]) -> String {
    let mut s = String::from("| program | works | leak-free | notes |\n|---|---|---|---|\n");
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            cell(&r.program),
            yes_no(&r.works),
            yes_no(&r.leak_free),
            cell(&r.notes)
        ));
    }
    s
}

/// A table cell cannot hold a `|` or a line break.
fn cell(text: &str) -> String {
    text.replace('|', "/").replace('\n', " ")
}

/// One paragraph per failed row: which row, why it does not work, what leaked.
pub fn failures(rows: &[Outcome]) -> Vec<String> {
    rows.iter()
        .filter(|r| !r.ok())
        .map(|r| {
            let mut s = format!("row `{}`:", r.program);
            if let Err(e) = &r.works {
                s.push_str(&format!("\n  does not work: {e}"));
            }
            if let Err(e) = &r.leak_free {
                s.push_str(&format!("\n  leaked: {e}"));
            }
            s
        })
        .collect()
}

/// The text between [`BEGIN`] and [`END`] in `readme` (the lines strictly between the
/// two marker lines), or `None` when a marker is missing or they are out of order.
pub fn readme_table(readme: &str) -> Option<&str> {
    let b = readme.find(BEGIN)?;
    let after = b + readme[b..].find('\n')? + 1;
    let e = after + readme[after..].find(END)?;
    Some(&readme[after..e])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(p: &str, works: bool, leak: bool) -> Outcome {
        let r = |ok: bool| if ok { Ok(()) } else { Err("why".to_string()) };
        Outcome {
            program: p.into(),
            notes: "a | b".into(),
            works: r(works),
            leak_free: r(leak),
            elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn renders_rows_and_escapes_cells() {
        let t = table(&[row("curl", true, true), row("nc", false, true)]);
        assert_eq!(
            t,
            "| program | works | leak-free | notes |\n|---|---|---|---|\n\
             | curl | yes | yes | a / b |\n| nc | no | yes | a / b |\n"
        );
    }

    #[test]
    fn failures_name_the_row_and_the_reason() {
        let f = failures(&[row("curl", true, true), row("nc", true, false)]);
        assert_eq!(f, ["row `nc`:\n  leaked: why"]);
    }

    #[test]
    fn finds_the_table_between_the_markers() {
        let readme = format!("# x\n{BEGIN}\n| a |\n{END}\nrest\n");
        assert_eq!(readme_table(&readme), Some("| a |\n"));
        assert_eq!(readme_table("no markers"), None);
        assert_eq!(readme_table(&format!("{END}\n{BEGIN}\n")), None);
    }
}
