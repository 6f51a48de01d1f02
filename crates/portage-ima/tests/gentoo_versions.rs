//! The PMS version parser and ordering checked against Portage itself:
//! thousands of generated versions and package names go through Portage's
//! `portage.versions.vercmp` and `pkgsplit`, and must agree with
//! `Version` and `split_pf`.
//!
//! Portage comes from `PORTAGE_IMA_TEST_PYTHON` (a Python that can
//! `import portage`), else the project's test venv, else `python3`. When
//! none has Portage the test says so and is skipped (it fails instead when
//! `PORTAGE_IMA_REQUIRE_PORTAGE=1` or under CI).

mod common;

use std::cmp::Ordering;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use portage_ima::gentoo::cpv::split_pf;
use portage_ima::gentoo::version::Version;

fn portage_python() -> Option<PathBuf> {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/.cache/venv/bin/python");
    let candidates = std::env::var_os("PORTAGE_IMA_TEST_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain([venv, PathBuf::from("python3")]);
    for py in candidates {
        let ok = Command::new(&py)
            .args(["-c", "import portage.versions"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(py);
        }
    }
    if std::env::var_os("PORTAGE_IMA_REQUIRE_PORTAGE").is_some() {
        panic!("no Python with Portage found (set PORTAGE_IMA_TEST_PYTHON)");
    }
    common::require(
        false,
        "a Python with Portage (pip install portage, or set PORTAGE_IMA_TEST_PYTHON)",
        "versions against Portage",
    );
    None
}

/// Runs a Python snippet over input lines, one output line per input line.
fn portage(py: &PathBuf, script: &str, lines: &[String]) -> Vec<String> {
    let mut child = Command::new(py)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let input = lines.join("\n") + "\n";
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success());
    let out: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(out.len(), lines.len());
    out
}

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[(self.next() % xs.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// Mostly valid versions with the corners PMS cares about, some invalid.
fn gen_version(r: &mut Rng) -> String {
    let nums = [
        "0", "00", "01", "1", "2", "09", "1", "10", "010", "100", "9999", "20240101",
    ];
    let mut s = r.pick(&nums).to_string();
    for _ in 0..r.next() % 4 {
        s.push('.');
        s.push_str(r.pick(&nums));
    }
    if r.chance(20) {
        s.push_str(r.pick(&["a", "b", "z"]));
    }
    for _ in 0..r.next() % 3 {
        s.push('_');
        s.push_str(r.pick(&["alpha", "beta", "pre", "rc", "p"]));
        if r.chance(60) {
            s.push_str(r.pick(&["", "0", "1", "2", "10", "01"]));
        }
    }
    if r.chance(30) {
        s.push_str("-r");
        s.push_str(r.pick(&["0", "1", "2", "10", "01"]));
    }
    if r.chance(5) {
        // Invalid variants.
        s.push_str(r.pick(&[".", "-", "_", "_x", "A", "-r", "-1", "ab"]));
    }
    s
}

#[test]
fn version_order_agrees_with_portage() {
    let Some(py) = portage_python() else { return };
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let versions: Vec<String> = (0..3000).map(|_| gen_version(&mut r)).collect();
    let pairs: Vec<String> = versions
        .iter()
        .zip(versions.iter().skip(1).chain(versions.iter().take(1)))
        .map(|(a, b)| format!("{a} {b}"))
        .collect();
    let script = r#"
import sys
from portage.versions import vercmp, ververify
for line in sys.stdin:
    a, b = line.split()
    if not (ververify(a) and ververify(b)):
        print("invalid")
    else:
        c = vercmp(a, b)
        print("lt" if c < 0 else "gt" if c > 0 else "eq")
"#;
    let want = portage(&py, script, &pairs);
    let mut checked = 0;
    for (pair, want) in pairs.iter().zip(&want) {
        let (a, b) = pair.split_once(' ').unwrap();
        let got = match (Version::parse(a), Version::parse(b)) {
            (Ok(a), Ok(b)) => match a.cmp(&b) {
                Ordering::Less => "lt",
                Ordering::Greater => "gt",
                Ordering::Equal => "eq",
            },
            _ => "invalid",
        };
        assert_eq!(got, want, "vercmp({a}, {b})");
        checked += (got != "invalid") as usize;
    }
    assert!(checked > 2000, "only {checked} valid pairs generated");
}

#[test]
fn pf_split_agrees_with_portage() {
    let Some(py) = portage_python() else { return };
    let mut r = Rng(0xdead_beef_cafe_f00d);
    let names = [
        "foo",
        "foo-bar",
        "foo-1a",
        "gtk+",
        "foo-2ch",
        "a-1",
        "x-1-r1",
        "perl",
        "libsigc++",
        "font-bh-ttf",
        "foo_bar",
        "foo-1x2",
        "x264",
        "b-9999",
        "c-1_p",
        "d-r1",
    ];
    let mut pfs: Vec<String> = (0..2000)
        .map(|_| format!("{}-{}", r.pick(&names), gen_version(&mut r)))
        .collect();
    pfs.extend(
        [
            "foo-bar-1.0",
            "foo-1a-2",
            "gtk+-3.24.38-r1",
            "perl-5.38.2-r3",
            "foo",
            "foo-",
            "-1",
        ]
        .map(String::from),
    );
    let script = r#"
import sys
from portage.versions import pkgsplit
for line in sys.stdin:
    s = pkgsplit(line.rstrip("\n"))
    print("none" if s is None else " ".join(s))
"#;
    let want = portage(&py, script, &pfs);
    for (pf, want) in pfs.iter().zip(&want) {
        let got = match split_pf(pf) {
            Err(_) => "none".to_string(),
            Ok((pn, v)) => {
                let rev = if v.revision().is_empty() {
                    "0"
                } else {
                    v.revision().as_str()
                };
                format!("{pn} {} r{rev}", v.pv())
            }
        };
        assert_eq!(&got, want, "pkgsplit({pf})");
    }
}
