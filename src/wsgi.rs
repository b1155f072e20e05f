//! WSGI. Introduced in lesson 06.
