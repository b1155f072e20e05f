//! Decoy: lesson 07 with a master that respawns workers that cannot boot, for ever (rejected by ex07 boot_failure).
#![allow(unsafe_code)] // lesson 07 forks and installs signal handlers
#![allow(unused_mut)] // the flaw leaves `halt` never set

include!(concat!(env!("OUT_DIR"), "/lesson07_boot_storm.rs"));
