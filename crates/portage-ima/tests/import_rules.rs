//! The import rules docs/design.md states, checked on the source text:
//!
//! 1. Only `commands/` (and `main.rs`) may name `crate::commands`: the
//!    library rooms never import an entry point.
//! 2. A command never imports another command: `commands/X.rs` and
//!    `commands/X/...` reach no `commands::Y` (`super::Y` from a file
//!    directly in `commands/`, `super::super::Y` from deeper), apart from
//!    `commands/mod.rs`, which dispatches.
//! 3. `gentoo/` and `fs/` are the ground floor: they import nothing of the
//!    crate but themselves (`gentoo/` may use `fs/`).
//! 4. The per-file flow runs one way, gentoo/fs -> plan -> engine ->
//!    report: `plan` (what happens to each file, decided once) builds on
//!    `gentoo/`, `fs/` and `policy/` only; `engine` never reads `settings`
//!    (the plan carries what they decided); `report` never reaches back
//!    into `engine`.
//!
//! A new backward import fails here with the file, the line and the rule.

use std::fs;
use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file, without comments (`//` to the end of the line), so
/// that a doc line naming a module is no import.
fn code_lines(text: &str) -> Vec<(usize, String)> {
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            let code = line.split("//").next().unwrap_or("");
            (i + 1, code.to_string())
        })
        .filter(|(_, code)| !code.trim().is_empty())
        .collect()
}

/// The command modules: the files and folders directly in `commands/`.
fn commands(src: &Path) -> Vec<String> {
    fs::read_dir(src.join("commands"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let stem = p.file_stem()?.to_str()?.to_string();
            (stem != "mod").then_some(stem)
        })
        .collect()
}

/// Every `prefix::NAME` in `code`, as NAMEs.
fn names_after<'a>(code: &'a str, prefix: &str) -> Vec<&'a str> {
    code.match_indices(prefix)
        .map(|(i, _)| {
            let rest = &code[i + prefix.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect()
}

/// Whether `rel` is in the room `room`: the file `room.rs` or the folder.
fn in_room(rel: &Path, room: &str) -> bool {
    rel.starts_with(room) || rel == Path::new(&format!("{room}.rs"))
}

/// Rule 4: each room of the flow, the crate modules it may name (when the
/// list is not empty) and those it may not.
const FLOW: &[(&str, &[&str], &[&str])] = &[
    ("plan", &["plan", "gentoo", "fs", "policy"], &[]),
    ("engine", &[], &["settings", "commands", "cli"]),
    ("report", &[], &["engine"]),
];

fn violations(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    sources(src, &mut files);
    let commands = commands(src);
    let mut found = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(src).unwrap();
        let rel_s = rel.to_string_lossy().into_owned();
        let text = fs::read_to_string(file).unwrap();
        let in_commands = rel.starts_with("commands");
        let own_command = rel
            .iter()
            .nth(1)
            .and_then(|c| Path::new(c).file_stem())
            .map(|s| s.to_string_lossy().into_owned());
        let depth = rel.components().count();
        for (n, code) in code_lines(&text) {
            // 1. Library rooms never import an entry point.
            if !in_commands && rel_s != "main.rs" && code.contains("crate::commands") {
                found.push(format!(
                    "{rel_s}:{n}: a library room imports crate::commands: {code}"
                ));
            }
            if in_commands && rel_s != "commands/mod.rs" {
                // 2. No command imports another.
                let mut named: Vec<&str> = names_after(&code, "crate::commands::");
                if depth == 2 {
                    named.extend(names_after(&code, "super::"));
                } else if depth == 3 {
                    named.extend(names_after(&code, "super::super::"));
                }
                for name in named {
                    if commands.iter().any(|c| c == name) && own_command.as_deref() != Some(name) {
                        found.push(format!(
                            "{rel_s}:{n}: command imports the command `{name}`: {code}"
                        ));
                    }
                }
            }
            // 4. The per-file flow.
            for (room, allowed, forbidden) in FLOW {
                if !in_room(rel, room) {
                    continue;
                }
                for name in names_after(&code, "crate::") {
                    let backward = if allowed.is_empty() {
                        forbidden.contains(&name)
                    } else {
                        !allowed.contains(&name)
                    };
                    if backward {
                        found.push(format!(
                            "{rel_s}:{n}: {room} imports crate::{name} against the flow \
                             gentoo/fs -> plan -> engine -> report"
                        ));
                    }
                }
            }
            // 3. The ground floor.
            for (room, allowed) in [("gentoo", &["gentoo", "fs"][..]), ("fs", &["fs"][..])] {
                if rel.starts_with(room) {
                    for name in names_after(&code, "crate::") {
                        if !allowed.contains(&name) {
                            found.push(format!(
                                "{rel_s}:{n}: {room}/ is the ground floor but imports crate::{name}"
                            ));
                        }
                    }
                }
            }
        }
    }
    found
}

#[test]
fn imports_follow_the_documented_flow() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = violations(&src);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// The checker itself: each rule fires on a planted file.
#[test]
fn a_planted_backward_import_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    for d in ["commands/doctor", "policy", "gentoo"] {
        fs::create_dir_all(src.join(d)).unwrap();
    }
    fs::write(
        src.join("commands/mod.rs"),
        "pub mod verify;\npub mod audit;\n",
    )
    .unwrap();
    fs::write(src.join("commands/verify.rs"), "pub fn key_set() {}\n").unwrap();
    fs::write(
        src.join("commands/audit.rs"),
        "fn f() { super::verify::key_set(); }\n",
    )
    .unwrap();
    fs::write(
        src.join("commands/doctor/mod.rs"),
        "use super::super::verify::key_set; // a comment naming crate::commands is fine\n",
    )
    .unwrap();
    fs::write(
        src.join("policy/setup.rs"),
        "use crate::commands::doctor::portage_vars;\n",
    )
    .unwrap();
    fs::write(src.join("gentoo/vdb.rs"), "use crate::report::Counts;\n").unwrap();
    fs::write(src.join("plan.rs"), "use crate::settings::ConfigFiles;\n").unwrap();
    fs::write(src.join("engine.rs"), "use crate::settings::Settings;\n").unwrap();
    let found = violations(src);
    let has = |needle: &str| found.iter().any(|f| f.contains(needle));
    assert!(
        has("commands/audit.rs:1: command imports the command `verify`"),
        "{found:?}"
    );
    assert!(
        has("commands/doctor/mod.rs:1: command imports the command `verify`"),
        "{found:?}"
    );
    assert!(
        has("policy/setup.rs:1: a library room imports crate::commands"),
        "{found:?}"
    );
    assert!(
        has("gentoo/vdb.rs:1: gentoo/ is the ground floor but imports crate::report"),
        "{found:?}"
    );
    assert!(
        has("plan.rs:1: plan imports crate::settings against the flow"),
        "{found:?}"
    );
    assert!(
        has("engine.rs:1: engine imports crate::settings against the flow"),
        "{found:?}"
    );
    assert_eq!(found.len(), 6, "{found:?}");
}
