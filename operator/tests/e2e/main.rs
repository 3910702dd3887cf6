//! End-to-end tests of the operator on a real kube-apiserver. They need a
//! control plane and the binaries, so they are `#[ignore]`d in `cargo test`;
//! `e2e/operator-test.sh` starts a cluster and runs them with `--ignored`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod debounce_has_a_maximum_wait;
mod diagnostics_follow_the_real_servers;
mod invalid_objects_are_refused_or_explained;
mod keys_are_never_silently_lost;
mod no_takeover;
mod registry_at_scale;
mod rendered_config_runs_a_real_server;
mod repair_and_restart;
mod rotation;
mod samples_become_ready;
mod settled_cluster_writes_nothing;
mod upstreams_reach_the_pod_as_files;
