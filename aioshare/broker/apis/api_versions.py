"""ApiVersions (18): advertises what the registry serves, as the emulated Kafka release would.

`limit_to_release` narrows every registered API to the emulated release's range (and drops the
APIs that release does not have), so ApiVersions and request dispatch agree: a Kafka 4.2 broker
answers ApiVersions v5 with the v0 UNSUPPORTED_VERSION fallback, a 4.4 broker serves it.
"""

from __future__ import annotations

import re

from aioshare.broker.cluster import Cluster
from aioshare.broker.kafka_versions import KafkaVersion
from aioshare.broker.server import ApiRegistry, RequestContext
from aioshare.protocol.errors import ErrorCode
from aioshare.protocol.messages import ApiVersionsRequest, ApiVersionsResponse

API_KEY = 18
# KIP-511: ApiVersionsRequest.isValid's pattern for ClientSoftwareName/Version (v3+).
_SOFTWARE_PATTERN = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?")
# The metadata offset of the last feature change; Kafka's depends on the cluster's history.
FINALIZED_FEATURES_EPOCH = 1


def register(registry: ApiRegistry, cluster: Cluster) -> None:
    async def handle(context: RequestContext, request: ApiVersionsRequest) -> ApiVersionsResponse:
        if not _is_valid(request, context.api_version):
            return ApiVersionsResponse(error_code=ErrorCode.INVALID_REQUEST)
        if (
            context.api_version >= 5
            and request.cluster_id is not None
            and (request.cluster_id != cluster.cluster_id or request.node_id != context.node_id)
        ):
            # KIP-1242: the client meant another cluster or node (an address reused after a
            # restart, a stale bootstrap list) and must bootstrap again.
            return ApiVersionsResponse(error_code=ErrorCode.REBOOTSTRAP_REQUIRED)
        return build_response(registry, cluster.kafka_version, context.api_version)

    registry.register(API_KEY, handle)


def _is_valid(request: ApiVersionsRequest, version: int) -> bool:
    """ApiVersionsRequest.isValid."""
    # v5 (KIP-1242): ClusterId and NodeId come together or not at all.
    if version >= 5 and (request.cluster_id is None) != (request.node_id == -1):
        return False
    return version < 3 or bool(
        _SOFTWARE_PATTERN.fullmatch(request.client_software_name)
        and _SOFTWARE_PATTERN.fullmatch(request.client_software_version)
    )


def limit_to_release(registry: ApiRegistry, release: KafkaVersion) -> None:
    """Narrow each registered API to the versions `release` serves; drop those it lacks."""
    for api_key, (low, high) in registry.versions().items():
        handler = registry.lookup(api_key, high)
        served = release.api_versions.get(api_key)
        if handler is None or served is None or max(low, served[0]) > min(high, served[1]):
            registry.unregister(api_key)
            continue
        registry.register(api_key, handler, min_version=max(low, served[0]), max_version=min(high, served[1]))


def build_response(registry: ApiRegistry, release: KafkaVersion, version: int) -> ApiVersionsResponse:
    response = ApiVersionsResponse(
        api_keys=[
            ApiVersionsResponse.ApiVersion(api_key=key, min_version=low, max_version=high)
            for key, (low, high) in registry.versions().items()
        ]
    )
    if version >= 3:
        # KAFKA-17492: below v4, features whose minimum level is 0 are left out (older clients
        # could not decode them).
        response.supported_features = [
            ApiVersionsResponse.SupportedFeatureKey(name=name, min_version=low, max_version=high)
            for name, low, high in release.supported_features
            if version >= 4 or low > 0
        ]
        response.finalized_features_epoch = FINALIZED_FEATURES_EPOCH
        response.finalized_features = [
            ApiVersionsResponse.FinalizedFeatureKey(
                name=name, min_version_level=level, max_version_level=level
            )
            for name, level in release.finalized_features
        ]
    return response
