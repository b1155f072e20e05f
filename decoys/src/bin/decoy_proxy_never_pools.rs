//! Decoy: lesson 08 closing every upstream connection after its response (rejected by ex08 reuses_connections).

include!(concat!(env!("OUT_DIR"), "/lesson08_never_pools.rs"));
