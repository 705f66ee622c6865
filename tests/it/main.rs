//! Integration tests, one binary: the CLI end to end, each client against the sandbox or a
//! real peer.

mod host;
mod python_conformance;
mod sandbox;
mod support;
