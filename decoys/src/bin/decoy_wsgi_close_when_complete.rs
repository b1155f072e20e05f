//! Decoy: a gateway that calls close() only after a complete response (rejected by ex06 close_on_app_error, close_on_client_gone).

include!(concat!(env!("OUT_DIR"), "/lesson06_close_when_complete.rs"));
