//! The integration tests: one binary (`cargo test --test it`), one module
//! per area, the shared harness once. Each module runs Slipway against the
//! most real component there is (fakepve, Synapse, Caddy, BIND, dockerd, git).

// matrix-sdk's futures in `matrix_encrypted` nest deeply.
#![recursion_limit = "256"]

mod apps_support;
mod common;
mod discord_support;
mod guest_support;
mod matrix_support;
mod publish_support;

mod access_keys;
mod apps_deploy;
mod apps_docker_host;
mod apps_policy;
mod apps_reconcile;
mod apps_registry;
mod apps_stop_start;
mod apps_tls;
mod apps_update;
mod catalog_actions;
mod core_approval;
mod core_create;
mod core_failures;
mod core_input;
mod core_ops;
mod core_restart;
mod discord_approval;
mod discord_gateway;
mod discord_http;
mod discord_ratelimit;
mod discord_thread;
mod faults_approvals;
mod faults_destroy;
mod faults_lock;
mod faults_node;
mod guest_access;
mod guest_host_key;
mod guest_provision;
mod guest_smoke;
mod guest_web_app;
mod hostile_input;
mod isolation_abuse;
mod isolation_approvals;
mod isolation_vmid;
mod lifetimes;
mod matrix_approval;
mod matrix_create;
mod matrix_encrypted;
mod matrix_rate_limit;
mod matrix_restart;
mod matrix_threads;
mod publish_caddy_api;
mod publish_dns;
mod publish_flow;
mod publish_gitops;
mod publish_monitor;
mod publish_readdress;
mod publish_traefik;
mod reliability_faults;
mod reliability_kill;
mod reliability_privileges;
mod reliability_reconcile;
mod secrets;
mod steps_journal;
