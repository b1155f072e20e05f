//! Decoy: a gateway that sends the head as soon as the app returns, before any body byte (rejected by ex06 head_waits_for_body).

include!(concat!(env!("OUT_DIR"), "/lesson06_eager_head.rs"));
