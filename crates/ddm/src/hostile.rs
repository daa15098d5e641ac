//! Property lists built to hurt a parser, for the tests of every crate that reads device bodies
//! (this one's parsers, the server's endpoints): each must be refused with a reason, never
//! crash or expand. Pure data; nothing here reads or parses.

/// An `Authenticate` check-in whose `x` holds `depth` nested XML arrays.
pub fn nested_xml(depth: usize) -> Vec<u8> {
    let mut xml = String::from(r#"<?xml version="1.0" encoding="UTF-8"?><plist version="1.0">"#);
    xml.push_str("<dict><key>MessageType</key><string>Authenticate</string><key>x</key>");
    xml.push_str(&"<array>".repeat(depth));
    xml.push_str(&"</array>".repeat(depth));
    xml.push_str("</dict></plist>");
    xml.into_bytes()
}

/// A binary plist of `depth` arrays, each holding the next: 5 bytes an object.
pub fn nested_binary(depth: usize) -> Vec<u8> {
    binary_chain(depth, 1)
}

/// A binary plist of `levels` arrays, each holding the next twice: 2^levels elements in
/// a few hundred bytes.
pub fn shared_binary(levels: usize) -> Vec<u8> {
    binary_chain(levels + 1, 2)
}

/// `count` arrays, each referring `references` times to the next, the last empty, with 4-byte
/// object references and offsets.
fn binary_chain(count: usize, references: u8) -> Vec<u8> {
    let mut out = b"bplist00".to_vec();
    let mut offsets = Vec::with_capacity(count);
    for index in 0..count {
        offsets.push(out.len() as u32);
        if index + 1 < count {
            out.push(0xA0 | references);
            let next = ((index + 1) as u32).to_be_bytes();
            for _ in 0..references {
                out.extend_from_slice(&next);
            }
        } else {
            out.push(0xA0);
        }
    }
    let table = out.len() as u64;
    for offset in offsets {
        out.extend_from_slice(&offset.to_be_bytes());
    }
    // The trailer: six unused bytes, offset and reference sizes, object count, top object,
    // offset table's position.
    out.extend_from_slice(&[0, 0, 0, 0, 0, 0, 4, 4]);
    out.extend_from_slice(&(count as u64).to_be_bytes());
    out.extend_from_slice(&0u64.to_be_bytes());
    out.extend_from_slice(&table.to_be_bytes());
    out
}
