//! Compiles `proto/` with protox (pure Rust, no system `protoc`) and generates
//! the messages, the tonic client and the tonic server. The encoded file
//! descriptor set is kept in `OUT_DIR` so the server can offer reflection.
//!
//! The server is generated from the same descriptors, method by method, so
//! that one method can have a codec of its own: WatchJobs sends messages
//! that were encoded once for every stream (see `contract::Frame`). On the
//! wire nothing differs; clients are generated as usual.

use std::{env, path::PathBuf};

/// Methods whose responses are sent as pre-encoded frames, with the Rust
/// type and codec that carry them.
const PRE_ENCODED: &[(&str, &str, &str)] = &[(
    "WatchJobs",
    "crate::proto::Frame",
    "crate::proto::FrameCodec",
)];

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
    let services = servers(&descriptors)?;
    // Type names (`prost::Name`) let the CLI find each message's descriptor
    // for proto3 JSON.
    let mut config = tonic_prost_build::Config::new();
    config.enable_type_names();
    // A job's creation carries its whole descriptor; boxed, it does not make
    // every event as large as itself.
    config.boxed(".batchops.v1.JobEvent.event.job_created");
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .compile_fds_with_config(descriptors, config)?;
    tonic_build::manual::Builder::new()
        .build_client(false)
        .build_server(true)
        .compile(&services);
    Ok(())
}

/// The servers of every service in the descriptors, with their comments.
fn servers(
    descriptors: &prost_types::FileDescriptorSet,
) -> Result<Vec<tonic_build::manual::Service>, Box<dyn std::error::Error>> {
    let mut services = Vec::new();
    for file in &descriptors.file {
        let package = file.package();
        // Comments by their location's path in the file.
        let comment = |path: &[i32]| -> String {
            file.source_code_info
                .iter()
                .flat_map(|info| &info.location)
                .find(|location| location.path == path)
                .map(|location| location.leading_comments().trim().to_owned())
                .unwrap_or_default()
        };
        for (s, service) in file.service.iter().enumerate() {
            let mut builder = tonic_build::manual::Service::builder()
                .name(service.name())
                .package(package)
                .comment(comment(&[6, s as i32]));
            for (m, method) in service.method.iter().enumerate() {
                let input = rust_type(method.input_type(), package)?;
                let output = rust_type(method.output_type(), package)?;
                let (output, codec) = match PRE_ENCODED
                    .iter()
                    .find(|(name, _, _)| *name == method.name())
                {
                    Some((_, frame, codec)) => ((*frame).to_owned(), (*codec).to_owned()),
                    None => (output, "tonic_prost::ProstCodec".to_owned()),
                };
                let mut method_builder = tonic_build::manual::Method::builder()
                    .name(snake_case(method.name()))
                    .route_name(method.name())
                    .comment(comment(&[6, s as i32, 2, m as i32]))
                    .input_type(input)
                    .output_type(output)
                    .codec_path(codec);
                if method.client_streaming() {
                    method_builder = method_builder.client_streaming();
                }
                if method.server_streaming() {
                    method_builder = method_builder.server_streaming();
                }
                builder = builder.method(method_builder.build());
            }
            services.push(builder.build());
        }
    }
    Ok(services)
}

/// The Rust path of a message of `package` named by its full proto name.
fn rust_type(proto_name: &str, package: &str) -> Result<String, Box<dyn std::error::Error>> {
    let name = proto_name
        .strip_prefix(&format!(".{package}."))
        .filter(|name| !name.contains('.'))
        .ok_or_else(|| format!("{proto_name} is not a message of {package}"))?;
    Ok(format!("crate::proto::{name}"))
}

/// `WatchJobs` → `watch_jobs`.
fn snake_case(name: &str) -> String {
    let mut snake = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                snake.push('_');
            }
            snake.push(c.to_ascii_lowercase());
        } else {
            snake.push(c);
        }
    }
    snake
}
