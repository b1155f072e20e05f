//! Decoy: lesson 07 with a master that counts the workers it ever forked, so never replaces a dead one (rejected by ex07 respawn).
#![allow(unsafe_code)] // lesson 07 forks and installs signal handlers

include!(concat!(env!("OUT_DIR"), "/lesson07_never_respawns.rs"));
