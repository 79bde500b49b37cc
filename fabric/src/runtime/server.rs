//! Serving a node's gRPC services: every node also serves `grpc.health.v1` and server
//! reflection, so generic gRPC tools work without the .proto files.
//!
//! On real TCP, tonic's `Server` serves the listener. In simulation tonic's server
//! cannot be used: it spawns its connection and stream tasks with `tokio::spawn`,
//! outside the node's crash domain, where a crash would not reach them. There each
//! accepted in-process connection is served by hyper's HTTP/2 server directly, over
//! the same routes, with an executor that spawns into the node's domain
//! ([`DomainExec`]).

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tonic::service::Routes;
use tonic::transport::Server;

use super::domain::DomainExec;
use super::net::{NetError, NetListener, SimListener, tcp_incoming};

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
    let local = listener.name();
    let routes = routes.add_service(health).add_service(reflection);
    match listener {
        NetListener::Tokio(l) => Server::builder()
            .tcp_nodelay(true)
            .add_routes(routes)
            .serve_with_incoming(tcp_incoming(l))
            .await
            .map_err(|e| NetError::Serve {
                addr: local,
                detail: e.to_string(),
            }),
        NetListener::Sim(l) => {
            serve_sim(l, routes).await;
            Ok(())
        }
    }
}

/// Serves every connection opened to a simulated listener, each on its own task of
/// the node's crash domain, until the run ends.
async fn serve_sim(mut listener: SimListener, routes: Routes) {
    let routes = routes.prepare();
    let exec = DomainExec::current();
    let mut http2 = hyper::server::conn::http2::Builder::new(exec.clone());
    // As tonic's server: no limit on streams per connection (streams live long).
    http2.max_concurrent_streams(None);
    while let Some(stream) = listener.accept().await {
        let conn = http2.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(routes.clone()),
        );
        hyper::rt::Executor::execute(&exec, async move {
            if let Err(e) = conn.await {
                tracing::debug!("simulated gRPC connection ended: {e}");
            }
        });
    }
}
