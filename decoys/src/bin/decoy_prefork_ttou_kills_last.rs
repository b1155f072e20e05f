//! Decoy: lesson 07 with a TTOU that removes the last worker too (rejected by ex07 ttin_ttou).
#![allow(unsafe_code)] // lesson 07 forks and installs signal handlers

include!(concat!(env!("OUT_DIR"), "/lesson07_ttou_kills_last.rs"));
