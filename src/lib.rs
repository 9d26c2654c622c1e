pub mod domain;
pub mod proto {
    tonic::include_proto!("batchops.v1");
}
pub mod objects;
pub mod store;
