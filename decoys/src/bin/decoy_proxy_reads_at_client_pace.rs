//! Decoy: lesson 08 reading a response only 1 MiB ahead of its client, so a large one holds the upstream (rejected by ex08 frees_upstream).

include!(concat!(
    env!("OUT_DIR"),
    "/lesson08_reads_at_client_pace.rs"
));
