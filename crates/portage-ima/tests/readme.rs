//! The README's settings table is `manual::SETTINGS`, the list ima.toml(5)
//! is generated from: the two cannot drift.

use portage_ima::manual;

#[test]
fn readme_settings_table_is_the_one_list_of_settings() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md at the top of the repository");
    let begin = "<!-- settings-begin -->\n";
    let start = readme
        .find(begin)
        .expect("README.md has <!-- settings-begin -->")
        + begin.len();
    let end = readme[start..]
        .find("<!-- settings-end -->")
        .expect("README.md has <!-- settings-end -->");
    assert_eq!(
        &readme[start..start + end],
        manual::settings_table(),
        "README.md's settings table differs from manual::SETTINGS: paste the output of \
         `cargo run -- generate settings-table` between its markers"
    );
}
