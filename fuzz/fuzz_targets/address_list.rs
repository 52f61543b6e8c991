#![no_main]

use libfuzzer_sys::fuzz_target;
use postern::address::parse::{parse_address_list, parse_single_address};

fuzz_target!(|data: &[u8]| {
    if let Ok(list) = parse_address_list(data) {
        for m in &list {
            assert!(m.span.start <= m.span.end, "span {:?} reversed", m.span);
            assert!(m.span.end <= data.len(), "span {:?} out of bounds", m.span);
            assert!(m.span.start < m.span.end, "empty span {:?}", m.span);
            assert!(!m.addr.is_empty() && m.addr.len() <= 998);
            assert!(m.unqualified || m.addr.contains('@'));
            // The envelope address is itself a valid single address that
            // parses back to itself (unless a quoted string kept a TAB).
            if !m.addr.contains('\t') {
                assert_eq!(
                    parse_single_address(&m.addr).as_deref(),
                    Ok(m.addr.as_str())
                );
            }
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(addr) = parse_single_address(s) {
            assert!(!addr.is_empty());
            assert!(!addr.bytes().any(|b| b < 0x20 || b == 0x7f));
            // A single address is also a one-element list.
            let list = parse_address_list(data).expect("single address must parse as a list");
            assert_eq!(list.len(), 1);
            assert_eq!(list[0].addr, addr);
        }
    }
});
