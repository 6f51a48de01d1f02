//! The JSON output of `sign --json` and `verify --json`: one document per
//! run, `{"version": 1, "files": [FILE...], ...the closing fields}` (the
//! conventions of every command's JSON are in docs/json.md), its files written as
//! they are reported, so that a run over a million files never holds them
//! all.

use std::io::Write;

use serde::Serialize;

/// The state of a streamed document: its `files` array is open.
pub(super) struct JsonStream {
    files: usize,
}

impl JsonStream {
    /// Opens the document and its `files` array.
    pub(super) fn open(out: &mut impl Write) -> JsonStream {
        let _ = write!(out, "{{\"version\":{},\"files\":[", super::JSON_VERSION);
        JsonStream { files: 0 }
    }

    /// One element of `files`.
    pub(super) fn file(&mut self, out: &mut impl Write, file: &impl Serialize) {
        if self.files > 0 {
            let _ = out.write_all(b",");
        }
        let _ = serde_json::to_writer(&mut *out, file);
        self.files += 1;
    }

    /// Closes `files`, then the document with the fields of `tail` (a
    /// struct, serialised as a JSON object with at least one field) after
    /// `files`, in their order, and a newline.
    pub(super) fn close(self, out: &mut impl Write, tail: &impl Serialize) {
        let tail = serde_json::to_vec(tail).unwrap_or_default();
        debug_assert!(
            tail.len() > 2 && tail[0] == b'{',
            "tail must be a non-empty object"
        );
        let _ = out.write_all(b"],");
        let _ = out.write_all(tail.get(1..).unwrap_or(b"}"));
        let _ = out.write_all(b"\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Tail {
        summary: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        packages: Option<u32>,
    }

    #[test]
    fn files_and_tail_make_one_document() {
        let mut out = Vec::new();
        let mut doc = JsonStream::open(&mut out);
        doc.file(&mut out, &"a");
        doc.file(&mut out, &"b");
        doc.close(
            &mut out,
            &Tail {
                summary: 2,
                packages: None,
            },
        );
        assert_eq!(
            out,
            b"{\"version\":1,\"files\":[\"a\",\"b\"],\"summary\":2}\n"
        );
        let mut out = Vec::new();
        let doc = JsonStream::open(&mut out);
        doc.close(
            &mut out,
            &Tail {
                summary: 0,
                packages: Some(1),
            },
        );
        assert_eq!(
            out,
            b"{\"version\":1,\"files\":[],\"summary\":0,\"packages\":1}\n"
        );
    }
}
