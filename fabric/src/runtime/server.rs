//! Serving a node's gRPC services: every node also serves `grpc.health.v1` and server
//! reflection, so generic gRPC tools work without the .proto files.

use tonic::service::Routes;
use tonic::transport::Server;

use super::net::{NetError, NetListener};

/// Adds health and reflection to `routes`, marks `services` as SERVING, and serves
/// on `listener` until the task is dropped.
pub async fn serve(
    listener: NetListener,
    routes: Routes,
    services: &[&str],
) -> Result<(), NetError> {
    let (reporter, health) = tonic_health::server::health_reporter();
    for s in services {
        reporter
            .set_service_status(*s, tonic_health::ServingStatus::Serving)
            .await;
    }
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(fcsim_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| NetError::Serve {
            addr: "reflection".into(),
            detail: e.to_string(),
        })?;
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let routes = routes.add_service(health).add_service(reflection);
    Server::builder()
        .tcp_nodelay(true)
        .add_routes(routes)
        .serve_with_incoming(listener.incoming())
        .await
        .map_err(|e| NetError::Serve {
            addr: local,
            detail: e.to_string(),
        })
}
