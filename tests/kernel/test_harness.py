"""Checks of the VM harness itself, without booting: a truncated or failed boot
must never read as a pass, and module dependencies must load in order."""

from __future__ import annotations

import base64
import os

import pytest

import kernelvm
from test_appraisal import parse_measurement, require_complete


def boot_result(serial: str, timed_out: bool = False, rc: int | None = 0) -> kernelvm.BootResult:
    records, dmesg, meas = kernelvm.parse_serial(serial)
    return kernelvm.BootResult(serial, 1.0, rc, timed_out, records, dmesg, meas)


class FakeRun:
    def __init__(self, boot):
        self.boot = boot


def test_parse_serial_reads_marked_lines_only():
    serial = (
        "[    1.0] some kernel line\r\n"
        "@@ima-test exec vm-a t=1.5 rc=0 out=" + base64.b64encode(b"ran vm-a").decode() + "\r\n"
        "garbage @@ima-test exec fake t=1 rc=0\r\n"
        "@@dmesg [    2.0] audit: type=1800 name=\"/mnt/t/x\"\r\n"
        "@@meas 10 abc ima-sig sha256:00ff /mnt/t/x 0302\r\n"
        "@@ima-test done - t=3\r\n"
    )
    b = boot_result(serial)
    assert [(r.kind, r.id) for r in b.records] == [("exec", "vm-a"), ("done", "-")]
    assert b.find("exec", "vm-a").fields["rc"] == "0"
    assert b.find("exec", "fake") is None
    assert b.dmesg == ['[    2.0] audit: type=1800 name="/mnt/t/x"']
    assert parse_measurement(b.measurements[0]) == {
        "algo": "sha256", "digest": "00ff", "path": "/mnt/t/x", "sig": "0302"}
    assert b.completed()


@pytest.mark.parametrize("serial,timed_out", [
    ("@@ima-test exec vm-a t=1 rc=0 out=\n", False),  # no done line
    ("@@ima-test exec vm-a t=1 rc=0 out=\n@@ima-test done - t=2\n", True),  # timed out
    ("@@ima-test fatal - t=1 reason=" + base64.b64encode(b"insmod x").decode() + "\n", False),
])
def test_incomplete_or_failed_boot_fails(serial, timed_out):
    with pytest.raises(pytest.fail.Exception):
        require_complete(FakeRun(boot_result(serial, timed_out=timed_out)))


def test_complete_boot_passes():
    require_complete(FakeRun(boot_result("@@ima-test done - t=2\n")))


def _cached_kernel() -> kernelvm.Kernel:
    """The kernel the VM tests boot: downloaded here if no test did yet (two
    workers run the files in any order; prepare_kernel takes a lock)."""
    try:
        return kernelvm.prepare_kernel()
    except kernelvm.Unavailable as e:
        if os.environ.get("CI"):
            pytest.fail(f"no kernel to read: {e}", pytrace=False)
        pytest.skip(f"no kernel in tests/.cache/kernel and none to download: {e}")


def test_modules_come_after_their_dependencies():
    k = _cached_kernel()
    names = [n for n, _ in kernelvm.resolve_modules(k.moddir, ["virtio_pci", "virtio_blk", "sha512_generic"])]
    assert len(names) == len(set(names))
    for i, name in enumerate(names):
        data = dict(kernelvm.resolve_modules(k.moddir, [name]))[name]
        deps = [d for v in kernelvm._modinfo(data).get("depends", []) for d in v.split(",") if d]
        for d in deps:
            assert d in names[:i] or d in _builtin(k), f"{name} needs {d}, loaded later or never"


def _builtin(k: kernelvm.Kernel) -> set[str]:
    return {kernelvm._module_name(kernelvm.Path(l)) for l in (k.moddir / "modules.builtin").read_text().split()}


def test_unknown_module_is_an_error():
    k = _cached_kernel()
    with pytest.raises(RuntimeError, match="neither built in"):
        kernelvm.resolve_modules(k.moddir, ["no_such_module_xyz"])


def test_enforce_run_splits_dmesg_by_phase_and_reads_denials():
    """The emerge test's reading of the serial log: kernel records belong to
    the phase whose marker came last, and only IMA denials (res=0) count."""
    from test_enforce_emerge import Run

    denial = ('audit: type=1800 audit(1.2:3): pid=5 uid=0 op=appraise_data '
              'cause=IMA-signature-required comm="bash" name="/usr/bin/vimlike" dev="nvme0n1" ino=7 res=0 errno=0')
    serial = "\r\n".join([
        "@@ima-test emerge a t=9 rc=0 start=1.5 end=9.0",
        "@@out a >>> Emerging (1 of 1) test-ima/vimlike-4",
        "@@case test-ima/vimlike-3 postrm rc=126 out=denied",
        "@@dmesg [    1.0] @@phase rootfs",
        '@@dmesg [    2.0] audit: type=1800 audit(1.0:1): op=appraise_data cause=x name="/ok" res=1',
        "@@dmesg [    3.0] @@phase tmpfs-noxattr",
        "@@dmesg [    4.0] " + denial,
        "@@ima-test done - t=10",
    ])
    run = Run(boot_result(serial))
    assert run.denials("rootfs") == []
    assert run.denials("tmpfs-noxattr") == [("/usr/bin/vimlike", "IMA-signature-required")]
    assert run.output("a") == ">>> Emerging (1 of 1) test-ima/vimlike-4"
    assert run.case("vimlike-3", "postrm") == "test-ima/vimlike-3 postrm rc=126 out=denied"
    assert run.emerge_seconds() == {"a": 7.5}
    with pytest.raises(AssertionError):
        run.record("emerge", "missing")
