//! Decoy: lesson 06 with a gateway that never calls the iterable's close() (rejected by ex06 close_on_normal_end, close_on_app_error, close_on_client_gone).

include!(concat!(env!("OUT_DIR"), "/lesson06_no_close.rs"));
