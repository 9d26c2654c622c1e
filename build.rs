//! Compiles `proto/` with protox (pure Rust, no system `protoc`) and generates
//! the tonic server and client. The encoded file descriptor set is kept in
//! `OUT_DIR` so the server can offer reflection.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/batchops/v1/job.proto",
        "proto/batchops/v1/job_service.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(files, ["proto"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("batchops_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    // Type names (`prost::Name`) let the CLI find each message's descriptor
    // for proto3 JSON.
    let mut config = tonic_prost_build::Config::new();
    config.enable_type_names();
    // A job's creation carries its whole descriptor; boxed, it does not make
    // every event (and every WatchJobs message) as large as itself.
    config.boxed(".batchops.v1.JobEvent.event.job_created");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds_with_config(descriptors, config)?;
    Ok(())
}
