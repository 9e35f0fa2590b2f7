//! MVCC store: see the helper-owned implementation.
