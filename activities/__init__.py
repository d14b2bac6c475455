"""Activities: everything in Stanch that does I/O, wrapped for Temporal."""
