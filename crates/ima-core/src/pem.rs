//! PEM text split into its blocks (a key file may also hold a certificate).

/// One `-----BEGIN label-----` ... `-----END label-----` block of a PEM file.
pub(crate) struct PemBlock<'a> {
    pub(crate) label: &'a str,
    /// The whole block, BEGIN and END lines included.
    pub(crate) text: &'a str,
}

impl PemBlock<'_> {
    /// Base64-decodes the block (strict RFC 7468: no headers).
    pub(crate) fn decode(&self) -> std::result::Result<Vec<u8>, String> {
        der::pem::decode_vec(self.text.as_bytes())
            .map(|(_, der)| der)
            .map_err(|e| format!("bad PEM {} block: {e}", self.label))
    }
}

/// Splits PEM text into its blocks, skipping anything between them (openssl
/// writes "Bag Attributes" and such); a file may hold a key and a certificate.
pub(crate) fn pem_blocks(text: &str) -> Vec<PemBlock<'_>> {
    const BEGIN: &str = "-----BEGIN ";
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let from_begin = &rest[start..];
        let Some(label_end) = from_begin[BEGIN.len()..].find("-----") else {
            break;
        };
        let label = &from_begin[BEGIN.len()..BEGIN.len() + label_end];
        let end_marker = format!("-----END {label}-----");
        let Some(end) = from_begin.find(&end_marker) else {
            break;
        };
        let block_len = end + end_marker.len();
        blocks.push(PemBlock {
            label,
            text: &from_begin[..block_len],
        });
        rest = &from_begin[block_len..];
    }
    blocks
}
