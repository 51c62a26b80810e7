"""ApiVersions (18): advertises exactly what the registry serves."""

from __future__ import annotations

import re

from aioshare.broker.cluster import Cluster
from aioshare.broker.server import ApiRegistry, RequestContext
from aioshare.protocol.errors import ErrorCode
from aioshare.protocol.messages import ApiVersionsRequest, ApiVersionsResponse

API_KEY = 18
# v5 (KIP-1242: ClusterId/NodeId checks, REBOOTSTRAP_REQUIRED) arrived in Kafka 4.4; a 4.2
# broker serves 0-4 and answers v5 with the v0 UNSUPPORTED_VERSION fallback.
MAX_VERSION = 4
# KIP-511: ApiVersionsRequest.isValid's pattern for ClientSoftwareName/Version (v3+).
_SOFTWARE_PATTERN = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?")

# Feature levels a 4.2 broker supports/finalises that clients look at. share.version=1 is what
# turns share groups on (semantics doc 1.1); group.version=1 enables KIP-848 consumer groups.
SUPPORTED_FEATURES = (("group.version", 0, 1), ("share.version", 0, 1))
FINALIZED_FEATURES = (("group.version", 1), ("share.version", 1))
FINALIZED_FEATURES_EPOCH = 1


def register(registry: ApiRegistry, cluster: Cluster) -> None:
    async def handle(context: RequestContext, request: ApiVersionsRequest) -> ApiVersionsResponse:
        if context.api_version >= 3 and not (
            _SOFTWARE_PATTERN.fullmatch(request.client_software_name)
            and _SOFTWARE_PATTERN.fullmatch(request.client_software_version)
        ):
            return ApiVersionsResponse(error_code=ErrorCode.INVALID_REQUEST)
        return build_response(registry, context.api_version)

    registry.register(API_KEY, handle, max_version=MAX_VERSION)


def build_response(registry: ApiRegistry, version: int) -> ApiVersionsResponse:
    response = ApiVersionsResponse(
        api_keys=[
            ApiVersionsResponse.ApiVersion(api_key=key, min_version=low, max_version=high)
            for key, (low, high) in registry.versions().items()
        ]
    )
    if version >= 3:
        response.supported_features = [
            ApiVersionsResponse.SupportedFeatureKey(name=name, min_version=low, max_version=high)
            for name, low, high in SUPPORTED_FEATURES
        ]
        response.finalized_features_epoch = FINALIZED_FEATURES_EPOCH
        response.finalized_features = [
            ApiVersionsResponse.FinalizedFeatureKey(
                name=name, min_version_level=level, max_version_level=level
            )
            for name, level in FINALIZED_FEATURES
        ]
    return response
