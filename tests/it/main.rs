//! Integration tests, one binary: the CLI end to end, each client against the sandbox or a
//! real peer.

mod backup;
mod conformance;
mod contain;
mod faults;
mod flows;
mod flows_real;
mod host;
mod hostile;
mod kube;
mod kube_config;
mod kube_faults;
mod pachd_client;
mod port_forward;
mod python_conformance;
mod quiesce_crash;
mod real_pachd;
mod repl;
mod s3_faults;
mod sandbox;
mod sandbox_extract_1_9_0;
mod sandbox_strict;
mod scripts;
mod secrets;
mod store;
mod store_aws;
mod support;
mod urls;
mod verify_relations;
