//! Decoy: a gateway that does not hold the app to its Content-Length (rejected by ex06 content_length_enforced).

include!(concat!(env!("OUT_DIR"), "/lesson06_length_unenforced.rs"));
