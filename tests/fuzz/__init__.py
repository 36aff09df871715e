"""Property-based fuzz tests: every parser returns its documented types or raises its errors."""
