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
//! 4. The rooms stand in the order of [`FLOORS`], from the top: a room
//!    imports (`crate::NAME`) only rooms below it, so no arrow runs back up
//!    and no two rooms import each other. A new room must be given its
//!    floor here before it builds.
//!
//! A new backward import fails here with the file, the line and the rule.

mod common;

use std::fs;
use std::path::Path;

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

/// The crate's rooms (the top-level modules), from the top floor down:
/// the flow of docs/design.md. `main.rs` and `lib.rs` stand above them all.
const FLOORS: &[&str] = &[
    "commands", "context", "keylime", "audit", "binpkg", "setup", "failsafe", "engine", "policy",
    "kernel", "report", "trust", "progress", "manual", "settings", "plan", "gentoo", "fs", "cli",
    "escape", "sys",
];

/// The room a source file belongs to (`policy` for `policy/check.rs`).
fn room_of(rel: &Path) -> String {
    let first = rel.iter().next().unwrap().to_string_lossy();
    first.strip_suffix(".rs").unwrap_or(&first).to_string()
}

fn violations(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    common::rust_sources(src, &mut files);
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
        let room = room_of(rel);
        let floor = FLOORS.iter().position(|r| *r == room);
        if floor.is_none() && room != "main" && room != "lib" {
            found.push(format!("{rel_s}: the room `{room}` has no place in FLOORS"));
        }
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
            // 4. Imports run down the floors only.
            if let Some(floor) = floor {
                for name in names_after(&code, "crate::") {
                    let Some(to) = FLOORS.iter().position(|r| *r == name) else {
                        continue;
                    };
                    if to <= floor && name != room {
                        found.push(format!(
                            "{rel_s}:{n}: {room} imports crate::{name}, which stands above it: {code}"
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
    for d in ["commands/doctor", "policy", "gentoo", "kernel"] {
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
    fs::write(
        src.join("kernel/enforcement.rs"),
        "use crate::policy::eval;\n",
    )
    .unwrap();
    fs::write(
        src.join("settings.rs"),
        "fn f() { crate::report::status::x(); }\n",
    )
    .unwrap();
    fs::write(src.join("newroom.rs"), "\n").unwrap();
    // The per-file decision is the plan's: it never asks the report back.
    fs::write(src.join("plan.rs"), "use crate::report::SkipReason;\n").unwrap();
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
        has("kernel/enforcement.rs:1: kernel imports crate::policy, which stands above it"),
        "{found:?}"
    );
    assert!(
        has("settings.rs:1: settings imports crate::report, which stands above it"),
        "{found:?}"
    );
    assert!(
        has("newroom.rs: the room `newroom` has no place in FLOORS"),
        "{found:?}"
    );
    assert!(
        has("plan.rs:1: plan imports crate::report, which stands above it"),
        "{found:?}"
    );
    // policy/setup.rs's crate::commands breaks rules 1 and 4, gentoo/vdb.rs's
    // crate::report rules 3 and 4.
    assert_eq!(found.len(), 10, "{found:?}");
}
