"""SaslHandshake (17) and SaslAuthenticate (36) as KafkaApis answers them.

The SASL exchange itself runs in the listener (aioshare.broker.security.SaslSession, driven by
the server before any handler sees a request), as in Kafka, where SaslServerAuthenticator
handles it in the network layer. A request that reaches these handlers arrived on a connection
that is already authenticated, or on a listener without SASL: Kafka's KafkaApis answers both
with ILLEGAL_SASL_STATE. Registering them also makes ApiVersions advertise them (v0-1 and v0-2),
which clients check before they authenticate.
"""

from __future__ import annotations

from aioshare.broker.cluster import Cluster
from aioshare.broker.server import ApiRegistry, RequestContext
from aioshare.protocol.errors import ErrorCode
from aioshare.protocol.messages import (
    SaslAuthenticateRequest,
    SaslAuthenticateResponse,
    SaslHandshakeRequest,
    SaslHandshakeResponse,
)


def register(registry: ApiRegistry, cluster: Cluster) -> None:
    async def handshake(context: RequestContext, request: SaslHandshakeRequest) -> SaslHandshakeResponse:
        return SaslHandshakeResponse(error_code=ErrorCode.ILLEGAL_SASL_STATE)

    async def authenticate(
        context: RequestContext, request: SaslAuthenticateRequest
    ) -> SaslAuthenticateResponse:
        return SaslAuthenticateResponse(
            error_code=ErrorCode.ILLEGAL_SASL_STATE,
            error_message="SaslAuthenticate request received after successful authentication",
        )

    registry.register(SaslHandshakeRequest.API_KEY, handshake)
    registry.register(SaslAuthenticateRequest.API_KEY, authenticate)
