//! The one host call keygate makes without the SDK's wrapper: reading a header map. The SDK's
//! `get_map` stops the VM on a header value that is not UTF-8 (`String::from_utf8(..).unwrap()`),
//! which a client can send; this reads the same bytes and leaves their decoding to
//! [`crate::worker::decode_header_map`], which never fails on them.
#![allow(unsafe_code)]

use std::ptr::null_mut;

/// proxy-wasm's map types (ABI 0.2.1).
#[derive(Clone, Copy)]
#[repr(u32)]
pub enum HeaderMap {
    Request = 0,
    CallResponse = 6,
}

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(
        map_type: HeaderMap,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
}

/// The map's serialized pairs, owned; empty when the host has none or refuses.
pub fn header_map_bytes(map: HeaderMap) -> Vec<u8> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a pointer and a length through the two out-parameters, which point
    // at live locals.
    let status = unsafe { proxy_get_header_map_pairs(map, &mut data, &mut size) };
    if status != 0 || data.is_null() {
        return Vec::new();
    }
    // SAFETY: the host allocated these `size` bytes through the module's exported
    // `proxy_on_memory_allocate` (the SDK's: a boxed slice of exactly `size` bytes) and hands
    // them over; owning them as a Vec of that capacity frees them the same way the SDK does.
    unsafe { Vec::from_raw_parts(data, size, size) }
}
