//! The plan, what `--apply` did and what is left, as text; the report
//! prints it (`report::setup`).

use std::fmt::Write as _;

use super::apply::{Applied, Done};
use super::plan::{Action, Boot, Plan, StepKind};

/// The plan as text, as `setup` without `--apply` prints it.
pub fn plan_text(plan: &Plan) -> String {
    let f = &plan.facts;
    let mut out = String::new();
    let _ = writeln!(out, "portage-ima setup for {}", f.root.display());
    let _ = writeln!(
        out,
        "  init: {:?}, initramfs: {}",
        f.init,
        initramfs(&f.initramfs)
    );
    let _ = writeln!(
        out,
        "  kernel: {}, configuration {}",
        kernel(&f.kernel_package),
        f.kernel_config.display()
    );
    if !f.keyrings.is_empty() {
        let _ = writeln!(out, "  keyrings: {}", f.keyrings.join(" "));
    }
    let _ = writeln!(out, "  Secure Boot: {}", f.secure_boot);
    let _ = writeln!(
        out,
        "  PORTAGE_TMPDIR={} ({}): {}",
        f.portage.tmpdir, f.portage.source, f.portage.build_fs
    );
    let _ = writeln!(
        out,
        "  keyring path {}: {}",
        plan.keyring.number, plan.keyring.why
    );
    out.push('\n');
    for (n, step) in plan.steps.iter().enumerate() {
        let _ = writeln!(out, "{}. {}", n + 1, step.title);
        if !step.reason.is_empty() {
            let _ = writeln!(out, "   why: {}", step.reason);
        }
        if let Some(why) = &step.blocked {
            let _ = writeln!(out, "   CANNOT BE DONE HERE: {why}");
        }
        for action in &step.actions {
            if super::apply::already_done(action, &plan.facts.root) {
                let _ = writeln!(out, "   already done: {}", action_line(action));
                continue;
            }
            match action {
                Action::Write { path, shown, .. } => {
                    let _ = writeln!(out, "   write {}:", path.display());
                    for line in shown.lines() {
                        let _ = writeln!(out, "       {line}");
                    }
                }
                Action::Symlink { path, target } => {
                    let _ = writeln!(out, "   link {} -> {}", path.display(), target.display());
                }
                Action::Copy { from, to } => {
                    let _ = writeln!(out, "   copy {} to {}", from.display(), to.display());
                }
                Action::Run(run) => {
                    let _ = writeln!(out, "   run: {}", run.shell());
                }
            }
        }
        if step.kind == StepKind::Sign {
            let _ = writeln!(out, "   run: portage-ima sign --all");
            let _ = writeln!(out, "   run: portage-ima policy --check");
        }
        for manual in &step.manual {
            let _ = writeln!(out, "   left for you: {manual}");
        }
    }
    out.push('\n');
    out += &boots_text(&plan.boots);
    out
}

/// One action in a line.
fn action_line(action: &Action) -> String {
    match action {
        Action::Write { path, .. } => format!("{} as planned", path.display()),
        Action::Symlink { path, target } => format!("{} -> {}", path.display(), target.display()),
        Action::Copy { to, .. } => format!("{} as planned", to.display()),
        Action::Run(run) => format!("{} (what it makes is there)", run.shell()),
    }
}

fn initramfs(i: &crate::gentoo::system::Initramfs) -> String {
    use crate::gentoo::system::Initramfs;
    match i {
        Initramfs::None => "none".into(),
        Initramfs::Dracut => "dracut".into(),
        Initramfs::Unsupported(n) => format!("{n} (not configured by setup)"),
    }
}

fn kernel(k: &crate::gentoo::system::KernelPackage) -> String {
    use crate::gentoo::system::KernelPackage;
    match k {
        KernelPackage::DistSource { cpv, modules_sign } => format!(
            "{cpv}{}",
            if *modules_sign {
                " (USE=modules-sign)"
            } else {
                ""
            }
        ),
        KernelPackage::DistBinary { cpv } => cpv.clone(),
        KernelPackage::Other => "not a dist-kernel (built by hand)".into(),
    }
}

/// The boots still to do, numbered.
pub fn boots_text(boots: &[Boot]) -> String {
    let mut out = String::from("The boots still to do:\n");
    for (n, boot) in boots.iter().enumerate() {
        let _ = writeln!(out, "Boot {}: {}", n + 1, boot.title);
        for b in &boot.before {
            let _ = writeln!(out, "   before: {b}");
        }
        if let Some(p) = &boot.parameter {
            let _ = writeln!(out, "   kernel command line: add {p}");
        }
        for place in &boot.places {
            let _ = writeln!(out, "   in {}: {}", place.file, place.line);
            if let Some(then) = &place.then {
                let _ = writeln!(out, "      then: {then}");
            }
        }
        for a in &boot.after {
            let _ = writeln!(out, "   after: {a}");
        }
    }
    out
}

/// What `--apply` did: lines for stdout, and the steps not done (for stderr).
pub fn applied_lines(applied: &Applied) -> (Vec<String>, Vec<String>) {
    let mut lines = Vec::new();
    if applied.done.is_empty() {
        lines.push("setup: nothing to change, every step is already done".to_string());
    }
    for done in &applied.done {
        lines.push(match done {
            Done::Wrote { path, backup: None } => format!("setup: wrote {}", path.display()),
            Done::Wrote {
                path,
                backup: Some(b),
            } => format!(
                "setup: changed {} (backup: {})",
                path.display(),
                b.display()
            ),
            Done::Linked { path, target } => {
                format!("setup: linked {} -> {}", path.display(), target.display())
            }
            Done::Ran { command } => format!("setup: ran {command}"),
        });
    }
    let blocked = applied
        .blocked
        .iter()
        .map(|(title, why)| format!("setup: not done: {title}: {why}"))
        .collect();
    (lines, blocked)
}

/// What is left for the admin after `--apply`: the manual commands of
/// each step, then the boots.
pub fn left_text(plan: &Plan) -> String {
    let mut out = String::new();
    let manual: Vec<&String> = plan.steps.iter().flat_map(|s| &s.manual).collect();
    if !manual.is_empty() {
        out += "\nLeft for you:\n";
        for m in manual {
            let _ = writeln!(out, "   {m}");
        }
    }
    out.push('\n');
    out += &boots_text(&plan.boots);
    out
}
