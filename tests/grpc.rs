//! gRPC over real TCP through `OpLayer`: a tonic health service behind the
//! layer on the server, and the layer around the client's channel. A call
//! is answered, then refused with `RESOURCE_EXHAUSTED` and retry metadata.

use std::time::Duration;

use limiter::{OpConfig, OpLayer, Registry};
use tonic::transport::{Channel, Server};
use tonic::Code;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// A registry whose op `name` admits `n` calls a minute, leaked for the
/// layer (layers keep their op for the process).
fn op(name: &str, n: u32) -> limiter::Op {
    let reg: &'static Registry = Box::leak(Box::new(Registry::new()));
    reg.configure(
        name,
        OpConfig {
            burst: Some(n),
            ..OpConfig::default()
        }
        .with_rate(&format!("{n}/min"))
        .unwrap(),
    )
    .unwrap();
    reg.op(name)
}

/// A tonic server with the health service behind `OpLayer::grpc` of an
/// op admitting `n` calls a minute; returns its address.
async fn server(n: u32) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    tokio::spawn(async move {
        let _keep = reporter;
        Server::builder()
            .layer(OpLayer::grpc(op("grpc.server", n)))
            .add_service(health)
            .serve_with_incoming(tokio_stream_listener(listener))
            .await
            .unwrap();
    });
    format!("http://{addr}")
}

/// The listener as the stream of connections tonic serves.
fn tokio_stream_listener(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures::stream::unfold(listener, |l| async move {
        let conn = l.accept().await.map(|(s, _)| s);
        Some((conn, l))
    })
}

async fn channel(url: &str) -> Channel {
    Channel::from_shared(url.to_owned())
        .unwrap()
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap()
}

fn pushback(status: &tonic::Status) -> (u64, u64) {
    let md = status.metadata();
    let num = |k: &str| -> u64 { md.get(k).unwrap().to_str().unwrap().parse().unwrap() };
    (num("retry-after"), num("grpc-retry-pushback-ms"))
}

#[tokio::test]
async fn the_server_layer_answers_then_refuses_with_resource_exhausted() {
    let url = server(2).await;
    let mut client = HealthClient::new(channel(&url).await);
    for _ in 0..2 {
        let r = client.check(HealthCheckRequest::default()).await.unwrap();
        assert_eq!(r.into_inner().status, 1, "SERVING");
    }
    let refused = client
        .check(HealthCheckRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("rate limit"), "{refused:?}");
    let (secs, ms) = pushback(&refused);
    assert!(
        (1..=30).contains(&secs) && (1..=30_000).contains(&ms),
        "{secs} s, {ms} ms"
    );
}

#[tokio::test]
async fn the_client_layer_refuses_before_sending() {
    let url = server(100).await;
    let svc = tower::ServiceBuilder::new()
        .layer(OpLayer::grpc(op("grpc.client", 1)))
        .service(channel(&url).await);
    let mut client = HealthClient::new(svc);
    let r = client.check(HealthCheckRequest::default()).await.unwrap();
    assert_eq!(r.into_inner().status, 1);
    let refused = client
        .check(HealthCheckRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(pushback(&refused).1 >= 1);
}
