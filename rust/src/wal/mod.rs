//! Write-ahead log: see the helper-owned implementation.
