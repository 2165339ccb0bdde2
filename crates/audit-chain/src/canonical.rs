//! The canonical byte encoding of an event (see `docs/audit-format.md`, "Canonical bytes"):
//! JSON, object members sorted by the UTF-8 bytes of their names, no whitespace, integers
//! only, strings escaped as in RFC 8785.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The 32 zero bytes that stand for the predecessor of the first event.
pub const GENESIS_PREV_HASH: [u8; 32] = [0u8; 32];

/// Why a value has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    /// Floats are not allowed in the hashed form.
    #[error("canonical form: number `{0}` is not an integer")]
    NotAnInteger(String),
}

/// Writes the canonical encoding of `value` into `out`.
pub fn write_canonical(value: &Value, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                out.extend_from_slice(u.to_string().as_bytes());
            } else if let Some(i) = n.as_i64() {
                out.extend_from_slice(i.to_string().as_bytes());
            } else {
                return Err(CanonicalError::NotAnInteger(n.to_string()));
            }
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(k, out);
                out.push(b':');
                write_canonical(v, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// The canonical encoding of `value`.
pub fn to_canonical(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(1024);
    write_canonical(value, &mut out)?;
    Ok(out)
}

/// RFC 8785 string escaping: `"` and `\` escaped, U+0008/09/0A/0C/0D as `\b \t \n \f \r`,
/// other code points below U+0020 as `\u00xx` (lower-case hex), everything else literal UTF-8.
fn write_string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x09 => b"\\t",
            0x0a => b"\\n",
            0x0c => b"\\f",
            0x0d => b"\\r",
            0x00..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// `SHA-256(prev_hash ‖ canonical_bytes)`.
pub fn chain_hash(prev_hash: &[u8; 32], canonical_bytes: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev_hash);
    h.update(canonical_bytes);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_members_and_escapes_like_jcs() {
        let v: Value = serde_json::from_str(
            r#"{"b":1,"a":[true,null,"x\"\\\n\u0001\u007f/é€😀"],"A":-3,"aa":{}}"#,
        )
        .unwrap();
        let got = String::from_utf8(to_canonical(&v).unwrap()).unwrap();
        assert_eq!(
            got,
            "{\"A\":-3,\"a\":[true,null,\"x\\\"\\\\\\n\\u0001\u{7f}/é€😀\"],\"aa\":{},\"b\":1}"
        );
    }

    #[test]
    fn rejects_floats() {
        let v: Value = serde_json::from_str(r#"{"x":0.5}"#).unwrap();
        assert_eq!(
            to_canonical(&v),
            Err(CanonicalError::NotAnInteger("0.5".to_owned()))
        );
    }

    #[test]
    fn canonical_of_canonical_is_identity() {
        let v: Value =
            serde_json::from_str(r#"{"z":"\t\b\f\r","k":[1,2,{"y":18446744073709551615}]}"#)
                .unwrap();
        let once = to_canonical(&v).unwrap();
        let again = to_canonical(&serde_json::from_slice(&once).unwrap()).unwrap();
        assert_eq!(once, again);
    }
}
