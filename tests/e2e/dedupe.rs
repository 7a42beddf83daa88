//! Duplicate rules: blocked and warned creates, the scan, merges; and the export round trip.
