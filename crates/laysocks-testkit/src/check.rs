//! Small assertions the integration tests share: run a program under the layer, fail
//! with its output on a leak, pick values out of a probe's `key=value` lines.

use crate::{Rig, Run};

/// `laysocks -x URL OPTS… -- PROGRAM ARGS…` in the client namespace, run to completion
/// (bounded by [`Rig::run`]).
pub fn under(rig: &Rig, url: &str, opts: &[&str], program: &str, args: &[&str]) -> Run {
    let mut all: Vec<&str> = opts.to_vec();
    all.push("--");
    all.push(program);
    all.extend_from_slice(args);
    rig.run(&mut rig.laysocks(url, &all))
}

/// Fails with the program's output when anything leaked since the last baseline.
#[track_caller]
pub fn no_leak(rig: &Rig, run: &Run) {
    if let Err(e) = rig.check_no_leak() {
        panic!("{e}\n{run}");
    }
}

/// The rest of the first stdout line that starts with `key` followed by `=` or a space.
#[track_caller]
pub fn get<'a>(run: &'a Run, key: &str) -> &'a str {
    run.stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix(key)
                .and_then(|r| r.strip_prefix('=').or_else(|| r.strip_prefix(' ')))
        })
        .unwrap_or_else(|| panic!("no `{key}` line:\n{run}"))
}

/// Fails unless stdout has exactly this line.
#[track_caller]
pub fn has_line(run: &Run, line: &str) {
    assert!(
        run.stdout_lines().contains(&line),
        "stdout lacks the line {line:?}:\n{run}"
    );
}

/// The `laysocks:` lines on stderr.
pub fn layer_lines(run: &Run) -> Vec<&str> {
    run.stderr
        .lines()
        .filter(|l| l.starts_with("laysocks:"))
        .collect()
}
