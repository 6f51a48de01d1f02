//! `setup`'s output: the numbered plan (text, or JSON), what `--apply`
//! changed, and what is left (the boots). The text is made by
//! [`crate::setup::text`]; this module only writes it.

/// Prints the plan's text.
pub(crate) fn print_plan(text: &str) {
    print!("{text}");
}

/// Prints the plan as one JSON document.
pub(crate) fn print_plan_json<T: serde::Serialize>(plan: &T) -> anyhow::Result<()> {
    #[derive(serde::Serialize)]
    struct Json<'a, T> {
        version: u32,
        #[serde(flatten)]
        plan: &'a T,
    }
    let text = serde_json::to_string_pretty(&Json {
        version: super::JSON_VERSION,
        plan,
    })?;
    println!("{text}");
    Ok(())
}

/// What `--apply` changed (stdout) and the steps it could not do (stderr).
pub(crate) fn print_applied(lines: &[String], not_done: &[String]) {
    for line in lines {
        super::print_summary(line);
    }
    for line in not_done {
        eprintln!("portage-ima: {line}");
    }
}

/// What is left for the admin: the manual commands and the boots.
pub(crate) fn print_left(text: &str) {
    print!("{text}");
}
