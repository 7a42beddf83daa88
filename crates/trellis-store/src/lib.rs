//! trellis-store
