//! Decoy: a gateway that keeps headers whose name holds _, so X_Auth_User spoofs X-Auth-User (rejected by ex06 environ_headers).

include!(concat!(env!("OUT_DIR"), "/lesson06_underscore_spoof.rs"));
