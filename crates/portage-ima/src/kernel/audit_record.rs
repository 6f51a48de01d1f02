//! IMA's integrity audit records (`AUDIT_INTEGRITY_DATA`, type 1800), as the
//! kernel log and auditd write them.
//!
//! The kernel builds the record in `integrity_audit_message()`
//! (security/integrity/integrity_audit.c):
//!
//! ```text
//! pid=340 uid=0 auid=4294967295 ses=4294967295 subj=unconfined op=appraise_data
//! cause=IMA-signature-required comm="bash" name="/usr/bin/vim" dev="vda" ino=61 res=0 errno=0
//! ```
//!
//! `comm`, `name` and `dev` go through `audit_log_untrustedstring()`: a
//! string holding a `"`, a space, a control character or a byte above 0x7e
//! is written as upper-case hex without quotes (`name=2F746D702F6120622E7368`
//! is `/tmp/a b.sh`), any other in double quotes. `res=0` is a failure
//! (the kernel writes `!result`): for `op=appraise_data` the file was
//! refused. `subj` is the LSM's label and may hold spaces (AppArmor's
//! `/usr/bin/foo (enforce)`), so a word without `=` is part of the previous
//! value.
//!
//! The record must start where its log format puts a record, after that
//! log's own prefix and nothing else, so that text a user can get into
//! another kernel message (a path in `process '/tmp/ type=1800 audit(...'`)
//! never counts as a record:
//! - the kernel log when no audit daemon runs: `/dev/kmsg`
//!   (`5,479,14935722,-;audit: type=1800 audit(1795976846.821:5): ...`),
//!   `dmesg` (`audit: type=1800 ...` at the start of the line, or after a
//!   `[   14.935722]` or `-T` `[Sun Nov 29 19:00:00 2026]` time, and
//!   `-x`'s `kern  :notice: `), syslog
//!   and `journalctl -k` (`Nov 29 19:00:00 host kernel: audit: ...`, a
//!   header of times and a host name only, then `kernel: `, then
//!   optionally a `[   14.9]` time);
//! - `/var/log/audit/audit.log` when auditd runs
//!   (`type=INTEGRITY_DATA msg=audit(1795976846.821:5): ...`, optionally
//!   after `node=HOST `), in auditd's `ENRICHED` format too (translated
//!   fields after a `\x1d` byte, ignored).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::{numbered_lines, BadLine};

/// One integrity audit record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AuditRecord {
    /// 1-based line number in its input.
    pub line: usize,
    /// `audit(SECONDS.MILLIS:SERIAL)`: the time, as written.
    pub time: String,
    /// The record's serial number (the same event in two logs has the same one).
    pub serial: u64,
    /// `appraise_data`, `appraise_metadata`, `collect_data`, ...
    pub op: String,
    /// `IMA-signature-required`, `invalid-signature`, `missing-hash`, ...
    pub cause: String,
    /// The process name (`comm`), decoded.
    pub comm: Option<Vec<u8>>,
    /// The file (`name`), decoded; absent for records about no file.
    pub name: Option<PathBuf>,
    /// The file system's device (`dev`), decoded.
    pub dev: Option<Vec<u8>>,
    pub ino: Option<u64>,
    /// `res`: 1 success, 0 failure.
    pub res: Option<u8>,
}

impl AuditRecord {
    /// An appraisal that failed: the kernel refused the file (in enforce
    /// mode; in `ima_appraise=log` it only logged).
    pub(crate) fn is_denial(&self) -> bool {
        self.op.starts_with("appraise_") && self.res == Some(0)
    }
}

/// What one input held: the records, and the lines that looked like
/// integrity records but could not be read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct AuditLog {
    pub records: Vec<AuditRecord>,
    pub bad: Vec<BadLine>,
}

/// How the kernel log writes a record, and how auditd does.
const KERNEL_MARKER: &[u8] = b"audit: type=1800 audit(";
const AUDITD_MARKER: &[u8] = b"type=INTEGRITY_DATA msg=audit(";

/// Reads every integrity audit record of `data`; other lines are passed
/// over, a line that starts a record (after its log's prefix) but holds no
/// readable one is listed in [`AuditLog::bad`].
pub(crate) fn parse(data: &[u8]) -> AuditLog {
    let mut log = AuditLog::default();
    for (number, line) in numbered_lines(data) {
        let Some(rest) = record_start(line) else {
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

/// What follows the record's `audit(` when `line` is one record of a log
/// format of the module docs.
fn record_start(line: &[u8]) -> Option<&[u8]> {
    record_after(line, KERNEL_MARKER, AUDITD_MARKER)
}

/// The same for any audit record type: `kernel_marker` as the kernel log
/// writes it (`audit: type=N audit(`), `auditd_marker` as auditd does.
pub(super) fn record_after<'a>(
    line: &'a [u8],
    kernel_marker: &[u8],
    auditd_marker: &[u8],
) -> Option<&'a [u8]> {
    let auditd = match line.strip_prefix(b"node=") {
        Some(node) => node
            .iter()
            .position(|&b| b == b' ')
            .map_or(&b""[..], |at| &node[at + 1..]),
        None => line,
    };
    if let Some(rest) = auditd.strip_prefix(auditd_marker) {
        return Some(rest);
    }
    let kernel = kmsg_body(line)
        .or_else(|| syslog_body(line))
        .unwrap_or_else(|| strip_level(line));
    strip_time(kernel).strip_prefix(kernel_marker)
}

/// `dmesg -x`'s `kern  :notice: `.
fn strip_level(line: &[u8]) -> &[u8] {
    let word = |s: &[u8]| {
        let letters = s.iter().take_while(|b| b.is_ascii_lowercase()).count();
        let spaces = s[letters..].iter().take_while(|&&b| b == b' ').count();
        (letters > 0 && s.get(letters + spaces) == Some(&b':')).then_some(letters + spaces + 1)
    };
    let Some(facility) = word(line) else {
        return line;
    };
    match word(&line[facility..]) {
        Some(level) => line[facility + level..].strip_prefix(b" ").unwrap_or(line),
        None => line,
    }
}

/// /dev/kmsg: `LEVEL,SEQ,USEC,FLAGS[,...];MESSAGE`.
fn kmsg_body(line: &[u8]) -> Option<&[u8]> {
    let semi = line.iter().position(|&b| b == b';')?;
    let head = &line[..semi];
    let mut fields = head.split(|&b| b == b',');
    let numeric =
        |f: Option<&[u8]>| f.is_some_and(|f| !f.is_empty() && f.iter().all(u8::is_ascii_digit));
    (numeric(fields.next()) && numeric(fields.next()) && numeric(fields.next()))
        .then(|| &line[semi + 1..])
}

/// syslog and the journal: `TIME HOST kernel: MESSAGE`, where the header
/// before the first `kernel: ` holds only what times and host names are
/// made of (no quote, slash, `=` or `: `, which a message would bring).
fn syslog_body(line: &[u8]) -> Option<&[u8]> {
    const TAG: &[u8] = b"kernel: ";
    let at = find(line, TAG)?;
    let header = &line[..at];
    let plain = header
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b" .:+-_[],".contains(&b));
    let after_space = at == 0 || header.ends_with(b" ");
    (plain && after_space && find(header, b": ").is_none()).then(|| &line[at + TAG.len()..])
}

/// dmesg's `[   14.935722] ` or `-T`'s `[Sun Nov 29 19:00:00 2026] `.
fn strip_time(message: &[u8]) -> &[u8] {
    let Some(inner) = message.strip_prefix(b"[") else {
        return message;
    };
    let Some(close) = inner.iter().position(|&b| b == b']') else {
        return message;
    };
    let time_like = inner[..close]
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b" .:".contains(&b));
    match inner[close + 1..].strip_prefix(b" ") {
        Some(rest) if time_like => rest,
        _ => message,
    }
}

pub(super) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `rest` is what follows `audit(`: `SECONDS.MILLIS:SERIAL): FIELDS`.
fn parse_record(line: usize, rest: &[u8]) -> Result<AuditRecord, String> {
    let close = find(rest, b"): ").ok_or("integrity record without `audit(TIME:SERIAL): `")?;
    let stamp = std::str::from_utf8(&rest[..close])
        .map_err(|_| "the record's time is not text".to_string())?;
    let (time, serial) = stamp
        .split_once(':')
        .filter(|(t, _)| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
        .ok_or_else(|| format!("`audit({stamp})` is not `audit(SECONDS.MILLIS:SERIAL)`"))?;
    let serial: u64 = serial
        .parse()
        .map_err(|_| format!("`{serial}` is not a record serial number"))?;
    let mut fields = &rest[close + 3..];
    // auditd's ENRICHED format appends translated fields after a GS byte.
    if let Some(gs) = fields.iter().position(|&b| b == 0x1d) {
        fields = &fields[..gs];
    }
    let mut record = AuditRecord {
        line,
        time: time.to_string(),
        serial,
        op: String::new(),
        cause: String::new(),
        comm: None,
        name: None,
        dev: None,
        ino: None,
        res: None,
    };
    for (key, value) in fields_of(fields)? {
        match key {
            b"op" => record.op = text_field("op", &value)?,
            b"cause" => record.cause = text_field("cause", &value)?,
            b"comm" => record.comm = Some(untrusted("comm", &value)?),
            b"name" => {
                let name = untrusted("name", &value)?;
                record.name = Some(PathBuf::from(OsStr::from_bytes(&name)));
            }
            b"dev" => record.dev = Some(untrusted("dev", &value)?),
            b"ino" => record.ino = Some(number_field("ino", &value)?),
            b"res" => {
                record.res = Some(match value.as_slice() {
                    b"0" => 0,
                    b"1" => 1,
                    _ => return Err(format!("res={} is not 0 or 1", lossy(&value))),
                })
            }
            _ => {}
        }
    }
    if record.op.is_empty() {
        return Err("integrity record without op= (truncated?)".into());
    }
    if record.res.is_none() {
        return Err(format!(
            "integrity record (op={}) without res= (truncated?)",
            record.op
        ));
    }
    Ok(record)
}

/// The `key=value` fields of a record; a quoted value ends at its closing
/// quote, a bare one at the next space. A word without `=` belongs to the
/// previous value (an LSM label with spaces) and is dropped with it.
/// A field's key, and its value (a quoted one keeps its opening quote).
type Field<'a> = (&'a [u8], Vec<u8>);

pub(super) fn fields_of(mut s: &[u8]) -> Result<Vec<Field<'_>>, String> {
    let mut out = Vec::new();
    loop {
        while let Some((&b' ', tail)) = s.split_first() {
            s = tail;
        }
        if s.is_empty() {
            return Ok(out);
        }
        let word_end = s.iter().position(|&b| b == b' ').unwrap_or(s.len());
        let Some(eq) = s[..word_end].iter().position(|&b| b == b'=') else {
            s = &s[word_end..];
            continue;
        };
        let key = &s[..eq];
        let after = &s[eq + 1..];
        if let Some(quoted) = after.strip_prefix(b"\"") {
            let end = quoted.iter().position(|&b| b == b'"').ok_or_else(|| {
                format!(
                    "{}= opens a quote that is never closed (truncated?)",
                    lossy(key)
                )
            })?;
            // Marked as quoted so that `untrusted` does not read it as hex.
            let mut value = vec![b'"'];
            value.extend_from_slice(&quoted[..end]);
            out.push((key, value));
            s = &quoted[end + 1..];
        } else {
            let end = after.iter().position(|&b| b == b' ').unwrap_or(after.len());
            out.push((key, after[..end].to_vec()));
            s = &after[end..];
        }
    }
}

/// A value written by `audit_log_untrustedstring`: quoted text, or hex.
pub(super) fn untrusted(key: &str, value: &[u8]) -> Result<Vec<u8>, String> {
    if let Some(text) = value.strip_prefix(b"\"") {
        return Ok(text.to_vec());
    }
    if value == b"(null)" {
        return Ok(value.to_vec());
    }
    hex::decode(value).map_err(|_| {
        format!(
            "{key}={} is neither quoted nor hex-encoded as the kernel writes it",
            lossy(value)
        )
    })
}

fn text_field(key: &str, value: &[u8]) -> Result<String, String> {
    let value = value.strip_prefix(b"\"").unwrap_or(value);
    match std::str::from_utf8(value) {
        Ok(s) if !s.is_empty() => Ok(s.to_string()),
        _ => Err(format!("{key}={} is not a word", lossy(value))),
    }
}

fn number_field(key: &str, value: &[u8]) -> Result<u64, String> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{key}={} is not a number", lossy(value)))
}

pub(super) fn lossy(bytes: &[u8]) -> String {
    crate::escape::escape_bytes(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Two lines of a real 6.12 boot (tests/kernel), dmesg with times.
    const DMESG: &str = "\
[   14.935722] audit: type=1800 audit(1795976846.821:5): pid=340 uid=0 auid=4294967295 ses=4294967295 subj=unconfined op=appraise_data cause=invalid-signature comm=\"init\" name=\"/mnt/t/busybox.vm-sha256-rsa2048-openssl-tampered-elf\" dev=\"tmpfs\" ino=4 res=0 errno=0
[   14.998791] integrity: Request for unknown key 'id:66a5d866' in '_ima' keyring. err -11
[   16.451464] audit: type=1800 audit(1795976848.337:37): pid=618 uid=0 auid=4294967295 ses=4294967295 subj=unconfined op=appraise_data cause=IMA-signature-required comm=\"init\" name=\"/mnt/t/busybox.vm-unsigned-elf\" dev=\"tmpfs\" ino=50 res=0 errno=0
[    2.713701] audit: type=1807 audit(1795976834.601:3): action=appraise func=BPRM_CHECK fowner=1000 appraise_type=imasig res=1
";

    #[test]
    fn real_dmesg_lines() {
        let log = parse(DMESG.as_bytes());
        assert_eq!(log.bad, vec![]);
        assert_eq!(log.records.len(), 2);
        let r = &log.records[0];
        assert_eq!(r.line, 1);
        assert_eq!(r.serial, 5);
        assert_eq!(r.time, "1795976846.821");
        assert_eq!(r.op, "appraise_data");
        assert_eq!(r.cause, "invalid-signature");
        assert_eq!(r.comm.as_deref(), Some(&b"init"[..]));
        assert_eq!(
            r.name,
            Some(PathBuf::from(
                "/mnt/t/busybox.vm-sha256-rsa2048-openssl-tampered-elf"
            ))
        );
        assert_eq!(r.dev.as_deref(), Some(&b"tmpfs"[..]));
        assert_eq!(r.ino, Some(4));
        assert!(r.is_denial());
        assert_eq!(log.records[1].cause, "IMA-signature-required");
        assert_eq!(log.records[1].line, 3);
    }

    #[test]
    fn kmsg_journal_and_auditd_spellings() {
        let fields = "pid=1 uid=0 auid=0 ses=1 subj=/usr/bin/x (enforce) op=appraise_data cause=missing-hash comm=\"bash\" name=\"/usr/bin/vim\" dev=\"vda\" ino=9 res=0 errno=0";
        let text = format!(
            "5,479,14935722,-;audit: type=1800 audit(1.5:7): {fields}\n\
             Nov 29 19:00:00 host kernel: audit: type=1800 audit(1.5:8): {fields}\n\
             type=INTEGRITY_DATA msg=audit(1.5:9): {fields}\x1dAUID=\"root\" UID=\"root\"\n"
        );
        let log = parse(text.as_bytes());
        assert_eq!(log.bad, vec![]);
        assert_eq!(log.records.len(), 3);
        for r in &log.records {
            assert_eq!(r.name, Some(PathBuf::from("/usr/bin/vim")));
            assert_eq!(r.cause, "missing-hash");
            assert!(r.is_denial());
        }
        assert_eq!(log.records[2].serial, 9);
    }

    #[test]
    fn the_marker_must_start_the_record() {
        let record =
            "audit(1.5:7): op=appraise_data cause=x comm=\"sh\" name=\"/usr/bin/vim\" res=0";
        let accepted = [
            format!("audit: type=1800 {record}"),
            format!("[   12.300000] audit: type=1800 {record}"),
            format!("[Sun Nov 29 19:00:00 2026] audit: type=1800 {record}"),
            format!("kern  :notice: [   12.300000] audit: type=1800 {record}"),
            format!("6,479,14935722,-;audit: type=1800 {record}"),
            format!("Nov  9 19:00:00 host kernel: audit: type=1800 {record}"),
            format!("Nov  9 19:00:00 host kernel: [   12.3] audit: type=1800 {record}"),
            format!(
                "2026-11-29T19:00:00.123456+00:00 host.example kernel: audit: type=1800 {record}"
            ),
            format!("[   12.300000] host kernel: audit: type=1800 {record}"),
            format!("type=INTEGRITY_DATA msg={record}"),
            format!("node=host1 type=INTEGRITY_DATA msg={record}"),
        ];
        for line in &accepted {
            let log = parse(line.as_bytes());
            assert_eq!(log.records.len(), 1, "{line}");
            assert!(log.records[0].is_denial(), "{line}");
        }
        // What a user can get into a kernel message: a path, a comm.
        let crafted = [
            format!("Nov  9 19:00:00 host kernel: process '/tmp/ type=1800 {record}' started with executable stack"),
            format!("[   12.3] process 'x' launched '/tmp/ type=1800 {record}'"),
            format!("[   12.3] foo: '/tmp/ kernel: audit: type=1800 {record}'"),
            format!("Nov  9 19:00:00 host kernel: x: audit: type=1800 {record}"),
            format!("Nov  9 19:00:00 host kernel: /tmp/ kernel: audit: type=1800 {record}"),
            format!("6,479,1,-;process '/tmp/ audit: type=1800 {record}'"),
            format!("x type=INTEGRITY_DATA msg={record}"),
            format!("type=SYSCALL msg=audit(1.5:6): comm=\"type=INTEGRITY_DATA msg={record}\""),
            format!("audit: type=1800 type=1800 {record}"),
            format!("user  :notice: x '/tmp/ audit: type=1800 {record}'"),
        ];
        for line in &crafted {
            let log = parse(line.as_bytes());
            assert_eq!(log.records, vec![], "{line}");
            assert_eq!(log.bad, vec![], "{line}");
        }
    }

    #[test]
    fn serial_console_line_ends() {
        // A VM's console captured over a serial line: CR LF.
        let crlf = DMESG.replace('\n', "\r\n");
        assert_eq!(parse(crlf.as_bytes()), parse(DMESG.as_bytes()));
    }

    #[test]
    fn hex_encoded_name_with_a_space() {
        // audit_log_untrustedstring: a space makes the whole value hex.
        let line = format!(
            "audit: type=1800 audit(1.0:1): op=appraise_data cause=IMA-signature-required comm=\"sh\" name={} res=0",
            hex::encode_upper("/tmp/a b.sh")
        );
        let log = parse(line.as_bytes());
        assert_eq!(log.records[0].name, Some(PathBuf::from("/tmp/a b.sh")));
        let non_utf8 = "audit: type=1800 audit(1.0:1): op=appraise_data cause=x name=2F74FF res=0";
        let log = parse(non_utf8.as_bytes());
        assert_eq!(
            log.records[0].name.as_ref().unwrap().as_os_str().as_bytes(),
            b"/t\xff"
        );
    }

    #[test]
    fn truncated_and_malformed_records_are_reported_with_their_line() {
        let text = "\
ok line
audit: type=1800 audit(1.0:1): op=appraise_data cause=x comm=\"bash\" name=\"/usr/bi
audit: type=1800 audit(1.0:2): op=appraise_data cause=x name=/not/hex res=0
audit: type=1800 audit(1.0:3
audit: type=1800 audit(1.0:4): op=appraise_data cause=x name=\"/a\" ino=4
audit: type=1800 audit(x:y): op=appraise_data res=0
";
        let log = parse(text.as_bytes());
        assert_eq!(log.records, vec![]);
        let lines: Vec<usize> = log.bad.iter().map(|b| b.line).collect();
        assert_eq!(lines, vec![2, 3, 4, 5, 6]);
        assert!(
            log.bad[0].reason.contains("name= opens a quote"),
            "{}",
            log.bad[0]
        );
        assert!(
            log.bad[1].reason.contains("neither quoted nor hex"),
            "{}",
            log.bad[1]
        );
        assert!(log.bad[3].reason.contains("without res="), "{}", log.bad[3]);
    }

    #[test]
    fn a_success_is_not_a_denial() {
        let log =
            parse(b"audit: type=1800 audit(1.0:1): op=appraise_data cause=x name=\"/a\" res=1");
        assert!(!log.records[0].is_denial());
        let log =
            parse(b"audit: type=1800 audit(1.0:1): op=collect_data cause=failed name=\"/a\" res=0");
        assert!(!log.records[0].is_denial());
    }

    proptest! {
        #[test]
        fn never_panics_on_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&data);
        }

        #[test]
        fn never_panics_on_mangled_records(
            cut in 0usize..200,
            junk in proptest::collection::vec(any::<u8>(), 0..40),
            at in 0usize..200,
        ) {
            let mut line = DMESG.lines().next().unwrap().as_bytes().to_vec();
            let at = at.min(line.len());
            line.splice(at..at, junk);
            line.truncate(line.len().saturating_sub(cut));
            let log = parse(&line);
            prop_assert!(log.records.len() + log.bad.len() <= 1);
        }

        #[test]
        fn any_name_round_trips_through_the_kernels_encoding(
            name in proptest::collection::vec(1u8..=255, 1..80)
        ) {
            let encoded = if name.iter().any(|&b| b == b'"' || !(0x21..=0x7e).contains(&b)) {
                hex::encode_upper(&name)
            } else {
                format!("\"{}\"", String::from_utf8(name.clone()).unwrap())
            };
            let line = format!("audit: type=1800 audit(1.0:1): op=appraise_data cause=x comm=\"c\" name={encoded} res=0");
            let log = parse(line.as_bytes());
            prop_assert_eq!(log.bad.len(), 0);
            prop_assert_eq!(log.records[0].name.as_ref().unwrap().as_os_str().as_bytes(), &name[..]);
        }
    }
}
