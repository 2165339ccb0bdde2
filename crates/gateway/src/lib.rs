//! The Palisade gateway library: the HTTP server, identity, admin API, and the layer stack.
