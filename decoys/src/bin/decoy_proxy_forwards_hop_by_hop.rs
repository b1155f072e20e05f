//! Decoy: lesson 08 taking the Connection header off before writing the upstream's request, so the headers it names are forwarded (rejected by ex08 hop_by_hop).

include!(concat!(env!("OUT_DIR"), "/lesson08_forwards_hop_by_hop.rs"));
