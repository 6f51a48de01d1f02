//! The completion scripts `portage-ima generate completions SHELL` writes
//! (the ebuild installs them), driven in the real shells from Debian: bash
//! through its programmable-completion variables, fish through `complete
//! -C`, zsh through its completion system in an interactive shell on a
//! pseudo-terminal (zpty), each asked for real words.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn script(shell: &str, dir: &Path) -> std::path::PathBuf {
    let out = common::run_ok(common::cmd().args(["generate", "completions", shell]));
    let path = dir.join(format!("portage-ima.{shell}"));
    std::fs::write(&path, &out.stdout).unwrap();
    path
}

/// What bash's completion function offers for `words` (the last one being
/// completed), as readline would call it.
fn bash_complete(script: &Path, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let cword = words.len() - 1;
    let prev = if cword > 0 { words[cword - 1] } else { "" };
    let code = format!(
        "source '{}'; COMP_WORDS=({}); COMP_CWORD={cword}; COMP_LINE='{}'; COMP_POINT=${{#COMP_LINE}}; \
         _portage__ima portage-ima '{}' '{prev}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        quoted.join(" "),
        words.join(" "),
        words[cword],
    );
    let out = common::run_ok(Command::new("bash").args(["--norc", "--noprofile", "-c", &code]));
    common::text(&out).lines().map(str::to_owned).collect()
}

fn fish_complete(script: &Path, line: &str) -> Vec<String> {
    let code = format!("source '{}'; complete -C '{line}'", script.display());
    let out = common::run_ok(
        Command::new("fish")
            .args(["--no-config", "-c", &code])
            .env("HOME", script.parent().unwrap()),
    );
    let text = common::text(&out);
    text.lines()
        .map(|l| l.split('\t').next().unwrap().to_owned())
        .collect()
}

/// Types `line` and a Tab into an interactive zsh with compinit and our
/// `_portage-ima` on fpath; `compadd` is wrapped to record what the
/// completion system was offered.
fn zsh_complete(script: &Path, line: &str) -> Vec<String> {
    let dir = script.parent().unwrap();
    let fpath = dir.join("zfunc");
    std::fs::create_dir_all(&fpath).unwrap();
    std::fs::copy(script, fpath.join("_portage-ima")).unwrap();
    let out = dir.join("zsh-offered");
    let _ = std::fs::remove_file(&out);
    let inner = dir.join("inner.zsh");
    std::fs::write(
        &inner,
        format!(
            r#"fpath=('{}' $fpath)
autoload -U compinit && compinit -u -D
PROMPT='' RPROMPT=''
compadd() {{
  if [[ ${{@[1,(i)(-|--)]}} == *-(O|A|D)\ * ]]; then builtin compadd "$@"; return $?; fi
  local -a hits
  builtin compadd -A hits "$@"
  print -rl -- $hits >> '{}'
  builtin compadd "$@"
}}
"#,
            fpath.display(),
            out.display()
        ),
    )
    .unwrap();
    let outer = format!(
        r#"zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z "source '{}'"
zpty -w -n z '{line}'$'\t'
for i in {{1..100}}; do [[ -s '{}' ]] && break; sleep 0.1; done
sleep 0.3
zpty -d z"#,
        inner.display(),
        out.display()
    );
    let start = Instant::now();
    common::run_ok(
        Command::new("zsh")
            .args(["-f", "-c", &outer])
            .env("HOME", dir),
    );
    assert!(start.elapsed() < Duration::from_secs(60));
    std::fs::read_to_string(&out)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn has(offered: &[String], word: &str, what: &str) {
    assert!(
        offered.iter().any(|w| w == word),
        "{what}: {word} not offered; offered: {offered:?}"
    );
}

/// The bug of issue 24: bash stopped at the subcommand, as clap_complete's
/// `case` labels spelt the state of `portage-ima` differently from the
/// state itself.
#[test]
fn bash_completes_subcommands_and_their_options() {
    if !common::require_tool("bash", "bash_completes_subcommands_and_their_options") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = script("bash", dir.path());
    has(
        &bash_complete(&script, &["portage-ima", "ver"]),
        "verify",
        "bash: portage-ima ver",
    );
    let sign = bash_complete(&script, &["portage-ima", "sign", "--"]);
    has(&sign, "--dry-run", "bash: portage-ima sign --");
    has(&sign, "--files", "bash: portage-ima sign --");
    has(
        &bash_complete(&script, &["portage-ima", "verify", "--a"]),
        "--all",
        "bash",
    );
    has(
        &bash_complete(&script, &["portage-ima", "export", "keylime", "--ex"]),
        "--exclude",
        "bash: nested subcommand",
    );
    has(
        &bash_complete(&script, &["portage-ima", "sign", "--progress", ""]),
        "lines",
        "bash: a value",
    );
}

#[test]
fn fish_completes_subcommands_and_their_options() {
    if !common::require_tool("fish", "fish_completes_subcommands_and_their_options") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = script("fish", dir.path());
    has(&fish_complete(&script, "portage-ima ver"), "verify", "fish");
    has(
        &fish_complete(&script, "portage-ima sign --dr"),
        "--dry-run",
        "fish",
    );
    has(
        &fish_complete(&script, "portage-ima doctor --j"),
        "--json",
        "fish",
    );
}

#[test]
fn zsh_completes_subcommands_and_their_options() {
    if !common::require_tool("zsh", "zsh_completes_subcommands_and_their_options") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = script("zsh", dir.path());
    has(&zsh_complete(&script, "portage-ima ver"), "verify", "zsh");
    has(
        &zsh_complete(&script, "portage-ima sign --dr"),
        "--dry-run",
        "zsh",
    );
}
