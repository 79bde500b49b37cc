//! Asking a node's actor: every node keeps its state in one task (the actor), and its
//! gRPC services hand it a request carrying a reply slot, then wait for the answer.
//! One helper for every node's services (switch, link, array, tape, relay, copy,
//! virtualization), so "the node is gone" is answered the same way everywhere.

use tokio::sync::{mpsc, oneshot};
use tonic::Status;

/// Sends `make(reply)` to the actor behind `tx` and waits for the reply. `node` names
/// the node in the UNAVAILABLE answer given when the actor has stopped.
pub async fn ask<M, T>(
    tx: &mpsc::UnboundedSender<M>,
    node: &str,
    make: impl FnOnce(oneshot::Sender<T>) -> M,
) -> Result<T, Status> {
    ask_with(node, |reply| tx.send(make(reply)).is_ok()).await
}

/// [`ask`] through any hand-off that says whether the actor took the request.
pub async fn ask_with<T>(
    node: &str,
    send: impl FnOnce(oneshot::Sender<T>) -> bool,
) -> Result<T, Status> {
    let gone = || Status::unavailable(format!("{node} is shutting down"));
    let (reply, rx) = oneshot::channel();
    if !send(reply) {
        return Err(gone());
    }
    rx.await.map_err(|_| gone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_answer_comes_back_and_a_stopped_actor_is_unavailable() {
        let (tx, mut rx) = mpsc::unbounded_channel::<oneshot::Sender<u32>>();
        let actor = tokio::spawn(async move {
            if let Some(reply) = rx.recv().await {
                let _ = reply.send(7);
            }
        });
        assert_eq!(ask(&tx, "array", |r| r).await.unwrap(), 7);
        actor.await.unwrap();
        let e = ask(&tx, "array", |r| r).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unavailable);
        assert_eq!(e.message(), "array is shutting down");
        let e = ask_with::<u32>("node", |_| false).await.unwrap_err();
        assert_eq!(e.message(), "node is shutting down");
    }
}
