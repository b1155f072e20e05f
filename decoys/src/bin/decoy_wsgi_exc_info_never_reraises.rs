//! Decoy: a start_response that takes exc_info after the head without re-raising (rejected by ex06 exc_info_after_head, error_after_head_aborts).

include!(concat!(env!("OUT_DIR"), "/lesson06_exc_info_never_reraises.rs"));
