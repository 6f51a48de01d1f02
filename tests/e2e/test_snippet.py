"""The bashrc snippet on its own: shellcheck, bash -n, and its behaviour in
each phase with stand-ins for Portage's einfo/ewarn/die and for the hook
(fast; the real thing runs in test_emerge.py)."""

from __future__ import annotations

import shutil
import subprocess
import textwrap

import pytest

from portage_playground import SNIPPET

# Portage's message functions, recorded; die stops like Portage's does.
HARNESS = """\
einfo() { echo "einfo:$*"; }
ewarn() { echo "ewarn:$*"; }
die() { echo "die:$*"; exit 99; }
before_funcs=$(declare -F)
source "$SNIPPET"
echo "status:$?"
[[ -z $(compgen -v _portage_ima) ]] || echo "leaked variables"
[[ $(declare -F) == "$before_funcs" ]] || echo "defined functions"
"""


def run(tmp_path, phase, hook_body=None, path="/usr/bin:/bin", portage_ima=True, ima_toml=None, extra_env=None, snippet=SNIPPET):
    """Source the snippet in EBUILD_PHASE=phase with a fake hook whose body is
    ``hook_body`` and PORTAGE_CONFIGROOT's etc/portage/ima.toml holding
    ``ima_toml`` (none when None); returns (exit status, output lines, hook calls)."""
    config_root = tmp_path / "configroot"
    (config_root / "etc/portage").mkdir(parents=True, exist_ok=True)
    if ima_toml is not None:
        (config_root / "etc/portage/ima.toml").write_text(ima_toml)
    calls = tmp_path / "calls"
    hook = tmp_path / "portage-ima"
    hook.write_text(f'#!/bin/bash\necho "$EBUILD_PHASE $*" >> "{calls}"\n{hook_body or ""}\n')
    hook.chmod(0o755)
    (tmp_path / "T").mkdir(exist_ok=True)
    env = {
        "PATH": path,
        "SNIPPET": str(snippet),
        "EBUILD_PHASE": phase,
        "T": str(tmp_path / "T"),
        "PORTAGE_BUILDDIR": str(tmp_path / "builddir"),
        "CATEGORY": "app-misc",
        "PF": "foo-1",
        "PORTAGE_CONFIGROOT": f"{config_root}/",
    }
    if portage_ima:
        env["PORTAGE_IMA"] = str(hook)
    env.update(extra_env or {})
    proc = subprocess.run(
        ["/bin/bash", "-c", HARNESS], env=env, capture_output=True, text=True
    )
    lines = proc.stdout.splitlines()
    assert "leaked variables" not in lines and "defined functions" not in lines, lines
    assert proc.stderr == "", proc.stderr
    return proc.returncode, lines, calls.read_text().splitlines() if calls.exists() else []


def test_shellcheck_and_syntax():
    subprocess.run(["bash", "-n", str(SNIPPET)], check=True)
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck not installed")
    proc = subprocess.run(["shellcheck", str(SNIPPET)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_postrm_runs_the_hook_and_never_fails_an_unmerge(tmp_path):
    """With [keylime] in ima.toml, postrm runs the hook, which keeps the
    policy current after an unmerge (issue 25); whatever it ends with,
    strict or not, the unmerge goes on, with one warning that names the
    catch-up. Without it, postrm runs nothing."""
    for toml in ("[keylime]\n", "strict = true\n[keylime]\n"):
        rc, lines, calls = run(tmp_path, "postrm", "exit 3", ima_toml=toml)
        assert rc == 0 and lines[-1] == "status:0", lines
        assert calls[-1] == "postrm hook", calls
        warnings = [l for l in lines if l.startswith("ewarn:")]
        assert len(warnings) == 1 and "Keylime policy" in warnings[0], lines
        assert not any(l.startswith("die:") for l in lines), lines
    rc, lines, _ = run(tmp_path, "postrm", "exit 0", ima_toml="[keylime]\n")
    assert (rc, lines) == (0, ["status:0"])
    # Without [keylime], postrm runs nothing, as the other phases.
    rc, lines, calls = run(tmp_path / "plain", "postrm", "exit 3", ima_toml="strict = true\n")
    assert (rc, lines, calls) == (0, ["status:0"], [])


@pytest.mark.parametrize("phase", ["depend", "", "setup", "install", "prerm", "postrm", "config"])
def test_other_phases_do_nothing(tmp_path, phase):
    path = "/dev/null" if phase == "depend" else "/usr/bin:/bin"
    rc, lines, calls = run(tmp_path, phase, "exit 3", path=path)
    assert (rc, lines, calls) == (0, ["status:0"], [])
    # Not even looking for the binary when PORTAGE_IMA is unset.
    rc, lines, calls = run(tmp_path, phase, path=path, portage_ima=False)
    assert (rc, lines) == (0, ["status:0"])


@pytest.mark.parametrize("phase", ["preinst", "postinst"])
def test_output_goes_to_einfo_and_ewarn(tmp_path, phase):
    body = textwrap.dedent(
        """\
        echo "portage-ima: app-misc/foo-1: signed 2 before the merge"
        echo ""
        echo "portage-ima: /usr/bin/foo: not signed: changed" >&2
        exit 1
        """
    )
    rc, lines, calls = run(tmp_path, phase, body)
    assert rc == 0
    assert calls == [f"{phase} hook"]
    assert lines == [
        "einfo:portage-ima: app-misc/foo-1: signed 2 before the merge",
        "ewarn:portage-ima: /usr/bin/foo: not signed: changed",
        "status:0",
    ]
    assert list((tmp_path / "T").iterdir()) == [], "temporary stderr file left behind"


def test_strict_failure_dies(tmp_path):
    rc, lines, _ = run(tmp_path, "postinst", "echo 'portage-ima: /x: not signed: y' >&2; exit 3")
    assert rc == 99
    assert lines[0] == "ewarn:portage-ima: /x: not signed: y"
    assert lines[1].startswith("die:portage-ima: strict mode") and "app-misc/foo-1" in lines[1]


@pytest.mark.parametrize("code", [2, 127, 139])
def test_other_failures_warn_only(tmp_path, code):
    rc, lines, _ = run(tmp_path, "postinst", f"exit {code}")
    assert rc == 0
    assert len(lines) == 2 and lines[0].startswith("ewarn:") and f"exit status {code}" in lines[0]
    # One warning: what is not signed, and the command to run once fixed.
    assert "NOT signed" in lines[0] and lines[0].endswith("run: portage-ima sign =app-misc/foo-1")


def test_missing_binary_warns_once(tmp_path):
    for phase, warnings in (("preinst", 0), ("postinst", 1)):
        rc, lines, _ = run(tmp_path, phase, portage_ima=False)
        assert rc == 0
        assert len([x for x in lines if x.startswith("ewarn:")]) == warnings, lines
        if warnings:
            assert "not found" in lines[0] and "app-misc/foo-1" in lines[0]


def test_found_on_path(tmp_path):
    rc, lines, calls = run(tmp_path, "postinst", "echo hi", path=f"{tmp_path}:/usr/bin:/bin", portage_ima=False)
    assert (rc, lines, calls) == (0, ["einfo:hi", "status:0"], ["postinst hook"])


# Statuses the hook cannot turn into 3 itself (or should not end with):
# 1 and 2 (an old or confused binary), 101 (a Rust panic), 126/127 (cannot
# run), 130/143/137 (SIGINT, SIGTERM, SIGKILL as the shell reports them).
OTHER_STATUSES = [1, 2, 101, 126, 127, 130, 137, 143]


@pytest.mark.parametrize("phase", ["preinst", "postinst"])
@pytest.mark.parametrize("code", OTHER_STATUSES)
def test_strict_mode_dies_on_every_status_but_0(tmp_path, phase, code):
    rc, lines, _ = run(tmp_path, phase, f"exit {code}", ima_toml="strict = true\n")
    assert rc == 99, lines
    assert lines[-1].startswith("die:portage-ima: strict mode") and f"exit status {code}" in lines[-1]


@pytest.mark.parametrize("signal", ["INT", "TERM", "KILL"])
def test_strict_mode_dies_when_the_hook_is_killed(tmp_path, signal):
    rc, lines, _ = run(tmp_path, "postinst", f"kill -{signal} $$", ima_toml="strict = true\n")
    assert rc == 99, lines
    assert lines[-1].startswith("die:portage-ima: strict mode"), lines


@pytest.mark.parametrize(
    "ima_toml",
    [
        "strict=true # fail the merge\n",
        "  strict = true\nkye = 'typo: the hook rejects this file'\n",
        "this is not TOML [\nstrict = true",
    ],
)
def test_strict_is_read_leniently(tmp_path, ima_toml):
    rc, lines, _ = run(tmp_path, "postinst", "exit 2", ima_toml=ima_toml)
    assert rc == 99 and lines[-1].startswith("die:"), lines


def test_unreadable_settings_count_as_strict(tmp_path):
    (tmp_path / "configroot/etc/portage/ima.toml").mkdir(parents=True)
    rc, lines, _ = run(tmp_path, "postinst", "exit 2")
    assert rc == 99 and lines[-1].startswith("die:"), lines


@pytest.mark.parametrize("code", OTHER_STATUSES + [139])
@pytest.mark.parametrize(
    "ima_toml", [None, "", "strict = false\n", "# strict = true\nstrict_x = true\n"]
)
def test_without_strict_no_status_dies(tmp_path, code, ima_toml):
    rc, lines, _ = run(tmp_path, "postinst", f"exit {code}", ima_toml=ima_toml)
    assert rc == 0, lines
    assert not any(x.startswith("die:") for x in lines), lines


@pytest.mark.parametrize("signal", ["INT", "TERM", "KILL"])
def test_without_strict_a_killed_hook_only_warns(tmp_path, signal):
    rc, lines, _ = run(tmp_path, "postinst", f"kill -{signal} $$")
    assert rc == 0, lines
    assert lines[-2].startswith("ewarn:") and "exit status" in lines[-2], lines


@pytest.mark.parametrize("phase", ["preinst", "postinst"])
def test_no_file_in_T_and_no_symlink_followed(tmp_path, phase):
    """${T} belongs to the portage user: a symlink planted where the snippet
    used to write the hook's stderr must not make root write through it."""
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    t = tmp_path / "T"
    t.mkdir()
    (t / f"portage-ima.{phase}.stderr").symlink_to(victim)
    body = "echo out; echo 'err one' >&2; echo out2; echo 'err two' >&2; exit 1"
    rc, lines, _ = run(tmp_path, phase, body)
    assert rc == 0
    assert victim.read_text() == "precious\n"
    assert sorted(lines) == sorted(
        ["einfo:out", "einfo:out2", "ewarn:err one", "ewarn:err two", "status:0"]
    ), lines
    assert [p.name for p in t.iterdir()] == [f"portage-ima.{phase}.stderr"]


def installed(tmp_path, hook_body):
    """The snippet and a stand-in hook in the ebuild's layout under tmp_path/usr."""
    snippet = tmp_path / "usr/share/portage-ima/portage-ima.bashrc"
    snippet.parent.mkdir(parents=True)
    shutil.copy(SNIPPET, snippet)
    hook = tmp_path / "usr/bin/portage-ima"
    hook.parent.mkdir(parents=True)
    hook.write_text(f"#!/bin/bash\necho installed \"$EBUILD_PHASE\"\n{hook_body}\n")
    hook.chmod(0o755)
    return snippet


@pytest.mark.parametrize("saved", [{"PORTAGE_IMA_SKIP": "1"}, {"PORTAGE_IMA": "/bin/true"}, {}])
def test_binary_merge_ignores_the_saved_environment(tmp_path, saved):
    """EMERGE_FROM=binary: PORTAGE_IMA and PORTAGE_IMA_SKIP (restored from the
    package's saved environment) are ignored; the binary beside the snippet runs."""
    snippet = installed(tmp_path, "exit 3")
    env = {"EMERGE_FROM": "binary", **saved}
    rc, lines, calls = run(tmp_path, "preinst", portage_ima=False, extra_env=env, snippet=snippet)
    assert rc == 99 and lines[0] == "einfo:installed preinst", lines
    assert calls == []  # the PORTAGE_IMA stand-in never ran
    # Built from source, PORTAGE_IMA_SKIP (package.env) still opts out.
    rc, lines, _ = run(tmp_path, "postinst", extra_env={"EMERGE_FROM": "ebuild", "PORTAGE_IMA_SKIP": "1"}, snippet=snippet)
    assert rc == 0 and "PORTAGE_IMA_SKIP=1" in lines[0], lines


def test_binary_merge_without_the_installed_binary_dies_in_strict_mode(tmp_path):
    # SNIPPET is not in the installed layout: no binary beside it.
    env = {"EMERGE_FROM": "binary"}
    rc, lines, calls = run(tmp_path, "preinst", extra_env=env, ima_toml="strict = true\n")
    assert rc == 99 and lines[-1].startswith("die:") and "not found" in lines[-1], lines
    assert calls == []
    rc, lines, _ = run(tmp_path, "postinst", extra_env=env, ima_toml="")
    assert rc == 0 and lines[0].startswith("ewarn:") and "not found" in lines[0], lines


@pytest.mark.parametrize("ima_toml", [None, "strict = true\n"])
def test_failsafe_stop_dies_strict_or_not(tmp_path, ima_toml):
    """Exit 4: the merge would leave programs unsigned on an enforcing
    kernel; the merge stops in any mode (fail-safe merges)."""
    rc, lines, _ = run(tmp_path, "preinst", "echo 'portage-ima: stopping the merge' >&2; exit 4",
                       ima_toml=ima_toml)  # fmt: skip
    assert rc == 99, lines
    assert lines[0] == "ewarn:portage-ima: stopping the merge"
    assert lines[1].startswith("die:portage-ima: the merge of app-misc/foo-1 is stopped before any file goes live")


def test_postinst_runs_the_kept_copy_of_a_new_portage_ima(tmp_path):
    """After a self-upgrade that dropped the signature, postinst runs the
    signed copy preinst kept in the build directory; a symlink there is
    never run."""
    copy = tmp_path / "builddir" / "portage-ima.self"
    copy.parent.mkdir(exist_ok=True)
    copy.write_text('#!/bin/bash\necho "the copy ran $*"\n')
    copy.chmod(0o700)
    rc, lines, calls = run(tmp_path, "postinst", "echo installed")
    assert (rc, lines, calls) == (0, ["einfo:the copy ran hook", "status:0"], [])
    # preinst runs the installed binary.
    rc, lines, calls = run(tmp_path, "preinst", "echo installed")
    assert lines[0] == "einfo:installed", lines
    copy.unlink()
    copy.symlink_to(tmp_path / "portage-ima")
    rc, lines, calls = run(tmp_path, "postinst", "echo installed")
    assert lines[0] == "einfo:installed", lines
