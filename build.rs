//! Build script: only for the `python` feature (rungs 6 and 7 embed CPython).
//!
//! pyo3 links the libpython of the interpreter it finds at build time
//! (`PYO3_PYTHON`, else `python3` on PATH), but at run time the dynamic
//! loader looks for `libpython3.X.so` in its own places (`/lib`, `/usr/lib`),
//! and can find ANOTHER Python's library there: on a machine with pyenv's
//! 3.11.7 on PATH and Debian's 3.11.2 in /usr, the binary would run Debian's
//! interpreter, with Debian's `sys.prefix` and none of the packages the
//! student installed. An rpath (a library directory written into the binary,
//! `readelf -d` shows it as RUNPATH) makes the loader look in the linked
//! interpreter's libdir first, so `cargo run` works without LD_LIBRARY_PATH.

fn main() {
    #[cfg(feature = "python")]
    {
        let config = pyo3_build_config::get();
        // -Wl,-rpath,<libdir>, for every binary and test of this package.
        pyo3_build_config::add_libpython_rpath_link_args();
        // The interpreter we linked, so `ladder::python` can name it as the
        // program when no venv is chosen (sys.executable then points to it).
        if let Some(executable) = config.executable() {
            println!("cargo:rustc-env=LADDER_PYTHON={executable}");
        }
        let version = config.version();
        println!(
            "cargo:rustc-env=LADDER_PYTHON_VERSION={}.{}",
            version.major, version.minor
        );
        println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
