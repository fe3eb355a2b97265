//! The Apache RocketMQ v2 `MessagingService` over the broker core. One file per RPC family:
//! `route` (QueryRoute, Heartbeat, QueryAssignment, NotifyClientTermination), `send`,
//! `receive` (ReceiveMessage, Ack, ChangeInvisibleDuration), `dead_letter`
//! (ForwardMessageToDeadLetterQueue), `recall` (RecallMessage), `pull` (PullMessage and the
//! offset RPCs), `transaction` (EndTransaction), `telemetry`; plus `convert`,
//! `validate` and `status` helpers. Business errors are v2 statuses inside gRPC-OK responses;
//! gRPC errors are used only for unimplemented RPCs.

pub mod convert;
mod dead_letter;
mod pull;
mod recall;
mod receive;
mod route;
mod send;
pub mod status;
mod telemetry;
pub mod transaction;
pub mod validate;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use raftmq_proto::v2 as pb;
use raftmq_proto::v2::Code;
use raftmq_proto::v2::messaging_service_server::MessagingService;
use tonic::Request;
use tonic::Response;

use crate::core::BrokerCore;

type RpcResult<T> = Result<Response<T>, tonic::Status>;
type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, tonic::Status>> + Send + 'static>>;

/// The v2 service; cheap to clone.
#[derive(Clone)]
pub struct MessagingServer {
    core: Arc<BrokerCore>,
}

impl MessagingServer {
    /// A service over `core`.
    pub fn new(core: Arc<BrokerCore>) -> Self {
        Self { core }
    }
}

/// The calling client's id (`x-mq-client-id`), or the status to answer without one.
fn client_id<T>(req: &Request<T>) -> Result<String, pb::Status> {
    raftmq_proto::v2util::client_id(req.metadata())
}

/// The Raft group and receipt a receipt handle names, if the handle is well-formed and the
/// group is served here; else the INVALID_RECEIPT_HANDLE status to answer.
fn served_receipt(
    core: &BrokerCore,
    handle: &str,
) -> Result<(u64, crate::command::Receipt), pb::Status> {
    match crate::receipt::decode(handle) {
        Ok((g, r)) if core.group(g).is_ok() => Ok((g, r)),
        Ok(_) => Err(status::status(
            Code::InvalidReceiptHandle,
            "receipt handle belongs to a broker not served here",
        )),
        Err(why) => Err(status::status(Code::InvalidReceiptHandle, why)),
    }
}

/// The request's gRPC deadline (`grpc-timeout`), if any.
fn grpc_timeout<T>(req: &Request<T>) -> Option<Duration> {
    raftmq_proto::v2util::grpc_timeout(req.metadata())
}

#[tonic::async_trait]
impl MessagingService for MessagingServer {
    type ReceiveMessageStream = BoxStream<pb::ReceiveMessageResponse>;
    type PullMessageStream = BoxStream<pb::PullMessageResponse>;
    type TelemetryStream = BoxStream<pb::TelemetryCommand>;

    async fn query_route(
        &self,
        req: Request<pb::QueryRouteRequest>,
    ) -> RpcResult<pb::QueryRouteResponse> {
        Ok(Response::new(route::query_route(&self.core, req).await))
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> RpcResult<pb::HeartbeatResponse> {
        Ok(Response::new(route::heartbeat(&self.core, req).await))
    }

    async fn send_message(
        &self,
        req: Request<pb::SendMessageRequest>,
    ) -> RpcResult<pb::SendMessageResponse> {
        Ok(send::send_message(&self.core, req).await)
    }

    async fn query_assignment(
        &self,
        req: Request<pb::QueryAssignmentRequest>,
    ) -> RpcResult<pb::QueryAssignmentResponse> {
        Ok(Response::new(
            route::query_assignment(&self.core, req).await,
        ))
    }

    async fn receive_message(
        &self,
        req: Request<pb::ReceiveMessageRequest>,
    ) -> RpcResult<Self::ReceiveMessageStream> {
        let replies = receive::receive_message(&self.core, req).await;
        Ok(Response::new(Box::pin(futures::stream::iter(
            replies.into_iter().map(Ok),
        ))))
    }

    async fn ack_message(
        &self,
        req: Request<pb::AckMessageRequest>,
    ) -> RpcResult<pb::AckMessageResponse> {
        Ok(Response::new(receive::ack_message(&self.core, req).await))
    }

    async fn forward_message_to_dead_letter_queue(
        &self,
        req: Request<pb::ForwardMessageToDeadLetterQueueRequest>,
    ) -> RpcResult<pb::ForwardMessageToDeadLetterQueueResponse> {
        Ok(Response::new(
            dead_letter::forward_message_to_dead_letter_queue(&self.core, req).await,
        ))
    }

    async fn pull_message(
        &self,
        req: Request<pb::PullMessageRequest>,
    ) -> RpcResult<Self::PullMessageStream> {
        let replies = pull::pull_message(&self.core, req).await;
        Ok(Response::new(Box::pin(futures::stream::iter(
            replies.into_iter().map(Ok),
        ))))
    }

    async fn update_offset(
        &self,
        req: Request<pb::UpdateOffsetRequest>,
    ) -> RpcResult<pb::UpdateOffsetResponse> {
        Ok(Response::new(pull::update_offset(&self.core, req).await))
    }

    async fn get_offset(
        &self,
        req: Request<pb::GetOffsetRequest>,
    ) -> RpcResult<pb::GetOffsetResponse> {
        Ok(Response::new(pull::get_offset(&self.core, req).await))
    }

    async fn query_offset(
        &self,
        req: Request<pb::QueryOffsetRequest>,
    ) -> RpcResult<pb::QueryOffsetResponse> {
        Ok(Response::new(pull::query_offset(&self.core, req).await))
    }

    async fn end_transaction(
        &self,
        req: Request<pb::EndTransactionRequest>,
    ) -> RpcResult<pb::EndTransactionResponse> {
        Ok(Response::new(
            transaction::end_transaction(&self.core, req).await,
        ))
    }

    async fn telemetry(
        &self,
        req: Request<tonic::Streaming<pb::TelemetryCommand>>,
    ) -> RpcResult<Self::TelemetryStream> {
        telemetry::telemetry(self.core.clone(), req).await
    }

    async fn notify_client_termination(
        &self,
        req: Request<pb::NotifyClientTerminationRequest>,
    ) -> RpcResult<pb::NotifyClientTerminationResponse> {
        Ok(Response::new(
            route::notify_client_termination(&self.core, req).await,
        ))
    }

    async fn change_invisible_duration(
        &self,
        req: Request<pb::ChangeInvisibleDurationRequest>,
    ) -> RpcResult<pb::ChangeInvisibleDurationResponse> {
        Ok(Response::new(
            receive::change_invisible_duration(&self.core, req).await,
        ))
    }

    async fn recall_message(
        &self,
        req: Request<pb::RecallMessageRequest>,
    ) -> RpcResult<pb::RecallMessageResponse> {
        Ok(Response::new(recall::recall_message(&self.core, req).await))
    }
}
