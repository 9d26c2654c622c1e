pub mod domain;
pub mod proto {
    tonic::include_proto!("batchops.v1");
}
