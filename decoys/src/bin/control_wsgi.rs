//! Control: lesson 06 with an unchanged copy of ladder::wsgi (passes every ex06 stage).

include!(concat!(env!("OUT_DIR"), "/lesson06_control.rs"));
