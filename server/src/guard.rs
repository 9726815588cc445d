//! The door of every call: a connection beyond `--max-connections` is told so,
//! and a call without a good bearer token (when the server has tokens) is
//! refused before it reaches the Flight SQL service. Only the handshake goes
//! through without one: it is how a client trades a password for a token.

use std::sync::Arc;

use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo, HandshakeRequest, PollInfo,
    SchemaResult, Ticket,
};
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{Tokens, check_bearer};
use crate::connection::Connection;

/// A Flight service behind the checks above.
pub struct Guarded<S> {
    pub inner: S,
    pub tokens: Option<Arc<Tokens>>,
    pub max_connections: usize,
}

impl<S> Guarded<S> {
    fn admit<T>(&self, request: &Request<T>, token: bool) -> Result<(), Status> {
        let connection = Connection::of(request)?;
        if !connection.admitted() {
            return Err(Status::resource_exhausted(format!(
                "ember serve has {} connections open, its --max-connections; close one or try \
                 again later",
                self.max_connections
            )));
        }
        match (&self.tokens, token) {
            (Some(tokens), true) => check_bearer(tokens, request.metadata()),
            _ => Ok(()),
        }
    }
}

#[tonic::async_trait]
impl<S: FlightService> FlightService for Guarded<S> {
    type HandshakeStream = S::HandshakeStream;
    type ListFlightsStream = S::ListFlightsStream;
    type DoGetStream = S::DoGetStream;
    type DoPutStream = S::DoPutStream;
    type DoExchangeStream = S::DoExchangeStream;
    type DoActionStream = S::DoActionStream;
    type ListActionsStream = S::ListActionsStream;

    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        self.admit(&request, false)?;
        self.inner.handshake(request).await
    }

    async fn list_flights(
        &self,
        request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        self.admit(&request, true)?;
        self.inner.list_flights(request).await
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.admit(&request, true)?;
        self.inner.get_flight_info(request).await
    }

    async fn poll_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        self.admit(&request, true)?;
        self.inner.poll_flight_info(request).await
    }

    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        self.admit(&request, true)?;
        self.inner.get_schema(request).await
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        self.admit(&request, true)?;
        self.inner.do_get(request).await
    }

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        self.admit(&request, true)?;
        self.inner.do_put(request).await
    }

    async fn do_exchange(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        self.admit(&request, true)?;
        self.inner.do_exchange(request).await
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        self.admit(&request, true)?;
        self.inner.do_action(request).await
    }

    async fn list_actions(
        &self,
        request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        self.admit(&request, true)?;
        self.inner.list_actions(request).await
    }
}
