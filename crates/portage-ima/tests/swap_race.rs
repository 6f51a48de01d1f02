//! A directory swapped for a symlink while a tree is walked and signed.
//!
//! `${D}` belongs to the unprivileged `portage` user, so build code can
//! exchange a subdirectory of the image with a symlink to any directory it
//! can read (`renameat2(RENAME_EXCHANGE)`, in a loop) while the preinst hook
//! signs the image as root. A path-based walk or open then follows the
//! symlink and signs files outside the tree. The same holds for
//! `sign --files DIR` on any directory another user can write to.
//!
//! Each test races `portage-ima` against such a swap loop for a number of
//! runs and checks that no file outside the tree ever got `security.ima`.
//! Writing `security.ima` needs root (CAP_SYS_ADMIN).

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use rustix::fs::{RenameFlags, CWD};

/// Files in the swapped directory and in the outside one.
const FILES: usize = 300;
/// `portage-ima` runs per test, each racing the swap loop.
const RUNS: usize = 12;

/// `tree/sub` (a directory) and `tree/link` (a symlink to `outside`), each
/// holding `FILES` files under the same names.
struct Layout {
    _tmp: tempfile::TempDir,
    conf: PathBuf,
    tree: PathBuf,
    outside: PathBuf,
    t: PathBuf,
}

fn layout() -> Layout {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // Sign before the merge whatever the filesystems: preinst always walks.
    let conf = common::settings(d, "premerge = \"always\"\n");
    let tree = d.join("image");
    let outside = d.join("outside");
    let t = d.join("temp");
    for dir in [tree.join("sub"), outside.clone(), t.clone()] {
        std::fs::create_dir_all(&dir).unwrap();
    }
    for i in 0..FILES {
        std::fs::write(tree.join("sub").join(format!("f{i}")), format!("in {i}")).unwrap();
        std::fs::write(outside.join(format!("f{i}")), format!("out {i}")).unwrap();
    }
    std::os::unix::fs::symlink(&outside, tree.join("link")).unwrap();
    Layout {
        _tmp: tmp,
        conf,
        tree,
        outside,
        t,
    }
}

/// Exchanges `tree/sub` and `tree/link` in a loop until dropped.
struct Swapper {
    stop: Arc<AtomicBool>,
    swaps: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Swapper {
    fn start(tree: &Path) -> Swapper {
        let stop = Arc::new(AtomicBool::new(false));
        let swaps = Arc::new(AtomicU64::new(0));
        let (a, b) = (tree.join("sub"), tree.join("link"));
        let thread = {
            let (stop, swaps) = (Arc::clone(&stop), Arc::clone(&swaps));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    rustix::fs::renameat_with(CWD, &a, CWD, &b, RenameFlags::EXCHANGE)
                        .expect("renameat2(RENAME_EXCHANGE)");
                    swaps.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        Swapper {
            stop,
            swaps,
            thread: Some(thread),
        }
    }
}

impl Drop for Swapper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn signed_outside(outside: &Path) -> Vec<PathBuf> {
    let mut hit = Vec::new();
    for entry in std::fs::read_dir(outside).unwrap() {
        let path = entry.unwrap().path();
        if common::is_signed(&path) {
            hit.push(path);
        }
    }
    hit
}

/// Runs `run` RUNS times against the swap loop; no outside file may be
/// signed, and the runs must have signed files inside the tree.
fn race(name: &str, run: impl Fn(&Layout) -> Output) {
    if !common::require_root(module_path!()) {
        return;
    }
    let l = layout();
    let swapper = Swapper::start(&l.tree);
    let mut stdout = String::new();
    for _ in 0..RUNS {
        let out = run(&l);
        assert!(
            matches!(out.status.code(), Some(0) | Some(1)),
            "{name}: {out:?}"
        );
        stdout.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    let swaps = swapper.swaps.load(Ordering::Relaxed);
    drop(swapper);
    let hit = signed_outside(&l.outside);
    assert!(
        hit.is_empty(),
        "{name}: {} of {FILES} files outside the tree were signed during {swaps} swaps, e.g. {:?}",
        hit.len(),
        &hit[..hit.len().min(3)]
    );
    assert!(swaps > 100, "{name}: the swap loop hardly ran ({swaps})");
    assert!(stdout.contains("signed"), "{name}: {stdout}");
    eprintln!("{name}: {RUNS} runs, {swaps} swaps, no outside file signed");
}

#[test]
fn sign_files_never_signs_outside_a_tree_swapped_under_it() {
    race("sign --files", |l| {
        common::cmd()
            .arg("--config")
            .arg(&l.conf)
            .args(["sign", "--files"])
            .arg(&l.tree)
            .output()
            .unwrap()
    });
}

#[test]
fn preinst_never_signs_outside_an_image_swapped_under_it() {
    race("hook preinst", |l| {
        let out = common::hook(
            &l.conf,
            &[
                ("EBUILD_PHASE", OsStr::new("preinst")),
                ("CATEGORY", OsStr::new("app-misc")),
                ("PF", OsStr::new("race-1")),
                ("ROOT", OsStr::new("/")),
                ("D", l.tree.as_os_str()),
                ("T", l.t.as_os_str()),
            ],
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("before the merge"),
            "{out:?}"
        );
        out
    });
}
