//! What IMA's `audit` rules log: one `AUDIT_INTEGRITY_RULE` record (type
//! 1805) the first time a file matches an `audit` rule
//! (security/integrity/ima/ima_api.c, `ima_audit_measurement`):
//!
//! ```text
//! audit: type=1805 audit(1796576297.576:46): file="/mnt/t/prog" hash="sha256:3d9f...6bf6"
//!   ppid=1 pid=181 auid=4294967295 uid=0 gid=0 euid=0 ... comm="init" exe="/bin/busybox" subj=unconfined
//! ```
//!
//! `file` goes through `audit_log_untrustedstring()` (quoted, or hex), as in
//! [`super::audit_record`]; the task's fields follow (`audit_log_task_info`).
//! Such a record says the file was run (or opened) where the rule would
//! appraise it, not whether it is signed: that is read from the file, or
//! from an `ima-sig` measurement. auditd writes the same record as
//! `type=INTEGRITY_RULE msg=audit(...)`.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::audit_record::{fields_of, find, lossy, record_after, untrusted};
use super::{numbered_lines, BadLine};

/// One file an `audit` rule matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RuleRecord {
    /// 1-based line number in its input.
    pub line: usize,
    /// `audit(SECONDS.MILLIS:SERIAL)`: the time and serial, as written.
    pub time: String,
    pub serial: u64,
    pub file: PathBuf,
    /// `ALGO:HEX` as the kernel wrote it.
    pub hash: String,
    pub comm: Option<Vec<u8>>,
}

/// The records of one input, and the lines that held the marker but no
/// readable record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RuleLog {
    pub records: Vec<RuleRecord>,
    pub bad: Vec<BadLine>,
}

/// How the kernel log writes the record, and how auditd does.
const KERNEL_MARKER: &[u8] = b"audit: type=1805 audit(";
const AUDITD_MARKER: &[u8] = b"type=INTEGRITY_RULE msg=audit(";

/// Reads every `audit` rule record of `data`; other lines are passed over
/// (a record counts only where its log's format starts one, see
/// [`super::audit_record`]).
pub(crate) fn parse(data: &[u8]) -> RuleLog {
    let mut log = RuleLog::default();
    for (number, line) in numbered_lines(data) {
        // Where a record of the log's format starts, as for type 1800.
        let Some(rest) = record_after(line, KERNEL_MARKER, AUDITD_MARKER) else {
            continue;
        };
        match parse_record(number, rest) {
            Ok(record) => log.records.push(record),
            Err(reason) => log.bad.push(BadLine {
                line: number,
                reason,
            }),
        }
    }
    log
}

fn parse_record(line: usize, rest: &[u8]) -> Result<RuleRecord, String> {
    let close = find(rest, b"): ").ok_or("audit rule record without `audit(TIME:SERIAL): `")?;
    let stamp = std::str::from_utf8(&rest[..close]).unwrap_or_default();
    let (time, serial) = stamp
        .split_once(':')
        .and_then(|(t, s)| Some((t.to_string(), s.parse::<u64>().ok()?)))
        .ok_or_else(|| {
            format!(
                "`audit({})` is not `audit(SECONDS.MILLIS:SERIAL)`",
                lossy(&rest[..close])
            )
        })?;
    let mut fields = &rest[close + 3..];
    if let Some(gs) = fields.iter().position(|&b| b == 0x1d) {
        fields = &fields[..gs];
    }
    let (mut file, mut hash, mut comm) = (None, None, None);
    for (key, value) in fields_of(fields)? {
        match key {
            b"file" => file = Some(untrusted("file", &value)?),
            b"hash" => {
                let v = value.strip_prefix(b"\"").unwrap_or(&value);
                hash = Some(String::from_utf8_lossy(v).into_owned());
            }
            b"comm" => comm = Some(untrusted("comm", &value)?),
            _ => {}
        }
    }
    let file = file.ok_or("audit rule record without file= (truncated?)")?;
    let hash = hash.ok_or("audit rule record without hash= (truncated?)")?;
    Ok(RuleRecord {
        line,
        time,
        serial,
        file: PathBuf::from(OsStr::from_bytes(&file)),
        hash,
        comm,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    // The first line is a real 6.12 one (tests/kernel/test_setuid_observe.py), digest cut.
    fn kernel_and_auditd_spellings() {
        let text = "\
[   15.912639] audit: type=1805 audit(1796576297.576:9): file=\"/mnt/t/prog\" hash=\"sha256:00ff\" ppid=1 pid=181 auid=4294967295 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=4294967295 comm=\"init\" exe=\"/bin/busybox\" subj=unconfined
[    9.2] audit: type=1800 audit(1795976846.822:10): pid=1 uid=0 op=appraise_data cause=x comm=\"a\" name=\"/b\" res=0
type=INTEGRITY_RULE msg=audit(1.5:11): file=2F746D702F6120622E7368 hash=\"sha512:aa\" comm=\"sh\"\x1dAUID=\"root\"
audit: type=1805 audit(1.5:12): hash=\"sha256:00\"
";
        let log = parse(text.as_bytes());
        assert_eq!(log.records.len(), 2);
        assert_eq!(log.records[0].file, PathBuf::from("/mnt/t/prog"));
        assert_eq!(log.records[0].hash, "sha256:00ff");
        assert_eq!(log.records[0].serial, 9);
        assert_eq!(log.records[0].comm.as_deref(), Some(&b"init"[..]));
        assert_eq!(log.records[1].file, PathBuf::from("/tmp/a b.sh"));
        assert_eq!(log.bad.len(), 1);
        assert_eq!(log.bad[0].line, 4);
    }
}
