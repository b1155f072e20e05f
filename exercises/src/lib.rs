//! Exercises: see exercises/README.md
