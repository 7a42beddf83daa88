//! trellis-server
