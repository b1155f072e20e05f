//! Decoy: a gateway whose environ decodes PATH_INFO (every native string) as UTF-8 (rejected by ex06 environ_latin1_path).

include!(concat!(env!("OUT_DIR"), "/lesson06_utf8_path.rs"));
