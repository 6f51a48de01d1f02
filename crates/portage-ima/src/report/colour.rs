//! Colour for statuses on a terminal: `ok` green, warnings yellow, `FAIL`
//! and failed files red. Decided once per stream: `--color=always|never`
//! wins; with `auto` (the default) colour only on a terminal (not `TERM=dumb`)
//! and unless `NO_COLOR` (no-color.org: any non-empty value) or Portage's
//! `NOCOLOR` (make.conf: `true`/`yes`) asks for none. Piped output, logs and
//! the hook's output under emerge are never coloured by `auto`.

use std::io::IsTerminal;
use std::sync::OnceLock;

use crate::cli::ColorWhen;

/// The `--color` choice and the environment's TERM, NO_COLOR and NOCOLOR.
#[derive(Default)]
struct Choice {
    when: ColorWhen,
    term: Option<String>,
    no_color: Option<String>,
    nocolor: Option<String>,
}

static CHOICE: OnceLock<Choice> = OnceLock::new();
static STDOUT: OnceLock<bool> = OnceLock::new();
static STDERR: OnceLock<bool> = OnceLock::new();

/// What a status means to the reader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    /// As it should be (`ok`, `signed`): green.
    Good,
    /// Worth a look, not a failure (`unsigned`, `warn`): yellow.
    Warn,
    /// A failure (`failed`, `bad-signature`, `fail`): red.
    Bad,
    /// Left alone: skipped checks, statuses that are as meant.
    Plain,
}

/// The `--color` choice, with the environment's variables (`var`); called
/// once by main.
pub fn init(when: ColorWhen, var: impl Fn(&str) -> Option<String>) {
    let _ = CHOICE.set(Choice {
        when,
        term: var("TERM"),
        no_color: var("NO_COLOR"),
        nocolor: var("NOCOLOR"),
    });
}

/// Whether to colour, from the choice and the environment.
pub fn wanted(when: ColorWhen, no_color: Option<&str>, nocolor: Option<&str>, tty: bool) -> bool {
    match when {
        ColorWhen::Always => true,
        ColorWhen::Never => false,
        ColorWhen::Auto => {
            let no_color = no_color.is_some_and(|v| !v.is_empty());
            let nocolor = nocolor.is_some_and(|v| matches!(v, "true" | "yes" | "1"));
            tty && !no_color && !nocolor
        }
    }
}

fn decide(tty: bool) -> bool {
    let default = Choice::default();
    let choice = CHOICE.get().unwrap_or(&default);
    let tty = tty && choice.term.as_deref() != Some("dumb");
    wanted(
        choice.when,
        choice.no_color.as_deref(),
        choice.nocolor.as_deref(),
        tty,
    )
}

/// `text` coloured for stdout when colour is on.
pub fn out(tone: Tone, text: &str) -> String {
    let on = *STDOUT.get_or_init(|| decide(std::io::stdout().is_terminal()));
    paint(on, tone, text)
}

/// `text` coloured for stderr when colour is on.
pub fn err(tone: Tone, text: &str) -> String {
    let on = *STDERR.get_or_init(|| decide(std::io::stderr().is_terminal()));
    paint(on, tone, text)
}

fn paint(on: bool, tone: Tone, text: &str) -> String {
    let code = match tone {
        Tone::Good => "32",
        Tone::Warn => "33",
        Tone::Bad => "1;31",
        Tone::Plain => return text.to_owned(),
    };
    if on {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_then_the_environment_then_the_terminal() {
        use ColorWhen::*;
        assert!(wanted(Always, Some("1"), Some("true"), false));
        assert!(!wanted(Never, None, None, true));
        assert!(wanted(Auto, None, None, true));
        assert!(!wanted(Auto, None, None, false));
        assert!(!wanted(Auto, Some("1"), None, true));
        assert!(
            wanted(Auto, Some(""), None, true),
            "an empty NO_COLOR is unset"
        );
        assert!(!wanted(Auto, None, Some("true"), true));
        assert!(wanted(Auto, None, Some("false"), true));
    }

    #[test]
    fn paints_only_when_on() {
        assert_eq!(paint(true, Tone::Bad, "FAIL"), "\x1b[1;31mFAIL\x1b[0m");
        assert_eq!(paint(false, Tone::Bad, "FAIL"), "FAIL");
        assert_eq!(paint(true, Tone::Plain, "skip"), "skip");
    }
}
