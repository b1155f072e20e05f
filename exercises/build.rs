//! Build script: ex06 embeds CPython, like lesson 06. Without an rpath the
//! dynamic loader may pick another Python's `libpython3.X.so` at run time
//! (see the root package's build.rs, which does the same for the lessons).

fn main() {
    // -Wl,-rpath,<libdir of the linked interpreter>, for every binary here.
    pyo3_build_config::add_libpython_rpath_link_args();
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    println!("cargo:rerun-if-changed=build.rs");
}
